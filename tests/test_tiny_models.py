"""The tiny offline models load, behave and are shaped like the real SmolVLM and open_clip ones."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from PIL import Image

from taxonomy.answer import format_answer, format_text_answer, parse_answer
from tiny_models import build as build_cli
from tiny_models.vlm import (
    END_OF_UTTERANCE,
    IMAGE_TOKEN,
    REAL_SIZES,
    TinyVLMConfig,
    build_tiny_vlm,
    config_parameter_count,
    image_tokens_per_tile,
    random_description,
    random_labels,
    read_corpus_file,
    real_size_config,
    train_tokenizer,
)

FRAMES = 4


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_vlm_dir)


@pytest.fixture()
def model(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir).eval()


def frames(seed: int, n: int = FRAMES, size=(96, 54)) -> list[Image.Image]:
    """Random frames, not square and not 64 px, so the processor has to resize them."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def user_turn(n: int = FRAMES) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n}]


def random_answers(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        description = random_description(rng)
        actions, reasons = random_labels(rng)
        out += [format_answer(description, actions, reasons), format_text_answer(description, actions, reasons)]
    return out


# ---------------------------------------------------------------------------------------------
# Loading and configuration


def test_loads_like_smolvlm_with_consistent_config(processor, model):
    from transformers import Idefics3ForConditionalGeneration, Idefics3Processor

    assert isinstance(processor, Idefics3Processor)
    assert isinstance(model, Idefics3ForConditionalGeneration)
    config, tokenizer = model.config, processor.tokenizer
    assert config.image_token_id == tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    vision = config.vision_config
    patches_per_side = vision.image_size // vision.patch_size
    assert processor.image_seq_len == patches_per_side**2 // config.scale_factor**2 == image_tokens_per_tile(config)
    # one frame = one vision tile: splitting off, and the tile is the vision tower's input size
    image_processor = processor.image_processor
    assert image_processor.do_image_splitting is False
    assert image_processor.max_image_size["longest_edge"] == vision.image_size
    assert image_processor.size["longest_edge"] == vision.image_size
    assert config.text_config.vocab_size >= len(tokenizer)
    # the connector maps pixel-shuffled vision features onto the text width
    connector = model.model.connector.modality_projection.proj
    assert connector.in_features == vision.hidden_size * config.scale_factor**2
    assert connector.out_features == config.text_config.hidden_size
    # SmolVLM's special tokens, each one token
    for token in ("<|im_start|>", END_OF_UTTERANCE, IMAGE_TOKEN, "<fake_token_around_image>", "<global-img>",
                  "<row_1_col_1>", "<row_6_col_6>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token


def test_eos_and_pad_are_smolvlm_tokens(processor, model):
    tokenizer = processor.tokenizer
    eou = tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    assert tokenizer.eos_token == END_OF_UTTERANCE
    assert model.generation_config.eos_token_id == eou
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id != eou
    assert model.config.text_config.eos_token_id == eou


def test_chat_template_is_smolvlms_and_trl_swaps_in_its_training_version(processor):
    from trl.chat_template_utils import (
        get_training_chat_template,
        is_chat_template_stop_token_trained,
        smolvlm_chat_template,
        smolvlm_training_chat_template,
    )

    assert processor.chat_template == smolvlm_chat_template
    prompt = processor.apply_chat_template(user_turn(), add_generation_prompt=True)
    assert prompt == "<|im_start|>User:" + IMAGE_TOKEN * FRAMES + END_OF_UTTERANCE + "\nAssistant:"
    # what SFTTrainer does for assistant_only_loss=True
    training_template = get_training_chat_template(processor)
    assert training_template == smolvlm_training_chat_template
    assert is_chat_template_stop_token_trained(processor, chat_template=training_template)


def test_assistant_only_mask_on_a_collated_batch_covers_the_answer_and_eos(processor):
    """The mask TRL's SFT collator builds with the swapped template, images included."""
    from trl.chat_template_utils import get_training_chat_template
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    answers = random_answers(1, seed=3)
    collator = DataCollatorForVisionLanguageModeling(
        processor=processor, assistant_only_loss=True, chat_template=get_training_chat_template(processor)
    )
    examples = [
        {"messages": user_turn() + [{"role": "assistant", "content": [{"type": "text", "text": a}]}],
         "images": frames(i)}
        for i, a in enumerate(answers)
    ]
    batch = collator(copy.deepcopy(examples))
    for row, answer in enumerate(answers):
        trained = batch["input_ids"][row][batch["labels"][row] != -100]
        assert processor.tokenizer.decode(trained) == " " + answer + END_OF_UTTERANCE + "\n"


# ---------------------------------------------------------------------------------------------
# Generation and training


def test_generates_from_a_four_frame_prompt(processor, model):
    prompt = processor.apply_chat_template(user_turn(), add_generation_prompt=True)
    inputs = processor(text=[prompt, prompt], images=[frames(0), frames(1)], return_tensors="pt", padding=True)
    image_size = model.config.vision_config.image_size
    assert inputs["pixel_values"].shape == (2, FRAMES, 3, image_size, image_size)
    image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum(dim=1)
    assert image_tokens.tolist() == [FRAMES * processor.image_seq_len] * 2
    new_tokens = 5
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
    assert out.shape == (2, inputs["input_ids"].shape[1] + new_tokens)
    # different frames, different logits: the images reach the text model
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1]
    assert not torch.allclose(logits[0], logits[1])


def test_generation_stops_at_end_of_utterance(processor, model):
    """Force <end_of_utterance> as the first token: generate must stop there, not run to max length."""
    eou = processor.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)
    prompt = processor.apply_chat_template(user_turn(), add_generation_prompt=True)
    inputs = processor(text=prompt, images=frames(2), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, do_sample=False, sequence_bias={(eou,): 1e4})
    completion = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert completion == [eou]


def training_batch(processor, answers: list[str], seed: int):
    texts = [
        processor.apply_chat_template(
            user_turn() + [{"role": "assistant", "content": [{"type": "text", "text": " " + a}]}]
        )
        for a in answers
    ]
    images = [frames(seed + i) for i in range(len(answers))]
    batch = processor(text=texts, images=images, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return batch


def test_a_few_training_steps_reduce_the_loss_on_a_repeated_batch(processor, model):
    batch = training_batch(processor, random_answers(1, seed=4), seed=10)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    # every part of the model receives gradient (vision tower and connector included)
    for name in ("model.vision_model.embeddings.patch_embedding.weight",
                 "model.connector.modality_projection.proj.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


# ---------------------------------------------------------------------------------------------
# Tokenizer


def test_tokenizer_round_trips_answers_and_any_text(processor):
    tokenizer = processor.tokenizer
    texts = random_answers(25, seed=7) + ["Ünïcødé 🚗 → ok", "  two  spaces\n\ttab", "", '{"x": [1, 2]}']
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    # and what comes back still parses to the same labels
    answer = format_answer("A bus stops ahead.", ["stop"], ["obstacle_car"])
    decoded = tokenizer.decode(tokenizer(answer)["input_ids"])
    assert parse_answer(decoded).reasons == {"obstacle_car"}


def test_bpe_is_trained_on_answers(processor):
    """Answer text costs far fewer tokens than bytes (a byte-level fallback alone would be 1:1)."""
    tokenizer = processor.tokenizer
    answers = random_answers(10, seed=8)
    n_tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    n_bytes = sum(len(a.encode()) for a in answers)
    assert n_tokens < n_bytes / 2.5


def test_extra_corpus_texts_shape_the_vocabulary(tmp_path):
    word = "zorblefluxquantic"
    corpus_file = tmp_path / "descriptions.json"
    corpus_file.write_text('{"a": "%s road", "b": "%s lane"}' % (word, word))
    extra = read_corpus_file(corpus_file) * 200
    with_word = train_tokenizer(random_answers(50, seed=0) + extra, bpe_vocab_size=600, model_max_length=512)
    without = train_tokenizer(random_answers(50, seed=0), bpe_vocab_size=600, model_max_length=512)
    assert len(with_word(word)["input_ids"]) < len(without(word)["input_ids"])


def test_read_corpus_file_names_the_bad_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        read_corpus_file(bad)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_corpus_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------
# Determinism, CLI, sizes


def test_cli_rebuild_with_the_same_seed_gives_identical_files(tiny_vlm_dir, tmp_path, capsys):
    assert build_cli.main(["--out", str(tmp_path), "--seed", "0", "--only", "vlm"]) == 0
    assert "16 image tokens per 64-px frame" in capsys.readouterr().out
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (tmp_path / "tiny-smolvlm" / name).read_bytes() == (tiny_vlm_dir / name).read_bytes(), name
    assert not (tmp_path / "tiny-clip").exists()


def test_another_seed_gives_other_weights():
    small = dict(corpus_answers=50, bpe_vocab_size=400)
    (a, _), (b, _) = (build_tiny_vlm(TinyVLMConfig(seed=s, **small)) for s in (1, 2))
    name = "model.vision_model.embeddings.patch_embedding.weight"
    assert not torch.equal(a.get_parameter(name), b.get_parameter(name))


def test_size_knobs_reach_the_model():
    model, processor = build_tiny_vlm(
        TinyVLMConfig(image_size=32, patch_size=4, scale_factor=4, text_layers=1, corpus_answers=50,
                      bpe_vocab_size=400)
    )
    assert processor.image_seq_len == image_tokens_per_tile(model.config) == (32 // 4) ** 2 // 16
    assert len(model.model.text_model.layers) == 1


def test_inconsistent_sizes_are_refused():
    with pytest.raises(ValueError, match="patch_size"):
        TinyVLMConfig(image_size=60, patch_size=8)
    with pytest.raises(ValueError, match="scale_factor"):
        TinyVLMConfig(image_size=48, patch_size=8, scale_factor=4)


@pytest.mark.parametrize(
    "name, billions, tokens_per_tile",
    [("SmolVLM-256M-Instruct", 0.256, 64), ("SmolVLM-500M-Instruct", 0.5, 64), ("SmolVLM-Instruct", 2.2, 81)],
)
def test_real_size_configs_match_the_published_models(name, billions, tokens_per_tile):
    config = real_size_config(f"HuggingFaceTB/{name}")
    assert image_tokens_per_tile(config) == tokens_per_tile  # docs/smolvlm.md's table
    assert config_parameter_count(config) == pytest.approx(billions * 1e9, rel=0.03)


def test_unknown_real_size_is_refused():
    with pytest.raises(ValueError, match=", ".join(REAL_SIZES)):
        real_size_config("SmolVLM-9B")


# ---------------------------------------------------------------------------------------------
# Tiny CLIP through the rewards loader


def test_tiny_clip_loads_and_embeds_to_unit_vectors(tiny_clip):
    from rewards.clip_model import encode_images, encode_texts, load_clip
    from tiny_models.clip import TinyClipConfig

    model, preprocess, tokenizer = load_clip(tiny_clip)
    assert load_clip(tiny_clip)[0] is model  # cached: loaded once per process
    assert not model.training
    dim = TinyClipConfig().embed_dim
    image_emb = encode_images(model, preprocess, frames(5), batch_size=3)  # 2 batches
    text_emb = encode_texts(model, tokenizer, ["a red light ahead", "a pedestrian crossing"] * 4, batch_size=3)
    assert image_emb.shape == (FRAMES, dim) and text_emb.shape == (8, dim)
    for emb in (image_emb, text_emb):
        assert torch.allclose(emb.norm(dim=-1), torch.ones(len(emb)), atol=1e-5)
    assert not torch.allclose(image_emb[0], image_emb[1])  # different frames, different embeddings
    assert torch.allclose(text_emb[0], text_emb[2], atol=1e-6)  # same text, same embedding
    # batching does not change results
    assert torch.allclose(encode_images(model, preprocess, frames(5)), image_emb, atol=1e-5)


def test_tiny_clip_weights_are_the_saved_ones(tiny_clip):
    from rewards.clip_model import load_clip
    from tiny_models.clip import TinyClipConfig, build_tiny_clip

    loaded = load_clip(tiny_clip)[0].state_dict()
    built = build_tiny_clip(TinyClipConfig(seed=0)).state_dict()
    assert loaded.keys() == built.keys()
    assert all(torch.equal(loaded[k], built[k]) for k in built)


def test_load_clip_errors_name_the_model(tmp_path, tiny_clip):
    from rewards.clip_model import load_clip

    missing = f"local-dir:{tmp_path / 'nope'}"
    with pytest.raises(ValueError, match="nope"):
        load_clip(missing)
    with pytest.raises(ValueError, match="pretrained"):
        load_clip(tiny_clip, "laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="no weights"):  # open_clip itself would only warn
        load_clip("ViT-B-32")
