"""tiny_models.train_clip: contrastive training of the tiny open_clip on the synthetic world.

One short seeded training run (module fixture) on ~150 synthetic clips prepared at 64 px is shared
by the behaviour tests: retrieval rises above chance and above the untrained model, the saved
folder loads through the rewards' loader, and R1 then prefers a clip's true description.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tiny_models.clip import OPEN_CLIP_CONFIG_FILE, OPEN_CLIP_WEIGHTS_FILE, local_dir_name
from tiny_models.train_clip import (
    RETRIEVAL_FILE,
    TrainClipConfig,
    chance_hit_rate,
    check_output,
    clip_embeddings,
    distinct_description_batches,
    encode_split,
    load_split,
    main,
    retrieval_metrics,
    train_clip,
)

WORLD_CLIPS = 150
WORLD_SIZE = (64, 36)  # width, height (16:9); prepared at the tiny CLIP's 64 px
FRAMES = 2
IMAGE_SIZE = 64
# A short run (~100 steps) that trains in seconds; seeded. One thread: on a busy 2-core machine
# that is several times faster than two for this small a model.
SHORT_RUN = dict(epochs=15, batch_size=16, lr=3e-3, seed=0, threads=1, progress=False)
TOP5_MARGIN = 0.1  # how far above the untrained model and chance the trained one must be
TOP1_MARGIN = 0.03  # exact-text top-1 among ~80 similar descriptions rises more slowly
PREFERENCE_MARGIN = 0.2  # true_beats_other: 0.5 by chance
REWARD_MARGIN = 0.1  # mean R1 (raw cosine) of the true description over a wrong one
REWARD_CLIPS = 48  # train clips scored by R1 with each model


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    from data_prep.prepare import prepare
    from data_prep.synth import WorldConfig, generate

    root = tmp_path_factory.mktemp("train_clip_world")
    width, height = WORLD_SIZE
    generate(root / "world", WORLD_CLIPS, seed=0, config=WorldConfig(width=width, height=height),
             num_proc=1, progress=False)
    out = root / "dataset"
    prepare(root / "world", out, frames=FRAMES, stride=1, image_size=IMAGE_SIZE, num_proc=1)
    return out


@pytest.fixture(scope="module")
def trained(dataset_dir, tiny_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_clip_out") / "tiny-clip-trained"
    metrics = train_clip(dataset_dir, tiny_clip, out, TrainClipConfig(**SHORT_RUN))
    return out, metrics


# ---------------------------------------------------------------------------------------------
# Training behaviour


def test_training_raises_retrieval_above_chance_and_untrained(trained):
    _, metrics = trained
    before, after = metrics["before"]["train"], metrics["after"]["train"]
    assert after["top5"] >= max(before["top5"], after["chance_top5"]) + TOP5_MARGIN, (before, after)
    assert after["top1"] >= max(before["top1"], after["chance_top1"]) + TOP1_MARGIN, (before, after)
    # R1's view: the own description outscores the other descriptions far more often than chance.
    assert after["true_beats_other"] >= before["true_beats_other"] + PREFERENCE_MARGIN
    assert after["cosine_true"] > after["cosine_other"]
    # Held-out clips: the trained model is not worse than chance at preferring the own text.
    assert metrics["after"]["val"]["true_beats_other"] > 0.5
    assert metrics["epoch_losses"][-1] < metrics["epoch_losses"][0]


def test_retrieval_report_is_written(trained):
    out, metrics = trained
    report = json.loads((out / RETRIEVAL_FILE).read_text())
    assert report["before"] == metrics["before"] and report["after"] == metrics["after"]
    assert report["config"]["seed"] == SHORT_RUN["seed"]
    assert set(report["after"]) == {"val", "train"}


def test_saved_folder_loads_like_any_open_clip_model(trained, tiny_clip):
    from rewards.clip_model import load_clip

    out, _ = trained
    assert (out / OPEN_CLIP_CONFIG_FILE).is_file() and (out / OPEN_CLIP_WEIGHTS_FILE).is_file()
    assert not list(out.parent.glob(f".{out.name}.*")), "staging folders left behind"
    model, preprocess, tokenizer = load_clip(local_dir_name(out))
    untrained, _, _ = load_clip(tiny_clip)
    trained_state, untrained_state = model.state_dict(), untrained.state_dict()
    assert trained_state.keys() == untrained_state.keys()
    assert any(not torch.equal(trained_state[k], untrained_state[k]) for k in trained_state)
    # The same preprocessing as the model it started from (the reward's pixels did not change).
    assert str(preprocess) == str(load_clip(tiny_clip)[1])


def test_training_leaves_the_cached_source_model_untouched(trained, tiny_clip, tiny_clip_dir):
    from safetensors.torch import load_file

    from rewards.clip_model import load_clip

    on_disk = load_file(str(tiny_clip_dir / OPEN_CLIP_WEIGHTS_FILE))
    cached = load_clip(tiny_clip)[0].state_dict()
    assert all(torch.equal(cached[k], v) for k, v in on_disk.items())


def test_trained_geometry_is_the_rewards_geometry(trained, dataset_dir):
    """The clip embedding trained on equals R1's v for the same frames (same pixels, same pooling)."""
    from rewards.clip_alignment import ClipScorer

    out, _ = trained
    scorer = ClipScorer(local_dir_name(out), None, "cpu")
    part = load_split(dataset_dir, "val")
    rows = list(part)
    reward_side = scorer.video_embeddings([r["id"] for r in rows], [r["frames"] for r in rows])
    split = encode_split(part, scorer.preprocess, "val", progress=False)
    training_side = clip_embeddings(scorer.model, split, batch_size=7, device="cpu")  # clips split across batches
    torch.testing.assert_close(training_side, reward_side, atol=1e-5, rtol=0)


def _reward_means(model_name: str, part) -> tuple[float, float]:
    """Mean R1 of each clip's own answer and of another clip's answer with a different text."""
    from rewards.clip_alignment import clip_alignment_reward

    rows = list(part)
    wrong = []
    for i, row in enumerate(rows):
        # The next clip (cyclically) whose description differs from this one.
        others = (rows[j % len(rows)] for j in range(i + 1, i + len(rows)))
        wrong.append(next(o for o in others if o["description"] != row["description"])["answer_json"])
    columns = {"id": [r["id"] for r in rows], "frames": [r["frames"] for r in rows]}
    # floor=None keeps negative cosines, so the comparison is on the raw cosine.
    true = clip_alignment_reward([r["answer_json"] for r in rows], model_name=model_name, pretrained=None,
                                 device="cpu", floor=None, **columns)
    other = clip_alignment_reward(wrong, model_name=model_name, pretrained=None, device="cpu", floor=None,
                                  **columns)
    return sum(true) / len(true), sum(other) / len(other)


def test_reward_prefers_the_true_description_after_training(trained, dataset_dir, tiny_clip):
    from datasets import load_from_disk

    out, _ = trained
    part = load_from_disk(str(dataset_dir))["train"].select(range(REWARD_CLIPS))
    true_after, wrong_after = _reward_means(local_dir_name(out), part)
    true_before, wrong_before = _reward_means(tiny_clip, part)
    assert true_after - wrong_after >= REWARD_MARGIN, (true_after, wrong_after)
    assert true_after - wrong_after > true_before - wrong_before + REWARD_MARGIN


# ---------------------------------------------------------------------------------------------
# Determinism


def test_same_seed_same_weights(dataset_dir, tiny_clip, tmp_path):
    one_epoch = dict(SHORT_RUN, epochs=1, max_train_eval_clips=0)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_clip(dataset_dir, tiny_clip, tmp_path / name, TrainClipConfig(**dict(one_epoch, seed=seed)))
        runs[name] = (tmp_path / name / OPEN_CLIP_WEIGHTS_FILE).read_bytes()
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


# ---------------------------------------------------------------------------------------------
# Batches and metrics (pure)


def test_batches_never_repeat_a_description():
    descriptions = ["common"] * 9 + [f"text {i}" for i in range(20)]
    generator = torch.Generator().manual_seed(0)
    batches = distinct_description_batches(descriptions, batch_size=8, generator=generator)
    flat = [i for batch in batches for i in batch]
    assert len(flat) == len(set(flat)), "a clip twice in one epoch"
    assert all(2 <= len(batch) <= 8 for batch in batches)
    assert all(len({descriptions[i] for i in batch}) == len(batch) for batch in batches)
    # 29 clips in batches of 8: 4 batches, so "common" (9 copies) contributes 4 clips; all else once.
    assert len(batches) == 4
    assert sum(descriptions[i] == "common" for i in flat) == 4
    assert {descriptions[i] for i in flat} == set(descriptions)


def test_batches_differ_between_epochs_and_follow_the_seed():
    descriptions = [f"text {i % 30}" for i in range(60)]

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return [distinct_description_batches(descriptions, 16, generator) for _ in range(2)]

    first, second = draw(0)
    assert first != second
    assert draw(0) == [first, second]


def test_chance_accounts_for_repeated_descriptions():
    descriptions = ["a", "a", "b", "c"]
    # top-1: a random first entry has the clip's text with probability count / N.
    assert chance_hit_rate(descriptions, 1) == pytest.approx((2 / 4 + 2 / 4 + 1 / 4 + 1 / 4) / 4)
    # top-2 for "a" (2 copies): 1 - C(2,2)/C(4,2) = 5/6; for "b": 1 - C(3,2)/C(4,2) = 1/2.
    assert chance_hit_rate(descriptions, 2) == pytest.approx((5 / 6 + 5 / 6 + 1 / 2 + 1 / 2) / 4)
    assert chance_hit_rate(descriptions, 10) == 1.0


def test_retrieval_metrics_on_known_embeddings():
    texts = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([0.0, 1.0, 0.0]),
             "c": torch.tensor([0.0, 0.0, 1.0])}
    descriptions = ["a", "a", "b", "c"]
    # Clip 3 (text "c") lies nearest "a" (2 copies in the list), then "c".
    clips = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0.1, 0.0], [1.0, 0.0, 0.1], [0.1, 1.0, 0.0], [1.0, 0.0, 0.5]]), dim=-1)
    metrics = retrieval_metrics(clips, descriptions, texts, ks=(1, 2, 3))
    assert metrics["top1"] == pytest.approx(3 / 4)
    assert metrics["top2"] == pytest.approx(3 / 4)  # two copies of "a" fill clip 3's top 2
    assert metrics["top3"] == 1.0
    assert metrics["distinct_top2"] == 1.0  # among distinct texts "c" is second
    assert metrics["chance_distinct_top1"] == pytest.approx(1 / 3)
    assert metrics["true_beats_other"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)


# ---------------------------------------------------------------------------------------------
# Bad input and the CLI


def test_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path, tiny_clip):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an open_clip model folder"):
        check_output(out, tiny_clip)
    assert (out / "notes.txt").read_text() == "keep me"


def test_refuses_to_overwrite_the_source_model(tiny_clip, tiny_clip_dir):
    with pytest.raises(ValueError, match="is the model being trained"):
        check_output(tiny_clip_dir, tiny_clip)


def test_too_large_a_split_is_refused(dataset_dir, tiny_clip):
    from rewards.clip_model import load_clip

    preprocess = load_clip(tiny_clip)[1]
    part = load_split(dataset_dir, "train")
    one_clip_gib = FRAMES * 3 * IMAGE_SIZE * IMAGE_SIZE * 4 / 2**30  # float32 frames
    with pytest.raises(ValueError, match="max_pixel_gib"):
        encode_split(part, preprocess, "train", progress=False, max_gib=one_clip_gib * len(part) / 2)
    assert len(encode_split(part, preprocess, "train", progress=False, max_gib=one_clip_gib * len(part) * 2)) == len(part)


def test_missing_split_is_named(dataset_dir):
    with pytest.raises(ValueError, match="no split 'nope'"):
        load_split(dataset_dir, "nope")


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        TrainClipConfig(batch_size=1)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--batch-size" in capsys.readouterr().out


def test_cli_reports_a_missing_dataset(tmp_path, tiny_clip, capsys):
    code = main(["--dataset", str(tmp_path / "absent"), "--clip", tiny_clip, "--out", str(tmp_path / "out"),
                 "--no-progress"])
    assert code == 2
    assert "absent" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
