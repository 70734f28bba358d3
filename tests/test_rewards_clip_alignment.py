"""R1 (rewards.clip_alignment) with the tiny open_clip: value, caching, incremental rewards."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from rewards import build_reward, clip_model
from rewards import clip_alignment as r1
from taxonomy.answer import format_answer

PROPERTY = settings(max_examples=15, deadline=None)
FRAMES_PER_CLIP = 3


def clip_frames(seed: int) -> list[Image.Image]:
    generator = torch.Generator().manual_seed(seed)
    return [
        Image.fromarray(torch.randint(0, 256, (48, 64, 3), generator=generator, dtype=torch.uint8).numpy())
        for _ in range(FRAMES_PER_CLIP)
    ]


CLIPS = {"clip-a": clip_frames(1), "clip-b": clip_frames(2)}


@pytest.fixture()
def fresh_scorers(monkeypatch):
    """No scorer (and so no frame cache) survives from another test."""
    monkeypatch.setattr(r1, "_SCORERS", {})


@pytest.fixture()
def encode_spy(monkeypatch):
    calls = {"images": [], "texts": []}
    real_images, real_texts = clip_model.encode_images, clip_model.encode_texts

    def images(model, preprocess, frames, *args, **kwargs):
        calls["images"].append(len(list(frames)))
        return real_images(model, preprocess, frames, *args, **kwargs)

    def texts(model, tokenizer, batch, *args, **kwargs):
        calls["texts"].append(len(list(batch)))
        return real_texts(model, tokenizer, batch, *args, **kwargs)

    monkeypatch.setattr(clip_model, "encode_images", images)
    monkeypatch.setattr(clip_model, "encode_texts", texts)
    return calls


def columns(ids):
    return {"id": list(ids), "images": [CLIPS[i] for i in ids]}


def reward(completions, ids, tiny_clip, **params):
    return r1.clip_alignment_reward(completions, model_name=tiny_clip, pretrained=None, **columns(ids), **params)


def manual_cosine(tiny_clip, frames, text):
    model, preprocess, tokenizer = clip_model.load_clip(tiny_clip, None, "cpu")
    frames_emb = clip_model.encode_images(model, preprocess, frames)
    video = torch.nn.functional.normalize(frames_emb.mean(0), dim=-1)
    return float(video @ clip_model.encode_texts(model, tokenizer, [text])[0])


def test_r1_is_the_cosine_of_mean_frames_and_the_description_span(tiny_clip, fresh_scorers):
    description = "A red light ahead, cars waiting at the crossing."
    answer = format_answer(description, ["stop"], ["stop_traffic_light"])
    expected = manual_cosine(tiny_clip, CLIPS["clip-a"], description)
    [raw] = reward([answer], ["clip-a"], tiny_clip, floor=None)
    assert raw == pytest.approx(expected, abs=1e-5)
    # the default floor 0 clips negative cosines; shift/scale normalise
    [default] = reward([answer], ["clip-a"], tiny_clip)
    assert default == pytest.approx(max(expected, 0.0), abs=1e-5)
    [normalised] = reward([answer], ["clip-a"], tiny_clip, floor=None, shift=0.1, scale=0.5)
    assert normalised == pytest.approx((expected - 0.1) / 0.5, abs=1e-5)


def test_only_the_description_is_scored(tiny_clip, fresh_scorers):
    description = "A wide empty road under a blue sky."
    one = format_answer(description, ["forward"], ["road_clear"])
    other = format_answer(description, ["stop", "left"], ["obstacle_car", "solid_line_right"])
    text = f"Scene: {description}\nActions: stop\nReasons: obstacle: car"
    scores = reward([one, other, text], ["clip-b"] * 3, tiny_clip, floor=None)
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert scores[0] == pytest.approx(scores[2], abs=1e-6)


@pytest.mark.parametrize("empty", ["", "   ", None, '{"actions": {"forward": true}}', '{"description": ""}'])
def test_an_empty_description_gets_the_minimum(tiny_clip, fresh_scorers, empty):
    assert reward([empty], ["clip-a"], tiny_clip) == [0.0]
    assert reward([empty], ["clip-a"], tiny_clip, floor=None) == [-1.0]
    assert reward([empty], ["clip-a"], tiny_clip, floor=None, shift=0.25, scale=0.05) == [pytest.approx(-25.0)]


def test_frames_are_encoded_once_per_clip_id(tiny_clip, fresh_scorers, encode_spy):
    answers = [format_answer(f"scene number {k}", ["forward"], []) for k in range(8)]
    ids = ["clip-a"] * 4 + ["clip-b"] * 4  # GRPO: 4 generations per prompt
    first = reward(answers, ids, tiny_clip)
    assert encode_spy["images"] == [2 * FRAMES_PER_CLIP]  # both clips, one batched call
    for _ in range(3):
        assert reward(answers, ids, tiny_clip) == pytest.approx(first)
    assert encode_spy["images"] == [2 * FRAMES_PER_CLIP]  # cached by id: never again
    assert encode_spy["texts"] == [8] * 4  # the descriptions of a batch: one text batch
    scorer = r1.get_scorer(tiny_clip, None, "cpu")
    assert scorer.encoded_clips == 2


def test_the_frame_cache_is_bounded_lru(tiny_clip, fresh_scorers, encode_spy):
    params = {"cache_size": 1}
    reward(["a road"], ["clip-a"], tiny_clip, **params)
    reward(["a road"], ["clip-b"], tiny_clip, **params)  # evicts clip-a
    reward(["a road"], ["clip-a"], tiny_clip, **params)
    assert encode_spy["images"] == [FRAMES_PER_CLIP] * 3
    assert len(r1.get_scorer(tiny_clip, None, "cpu", cache_size=1).cache) == 1


def test_a_precomputed_frame_embedding_column_skips_the_image_encoder(tiny_clip, fresh_scorers, encode_spy):
    model, preprocess, _ = clip_model.load_clip(tiny_clip, None, "cpu")
    per_frame = clip_model.encode_images(model, preprocess, CLIPS["clip-a"])
    encode_spy["images"].clear()
    text = "cars at a crossing"
    from_frames = reward([text], ["clip-a"], tiny_clip, floor=None)
    scores = r1.clip_alignment_reward(
        [text, text],
        model_name=tiny_clip,
        pretrained=None,
        floor=None,
        frame_embedding=[per_frame.tolist(), per_frame.mean(0).tolist()],  # (M, D) or pooled (D,)
    )
    assert scores == pytest.approx(from_frames * 2, abs=1e-5)
    assert encode_spy["images"] == [FRAMES_PER_CLIP]  # only the from_frames call


def test_missing_columns_are_clear_configuration_errors(tiny_clip, fresh_scorers):
    with pytest.raises(ValueError, match="'images' or 'frames'"):
        r1.clip_alignment_reward(["x"], model_name=tiny_clip, pretrained=None, id=["clip-a"])
    with pytest.raises(ValueError, match="'id'"):
        r1.clip_alignment_reward(["x"], model_name=tiny_clip, pretrained=None, frames=[CLIPS["clip-a"]])
    with pytest.raises(ValueError, match="no frames"):
        r1.clip_alignment_reward(["x"], model_name=tiny_clip, pretrained=None, id=["c"], images=[[]])
    with pytest.raises(ValueError, match="scale"):
        reward(["x"], ["clip-a"], tiny_clip, scale=0)


def test_the_registry_builds_r1_with_the_tiny_model(tiny_clip, fresh_scorers):
    configured = build_reward("clip_alignment", model_name=tiny_clip, pretrained=None, floor=None)
    direct = reward(["a road"], ["clip-a"], tiny_clip, floor=None)
    assert configured(completions=["a road"], **columns(["clip-a"])) == pytest.approx(direct)
    assert configured.__name__ == "clip_alignment"


def test_incremental_rewards_sum_telescopically(tiny_clip, fresh_scorers, encode_spy):
    scorer = r1.get_scorer(tiny_clip, None, "cpu")
    videos = scorer.video_embeddings(["clip-a", "clip-b"], [CLIPS["clip-a"], CLIPS["clip-b"]])
    description = "Cars wait at a red light while a person crosses."
    answers = [format_answer(description, ["stop"], ["obstacle_person"]), "  two  words "]
    encode_spy["texts"].clear()
    norm = r1.Normalisation(floor=None, shift=0.2, scale=0.1)
    steps = r1.incremental_rewards(videos, answers, scorer, normalisation=norm)
    # every prefix in one batch, and the empty text T_0 once (then cached)
    assert encode_spy["texts"] == [len(description.split()) + 2, 1]
    full = reward(answers, ["clip-a", "clip-b"], tiny_clip, floor=None, shift=0.2, scale=0.1)
    empty = [norm(c) for c in scorer.empty_text_cosines(videos)]  # R1(I, ""): CLIP's score of saying nothing
    for result, r1_full, r1_empty in zip(steps, full, empty):
        assert sum(result.rewards) == pytest.approx(r1_full - r1_empty, abs=1e-4)
        assert result.initial == pytest.approx(r1_empty) and result.initial > norm.minimum
        assert result.ends[-1] == len(result.description)
    # positions: word ends in the description, and the same characters in the completion text
    assert steps[0].ends == _word_ends(description)
    text = answers[0]
    start = steps[0].completion_ends[0] - steps[0].ends[0]
    assert text[start : start + len(description)] == description
    assert steps[1].description == "two  words" and steps[1].ends == [3, 10]
    assert steps[1].completion_ends == [5, 12]


def _word_ends(text):
    ends, position = [], 0
    for word in text.split():
        position = text.index(word, position) + len(word)
        ends.append(position)
    return ends


def test_incremental_rewards_with_given_ends_and_empty_descriptions(tiny_clip, fresh_scorers):
    scorer = r1.get_scorer(tiny_clip, None, "cpu")
    video = scorer.video_embeddings(["clip-a"], [CLIPS["clip-a"]])[0]
    description = "a road"
    [given_ends, empty] = r1.incremental_rewards(video, [description, ""], scorer, ends=[[1, 3, 99], []])
    assert given_ends.ends == [1, 3, 6]  # out-of-range offsets dropped, the full length added
    assert sum(given_ends.rewards) == pytest.approx(given_ends.total, abs=1e-6)
    assert empty.rewards == [] and empty.total == 0.0 and empty.completion_ends is None
    # a long description is cut to at most max_steps prefixes, the last one the whole text
    long = " ".join(["word"] * 200)
    [capped] = r1.incremental_rewards(video, [long], scorer)
    assert len(capped.ends) == scorer.tokenizer.context_length and capped.ends[-1] == len(long)


PATHOLOGICAL = [
    "[" * 10000,
    '{"a":' * 5000,
    "x" * 1_000_000,
    "\ud800\U0001f697\x00",
    json.dumps({"description": "é" * 5000}),
]


@pytest.mark.parametrize("garbage", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_outputs_never_raise(tiny_clip, garbage):
    [score] = reward([garbage], ["clip-a"], tiny_clip, floor=None)
    assert -1.0 <= score <= 1.0
    scorer = r1.get_scorer(tiny_clip, None, "cpu")
    video = scorer.video_embeddings(["clip-a"], [CLIPS["clip-a"]])
    [steps] = r1.incremental_rewards(video, [garbage], scorer)
    assert len(steps.rewards) <= scorer.tokenizer.context_length
    assert sum(steps.rewards) == pytest.approx(steps.total, abs=1e-4)


@PROPERTY
@given(text=st.text(max_size=300))
def test_arbitrary_text_gives_a_bounded_reward(tiny_clip, text):
    [score] = reward([text], ["clip-b"], tiny_clip, floor=None, shift=0.2, scale=0.1)
    assert (-1 - 0.2) / 0.1 <= score <= (1 - 0.2) / 0.1
