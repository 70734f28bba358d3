"""The frames study's plumbing (evaluate/frames_study.py): settings, a tiny real run, the record."""

from __future__ import annotations

import json

from evaluate import frames_study
from evaluate.frames_study import Setting


def test_settings_take_every_m_at_stride_one_and_other_strides_for_m_above_one():
    names = [s.name for s in frames_study.settings([1, 2, 4], [1, 2])]
    assert names == ["M1-stride1", "M2-stride1", "M4-stride1", "M2-stride2", "M4-stride2"]


def _fake_run(seed, f1, tokens, seconds):
    per_class = {"front_car_turning_left": f1, "obstacle_person": f1}
    metrics = {"actions": {"f1_all": f1, "mf1": f1, "per_class": {"left": f1}},
               "reasons": {"f1_all": f1, "mf1": f1, "per_class": per_class}}
    return {"seed": seed, "metrics": metrics, "image_tokens": tokens, "step_seconds": seconds}


def test_the_record_has_a_row_per_setting_with_the_spread_over_seeds(tmp_path):
    setting_list = frames_study.settings([1, 2], [1])
    runs = {"M1-stride1": [_fake_run(0, 0.5, 16, 0.1), _fake_run(1, 0.7, 16, 0.3)],
            "M2-stride1": [_fake_run(0, 0.8, 32, 0.2), _fake_run(1, 0.8, 32, 0.2)]}
    watch = ["front_car_turning_left", "left"]
    rows = frames_study.collect(runs, watch)
    runs["M1-stride1"][0]["metrics"]["baseline"] = {g: {"f1_all": 0.25, "mf1": 0.125} for g in ("actions", "reasons")}
    floor = frames_study.constant_floor(runs)
    assert floor.startswith("Best constant prediction on the same val clips: act F1_all 0.2500")
    text = frames_study.render("T", setting_list, rows, watch, [0, 1], "t.png", "cmd", "sizing.", floor)
    assert floor in text
    lines = text.splitlines()
    # The four F1 metrics over the two seeds, image tokens, s/step; then the watched classes.
    over_seeds = " | ".join(["0.6000 [0.5000, 0.7000]"] * 4)
    assert f"| 1 | 1 | {over_seeds} | 16 | 0.200 |" in lines
    assert f"| 2 | 1 | {' | '.join(['0.8000 [0.8000, 0.8000]'] * 4)} | 32 | 0.200 |" in lines
    assert "| 1 | 1 | 0.6000 [0.5000, 0.7000] | 0.6000 [0.5000, 0.7000] |" in lines
    frames_study.plot(setting_list, rows, tmp_path / "t.png", "T", runs["M1-stride1"][0]["metrics"]["baseline"])
    assert (tmp_path / "t.png").stat().st_size > 0


def test_a_tiny_study_end_to_end(small_synth_world, tiny_vlm_dir, tmp_path):
    out = tmp_path / "record" / "study.md"
    code = frames_study.main([
        "--root", str(small_synth_world), "--model", str(tiny_vlm_dir), "--frames", "1", "2",
        "--strides", "1", "--seeds", "0", "--image-size", "32", "--num-proc", "1",
        "--max-eval-samples", "2", "--max-new-tokens", "8", "--work", str(tmp_path / "work"), "--out", str(out), "--",
        "--max_steps", "1", "--per_device_train_batch_size", "2", "--eval_strategy", "no",
        "--logging_steps", "1"])
    assert code == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 1 | 1 |") or line.startswith("| 2 | 1 |")]
    assert len(rows) == 4  # the F1 table and the per-class table, M = 1 and M = 2
    raw = json.loads(out.with_suffix(".json").read_text())
    tokens = {name: runs[0]["image_tokens"] for name, runs in raw["runs"].items()}
    assert tokens["M2-stride1"] == 2 * tokens["M1-stride1"] > 0  # twice the frames, twice the tokens
    assert all(runs[0]["step_seconds"] > 0 for runs in raw["runs"].values())
    assert out.with_suffix(".png").stat().st_size > 0
    assert raw["train_args"][:2] == ["--max_steps", "1"]
