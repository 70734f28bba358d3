"""evaluate/: generation + scoring + report + plots + gallery, on the tiny model and a hand-made split."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from PIL import Image

from evaluate import gallery, plots, report, run
from evaluate.generate import EvaluationError, load_eval_split, load_model_and_processor
from core.prompt import image_prompt
from taxonomy.answer import format_answer, parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS, actions_to_vector, reasons_to_vector

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FRAMES_PER_CLIP = 2
FRAME_SIZE = (64, 36)  # as prepared with --image-size 64 from 16:9 frames

# (id, actions, reasons, description): a small test split with varied, consistent labels.
CLIPS = [
    ("clip-a", ["forward"], ["road_clear", "green_light"], "A clear road under a green light."),
    ("clip-b", ["stop"], ["obstacle_car", "stop_traffic_light"], "A car ahead at a red light."),
    ("clip-c", ["forward", "left"], ["follow_traffic", "on_left_turn_lane"], "Traffic moving; a left-turn lane."),
    ("clip-d", ["stop"], ["obstacle_person", "solid_line_right"], "A pedestrian crossing in front."),
    ("clip-e", ["forward", "right"], ["road_clear", "on_right_turn_lane"], "An empty road with a right-turn lane."),
]


def _frames(seed: int) -> list[Image.Image]:
    colours = [(40 * seed % 256, 90, 200 - 30 * k) for k in range(FRAMES_PER_CLIP)]
    return [Image.new("RGB", FRAME_SIZE, colour) for colour in colours]


def make_dataset(path, clips=CLIPS, split="test"):
    """A prepared dataset with the contract's columns (as data_prep.prepare writes them)."""
    from datasets import Dataset, DatasetDict

    from data_prep.prepare import conversation_columns, dataset_features

    rows = []
    for k, (clip_id, actions, reasons, description) in enumerate(clips):
        answer = format_answer(description, actions, reasons)
        rows.append({
            "id": clip_id,
            "frames": _frames(k),
            "actions": actions_to_vector(actions),
            "reasons": reasons_to_vector(reasons),
            "description": description,
            **conversation_columns(FRAMES_PER_CLIP, answer),
            "answer_json": answer,
            "answer_text": description,
        })
    data = Dataset.from_list(rows, features=dataset_features())
    DatasetDict({split: data}).save_to_disk(str(path))
    return path


def write_trainer_state(folder, history):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history, "global_step": 3}))
    return folder


SFT_HISTORY = [{"step": s, "loss": 3.0 / s} for s in (1, 2, 3)] + [{"step": 3, "eval_loss": 1.4}]
GRPO_HISTORY = [
    {"step": s, "loss": 0.01 * s, "reward": 0.2 * s, "rewards/action_reasoning_reward/mean": 0.1 * s,
     "rewards/structure_reward/mean": 0.3 * s}
    for s in (1, 2, 3)
]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("eval_data") / "dataset")


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, dataset_dir, tiny_vlm_dir, tiny_clip):
    """One end-to-end run of the CLI on the untrained tiny model (garbage answers, real pipeline)."""
    root = tmp_path_factory.mktemp("eval_run")
    logs = write_trainer_state(root / "sft_logs", SFT_HISTORY)
    out = root / "untrained"
    rc = run.main([
        "--model", str(tiny_vlm_dir), "--dataset", str(dataset_dir), "--split", "test", "--out", str(out),
        "--label", "untrained", "--batch-size", "2", "--max-new-tokens", "12", "--clip-model", tiny_clip,
        "--gallery-size", "3", "--logs", f"sft={logs}",
    ])
    assert rc == 0
    return out


# ---------------------------------------------------------------------------------------------
# Scoring (no model)


def test_score_answers_reads_truth_in_row_order(dataset_dir):
    data = load_eval_split(dataset_dir, "test")
    perfect = [format_answer(d, a, r) for _, a, r, d in CLIPS]
    metrics, records = run.score_answers(perfect, data)
    assert metrics["actions"]["f1_all"] == 1.0 and metrics["reasons"]["mf1"] > 0.0
    assert metrics["reasons"]["f1_all"] == 1.0
    assert metrics["schema_valid_rate"] == 1.0 and metrics["clean_json_rate"] == 1.0
    assert metrics["description"]["exact_match"] == 1.0
    assert [r["id"] for r in records] == [c[0] for c in CLIPS]
    assert records[1]["truth"]["actions"] == ["stop"]

    # Shift answers by one row: now every answer describes another clip, and the scores drop.
    shifted = perfect[1:] + perfect[:1]
    metrics_shifted, _ = run.score_answers(shifted, data)
    assert metrics_shifted["actions"]["f1_all"] < 1.0
    assert metrics_shifted["reasons"]["f1_all"] < 0.5
    assert metrics_shifted["description"]["exact_match"] < 1.0


def test_schema_validity_and_clean_json():
    canonical = format_answer("A road.", ["forward"], ["road_clear"])
    assert run.schema_valid(parse_answer(canonical)) and run.clean_json(parse_answer(canonical))
    chatty = "Sure! " + canonical
    assert run.schema_valid(parse_answer(chatty)) and not run.clean_json(parse_answer(chatty))
    missing_justification = json.dumps({"description": "x", "actions": {k: False for k in ACTION_KEYS},
                                        "reasons": []})
    assert parse_answer(missing_justification).is_json
    assert not run.schema_valid(parse_answer(missing_justification))
    unknown_reason = canonical.replace('"road_clear"', '"road_is_clear"')
    assert not run.schema_valid(parse_answer(unknown_reason))
    assert not run.schema_valid(parse_answer("forward, road clear"))


# ---------------------------------------------------------------------------------------------
# End to end on the tiny model


def test_eval_writes_metrics_with_expected_keys(eval_run):
    metrics = json.loads((eval_run / "metrics.json").read_text())
    for key in ("label", "model", "dataset", "split", "n_samples", "json_rate", "schema_valid_rate",
                "clean_json_rate", "empty_rate", "clip_score", "clip_score_reference", "output_tokens_mean",
                "output_words_mean", "baseline", "generation"):
        assert key in metrics, key
    assert metrics["n_samples"] == len(CLIPS) and metrics["split"] == "test"
    for group, names in (("actions", ACTION_KEYS), ("reasons", REASON_KEYS)):
        for key in ("accuracy", "mf1", "f1_all"):
            assert 0.0 <= metrics[group][key] <= 1.0
        assert set(metrics[group]["per_class"]) == set(names)
    for key in ("json_rate", "schema_valid_rate", "clean_json_rate"):
        assert 0.0 <= metrics[key] <= 1.0
    assert -1.0 <= metrics["clip_score"] <= 1.0 and metrics["clip_scored_samples"] >= 1
    assert 0 < metrics["output_tokens_mean"] <= 12  # bounded by --max-new-tokens
    # The constant floor is fitted on the same split: 3 of 5 clips allow forward.
    assert metrics["baseline"]["actions"]["n_samples"] == len(CLIPS)
    assert "forward" in metrics["baseline"]["actions"]["positive_classes"]


def test_eval_predictions_jsonl(eval_run):
    lines = (eval_run / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [c[0] for c in CLIPS]
    for record, (_, actions, reasons, description) in zip(records, CLIPS):
        assert set(record) >= {"id", "text", "parsed", "truth"}
        assert record["truth"] == {"actions": actions, "reasons": [k for k in REASON_KEYS if k in reasons],
                                   "description": description}
        # what is stored as parsed is what the one parser reads from the stored text
        assert set(record["parsed"]["actions"]) == parse_answer(record["text"]).actions


def test_eval_report_has_our_row_and_published_rows(eval_run):
    text = (eval_run / "report.md").read_text()
    assert re.search(r"^\| \*\*untrained\*\* \|", text, flags=re.MULTILINE)
    for name, *_ in report.PUBLISHED_RESULTS:
        assert name in text
    assert "0.751 | 0.768 | 0.423 | 0.614" in text  # DAMO's published row, copied verbatim
    assert "not comparable" in text and "other people's numbers" in text
    assert report.BEST_CONSTANT_LABEL in text
    assert "per_class_f1_actions.png" in text and "gallery.html" in text and "training_curves.png" in text


def test_eval_plots_are_png(eval_run):
    for name in ("per_class_f1_actions.png", "per_class_f1_reasons.png", "training_curves.png"):
        assert (eval_run / name).read_bytes()[:8] == PNG_MAGIC, name


def test_eval_gallery_is_self_contained(eval_run):
    html_text = (eval_run / "gallery.html").read_text()
    assert html_text.count('class="card"') == 3
    assert html_text.count("data:image/jpeg;base64,") == 3 * FRAMES_PER_CLIP
    for arrow in gallery.ARROWS.values():
        assert arrow in html_text
    assert "src=\"http" not in html_text and "<link" not in html_text  # nothing fetched from outside


def test_compare_merges_runs(eval_run, tmp_path):
    second = tmp_path / "sft"
    shutil.copytree(eval_run, second)
    metrics = json.loads((second / "metrics.json").read_text())
    metrics["actions"]["mf1"] = 0.5
    (second / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "all"
    assert run.main(["--compare", f"untrained={eval_run}", f"sft={second}", "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| **untrained** |" in text and "| **sft** |" in text
    assert report.BEST_CONSTANT_LABEL in text and "DAMO" in text
    assert "sft/gallery.html" in text
    merged = json.loads((out / "metrics.json").read_text())
    assert [r["label"] for r in merged["runs"]] == ["untrained", "sft"] and merged["same_split"]


def test_compare_different_splits_drops_constant_rows(eval_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(eval_run, other)
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["split"] = "val"
    (other / "metrics.json").write_text(json.dumps(metrics))
    run.compare_runs({"a": str(eval_run), "b": str(other)}, tmp_path / "cmp")
    text = (tmp_path / "cmp" / "report.md").read_text()
    assert report.BEST_CONSTANT_LABEL not in text and "not directly comparable" in text


# ---------------------------------------------------------------------------------------------
# Gallery classification


def test_label_outcomes_known_pair():
    outcomes = gallery.label_outcomes({"forward", "stop"}, {"forward", "left"}, ACTION_KEYS)
    assert outcomes == {"forward": "tp", "stop": "fn", "left": "fp", "right": "tn"}


def test_gallery_card_colours_by_outcome():
    truth_actions, truth_reasons = {"forward", "left"}, {"road_clear", "on_left_turn_lane", "solid_line_right"}
    answer = format_answer("A road.", ["forward", "right"], ["road_clear", "green_light", "solid_line_right"])
    example = gallery.GalleryExample(
        id="x", frames=_frames(1), true_actions=truth_actions, true_reasons=truth_reasons,
        parsed=parse_answer(answer), raw_text=answer, schema_valid=True, reference_description="ref",
    )
    card = gallery.render_card(example)
    reason_classes = {key: cls for cls, key in re.findall(r'class="reason (\w+)" data-reason="(\w+)"', card)}
    assert reason_classes == {"road_clear": "tp", "solid_line_right": "tp", "green_light": "fp",
                              "on_left_turn_lane": "fn"}
    arrows = re.findall(r'class="arrow (\w+)" data-action="(\w+)"', card)
    truth_row, prediction_row = dict((a, c) for c, a in arrows[:4]), dict((a, c) for c, a in arrows[4:])
    assert truth_row == {"forward": "on", "stop": "off", "left": "on", "right": "off"}
    assert prediction_row == {"forward": "tp", "stop": "off", "left": "fn", "right": "fp"}
    assert "valid JSON" in card


def test_gallery_thumbnails_are_upscaled():
    import base64
    import io

    uri = gallery.image_data_uri(Image.new("RGB", FRAME_SIZE, (255, 0, 0)), height=144)
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.height == 144 and thumb.width == 256


def test_spread_indices():
    assert gallery.spread_indices(100, 3) == [0, 50, 99]
    assert gallery.spread_indices(2, 5) == [0, 1]
    assert gallery.spread_indices(10, 1) == [0]


# ---------------------------------------------------------------------------------------------
# Plots and logs


def test_training_curves_several_stages(tmp_path):
    sft = write_trainer_state(tmp_path / "sft", SFT_HISTORY)
    stage1 = tmp_path / "stage1"
    write_trainer_state(stage1 / "checkpoint-2", GRPO_HISTORY[:2])
    write_trainer_state(stage1 / "checkpoint-10", GRPO_HISTORY)  # the latest checkpoint, by number
    assert plots.find_trainer_state(stage1) == stage1 / "checkpoint-10" / "trainer_state.json"
    assert plots.reward_keys(plots.load_log_history(stage1)) == [
        "rewards/action_reasoning_reward/mean", "rewards/structure_reward/mean"]
    path = plots.plot_training_curves({"sft": sft, "stage1": stage1}, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_log_errors_name_the_file(tmp_path):
    bad = tmp_path / "trainer_state.json"
    bad.write_text(json.dumps({"global_step": 1}))
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        plots.load_log_history(bad)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        plots.find_trainer_state(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# Bad input


def test_missing_model_and_split_are_named(tmp_path, dataset_dir):
    with pytest.raises(EvaluationError, match="no_such_model"):
        load_model_and_processor(tmp_path / "no_such_model")
    with pytest.raises(EvaluationError, match="'val'"):
        load_eval_split(dataset_dir, "val")
    with pytest.raises(EvaluationError, match="not_prepared"):
        load_eval_split(tmp_path / "not_prepared", "test")


def test_cli_error_exit_names_the_folder(tmp_path, dataset_dir, capsys):
    rc = run.main(["--model", str(tmp_path / "missing_model"), "--dataset", str(dataset_dir), "--out",
                   str(tmp_path / "out"), "--no-clip"])
    assert rc == 2
    assert "missing_model" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# Generation


def test_batched_generation_matches_one_at_a_time(tiny_vlm_dir):
    """Left padding: a clip's answer does not depend on what else is in its batch."""
    from evaluate.generate import generate_answers

    model, processor = load_model_and_processor(tiny_vlm_dir)
    assert processor.tokenizer.padding_side == "left"
    clips = [_frames(0), _frames(1)[:1], _frames(2)]  # different frame counts -> different prompt lengths
    batched = generate_answers(model, processor, clips, batch_size=3, max_new_tokens=8, progress=False)
    single = generate_answers(model, processor, clips, batch_size=1, max_new_tokens=8, progress=False)
    assert batched.texts == single.texts
    assert all(0 < n <= 8 for n in batched.token_counts)
    assert all(text == text.strip() for text in batched.texts)


def test_lora_adapter_folder_loads_with_its_adapter(tiny_vlm_dir, tmp_path):
    """An adapter folder (adapter_config.json + weights, no processor) loads through transformers+peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from evaluate.generate import generate_batch

    import torch

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm_dir))
    lora = LoraConfig(r=2, target_modules=r".*text_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    peft_model = get_peft_model(base, lora).eval()
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)

    model, processor = load_model_and_processor(adapter_dir)
    assert any("lora_" in name for name, _ in model.named_parameters())
    clip = [_frames(3)]
    assert generate_batch(model, processor, clip, 8).texts == generate_batch(peft_model, processor, clip, 8).texts
    # ... and the adapter changes the model: its logits differ from the bare base's.
    inputs = processor(text=[processor.apply_chat_template(image_prompt(1), add_generation_prompt=True)],
                       images=[clip[0][:1]], return_tensors="pt")
    bare = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm_dir)).eval()
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, bare(**inputs).logits)


def test_bad_log_path_fails_before_generation(tmp_path, dataset_dir, tiny_vlm_dir, capsys):
    rc = run.main(["--model", str(tiny_vlm_dir), "--dataset", str(dataset_dir), "--out", str(tmp_path / "o"),
                   "--no-clip", "--logs", str(tmp_path / "missing_run")])
    assert rc == 2 and "missing_run" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
