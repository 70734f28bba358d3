"""evaluate/decoding_record.py: one row per model and decoding mode, and the command in the record."""

from __future__ import annotations

import json

from evaluate import decoding_record


def write_run(folder, label, decoding, valid_rate, constraint_ms):
    folder.mkdir()
    metrics = {
        "label": label, "dataset": "work/dataset", "split": "test", "n_samples": 200,
        "schema_valid_rate": valid_rate, "output_tokens_mean": 120.0,
        "actions": {"f1_all": 0.8, "mf1": 0.4}, "reasons": {"f1_all": 0.7, "mf1": 0.3},
        "generation": {"decoding": decoding, "batch_size": 8, "max_new_tokens": 256, "device": "cpu",
                       "seconds_per_sample": 0.5, "hit_max_new_tokens_rate": 0.0,
                       "constraint_ms_per_token": constraint_ms},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_record_has_a_row_per_mode_and_the_command(tmp_path):
    runs = {"sft-free": str(write_run(tmp_path / "free", "sft", "free", 0.975, None)),
            "sft-constrained": str(write_run(tmp_path / "constrained", "sft", "constrained", 1.0, 0.25))}
    out = tmp_path / "record.md"
    assert decoding_record.main(["--runs", *(f"{k}={v}" for k, v in runs.items()), "--out", str(out),
                                 "--command", "make decoding-record"]) == 0
    text = out.read_text()
    assert "Made by `make decoding-record`." in text
    assert "| sft | free | 97.5% |" in text
    assert "| sft | constrained | 100.0% |" in text and "| 0.250 |" in text


def test_missing_run_names_the_folder(tmp_path, capsys):
    code = decoding_record.main(["--runs", f"x={tmp_path / 'nowhere'}", "--out", str(tmp_path / "r.md"),
                                 "--command", "c"])
    assert code == 2 and "nowhere" in capsys.readouterr().err
