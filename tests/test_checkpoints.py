"""Resuming: ``--resume_from_checkpoint true`` finds the newest complete checkpoint; half-written
ones are skipped, naming them; a wrong path is a clear error before anything loads."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recipes.checkpoints import resolve_resume


def _checkpoint(root, step, complete=True):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return folder


def test_true_resumes_from_the_newest_complete_checkpoint(tmp_path):
    _checkpoint(tmp_path, 5)
    newest = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 2)
    for value in ("true", "True", True, "last"):
        assert resolve_resume(value, tmp_path) == str(newest)


def test_a_half_written_checkpoint_is_skipped_with_a_message_naming_it(tmp_path, caplog):
    complete = _checkpoint(tmp_path, 10)
    half = _checkpoint(tmp_path, 20, complete=False)
    with caplog.at_level(logging.WARNING, logger="recipes.checkpoints"):
        assert resolve_resume("true", tmp_path) == str(complete)
    assert str(half) in caplog.text and "trainer_state.json" in caplog.text


def test_true_without_a_complete_checkpoint_is_an_error_naming_the_folder(tmp_path):
    _checkpoint(tmp_path, 20, complete=False)
    with pytest.raises(ValueError, match=str(tmp_path)):
        resolve_resume("true", tmp_path)
    with pytest.raises(ValueError, match="no complete"):
        resolve_resume("true", tmp_path / "never-written")


def test_an_explicit_path_must_be_a_complete_checkpoint(tmp_path):
    complete = _checkpoint(tmp_path, 3)
    assert resolve_resume(str(complete), tmp_path) == str(complete)
    half = _checkpoint(tmp_path, 4, complete=False)
    with pytest.raises(ValueError, match="trainer_state.json"):
        resolve_resume(str(half), tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)


@pytest.mark.parametrize("value", [None, False, "false", "", "none"])
def test_no_resume_starts_fresh(tmp_path, value):
    _checkpoint(tmp_path, 3)
    assert resolve_resume(value, tmp_path) is None


def test_sft_recipe_resumes_with_true_after_a_kill_left_a_half_written_checkpoint(
    tiny_vlm_dir, small_prepared_dataset, tmp_path, caplog
):
    """The user's path: train with checkpoints, a kill leaves the newest half-written, rerun with
    ``--resume_from_checkpoint true``: the run continues from the last complete one."""
    import json
    import shutil
    from pathlib import Path

    from recipes.sft import sft

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "sft" / "sft_demo.yaml"
    out = tmp_path / "sft"
    common = ["--config", str(recipe), "--model_name_or_path", str(tiny_vlm_dir), "--dataset_path",
              str(small_prepared_dataset), "--output_dir", str(out), "--eval_strategy", "no", "--disable_tqdm", "true",
              "--per_device_train_batch_size", "4", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1"]
    sft.main([*common, "--max_steps", "2"])
    (out / "checkpoint-2" / "trainer_state.json").unlink()  # the kill: checkpoint-2 never finished
    shutil.rmtree(out / "runs", ignore_errors=True)
    with caplog.at_level(logging.INFO, logger="recipes.checkpoints"):
        sft.main([*common, "--max_steps", "3", "--resume_from_checkpoint", "true"])
    assert f"skipping {out / 'checkpoint-2'}" in caplog.text
    assert f"resuming from {out / 'checkpoint-1'}" in caplog.text
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3]


# --- SIGKILL after the first checkpoint, then resume: the same end as a run never interrupted ---

KILLER = Path(__file__).with_name("kill_after_first_checkpoint.py")


def _run(args, kill=False):
    import signal
    import subprocess
    import sys

    import os

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(KILLER), *args] if kill else [sys.executable, "-m", *args]
    # a script's own folder heads sys.path, not the working directory: name this checkout first, or an
    # installed copy of the project (an editable install elsewhere) is what the script imports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    if kill:
        assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    else:
        assert done.returncode == 0, done.stderr[-3000:]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _assert_same(a, b):
    import torch

    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing[:5]


@pytest.mark.slow
def test_sft_killed_after_its_first_checkpoint_resumes_to_the_same_weights(tiny_vlm_dir, small_prepared_dataset,
                                                                          tmp_path):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "sft" / "sft_demo.yaml"

    def args(out, *extra):
        return ["recipes.sft.sft", "--config", str(recipe), "--model_name_or_path", str(tiny_vlm_dir),
                "--dataset_path", str(small_prepared_dataset), "--output_dir", str(out), "--eval_strategy", "no",
                "--disable_tqdm", "true", "--per_device_train_batch_size", "4", "--max_steps", "3",
                "--save_strategy", "steps", "--save_steps", "1", *extra]

    _run(args(tmp_path / "straight"))
    _run(args(tmp_path / "killed"), kill=True)
    assert (tmp_path / "killed" / "checkpoint-1").is_dir() and not (tmp_path / "killed" / "model.safetensors").exists()
    _run(args(tmp_path / "killed", "--resume_from_checkpoint", "true"))
    _assert_same(_weights(tmp_path / "straight"), _weights(tmp_path / "killed"))


@pytest.mark.slow
def test_actor_critic_killed_after_its_first_checkpoint_resumes_to_the_same_weights_and_head(
    tiny_vlm_dir, tiny_clip, small_prepared_dataset, tmp_path
):
    import json

    from safetensors.torch import load_file

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "stage1" / "stage1_demo.yaml"
    clip = json.dumps({"clip_alignment": {"model_name": tiny_clip, "pretrained": None}})

    def args(out, *extra):
        return ["recipes.stage1.stage1", "--config", str(recipe), "--model_name_or_path", str(tiny_vlm_dir),
                "--dataset_path", str(small_prepared_dataset), "--output_dir", str(out), "--reward_params", clip,
                "--disable_tqdm", "true", "--per_device_train_batch_size", "4", "--num_generations", "4",
                "--max_completion_length", "12", "--mask_truncated_completions", "false", "--critic_warmup_steps",
                "0", "--max_train_samples", "8", "--max_steps", "3", "--save_strategy", "steps", "--save_steps", "1",
                *extra]

    _run(args(tmp_path / "straight"))
    _run(args(tmp_path / "killed"), kill=True)
    _run(args(tmp_path / "killed", "--resume_from_checkpoint", "true"))
    _assert_same(_weights(tmp_path / "straight"), _weights(tmp_path / "killed"))
    _assert_same(load_file(str(tmp_path / "straight" / "value_head.safetensors")),
                 load_file(str(tmp_path / "killed" / "value_head.safetensors")))
