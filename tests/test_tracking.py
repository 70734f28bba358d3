"""recipes/tracking.py and recipes/model_card.py: W&B offline without a login (never a prompt), TensorBoard as the fallback
and the alternative, and the model card (chain, recipe, data, metrics, versions)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from recipes import model_card, tracking

REPO = Path(__file__).resolve().parents[1]
WANDB_VARIABLES = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_PROJECT",
                   "NETRC", "WANDB_DIR", "WANDB_CONFIG_DIR", "TENSORBOARD_LOGGING_DIR")


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    """A home with no netrc, no wandb settings and no W&B variables."""
    home = tmp_path / "home"
    home.mkdir()
    for name in WANDB_VARIABLES:
        # set, then delete: monkeypatch then also removes what configure_tracking adds to os.environ
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    return home


def args(output_dir, report_to):
    return SimpleNamespace(report_to=list(report_to), output_dir=str(output_dir))


# --- W&B ---------------------------------------------------------------------------------------


def test_without_a_login_wandb_runs_offline_and_never_prompts(tmp_path):
    """A real wandb run in a fresh process with stdin closed: without configure_tracking this very
    run stops with wandb's 'No API key configured' (checked here too); with it, it writes an offline run."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in WANDB_VARIABLES}
    env.update(HOME=str(home), WANDB_DIR=str(tmp_path), WANDB_CONFIG_DIR=str(home / "wandb-config"),
               WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    script = (
        "import sys, logging, os\n"
        "from types import SimpleNamespace\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from recipes.tracking import configure_tracking\n"
        "a = SimpleNamespace(report_to=['wandb'], output_dir='out')\n"
        "if sys.argv[1] == 'configured': configure_tracking(a)\n"
        "print('WANDB_MODE=' + str(os.environ.get('WANDB_MODE')))\n"
        "import wandb\n"
        "run = wandb.init(project='smoldrive-test')\n"
        "run.log({'loss': 1.0}); run.finish()\n"
    )
    runs = {}
    for variant in ("bare", "configured"):
        runs[variant] = subprocess.run(
            [sys.executable, "-c", script, variant], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=180,
        )
    assert runs["bare"].returncode != 0 and "API key" in runs["bare"].stderr  # the failure being prevented
    done = runs["configured"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WANDB_MODE=offline" in done.stdout
    offline_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    # the log line says where the run lives and how to upload it
    assert str((tmp_path / "wandb").resolve()) in done.stderr and "wandb sync" in done.stderr


def test_an_api_key_keeps_wandb_online(no_login, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert tracking.configure_tracking(args(tmp_path, ["wandb"])) == ["wandb"]
    assert "WANDB_MODE" not in os.environ
    assert os.environ["WANDB_PROJECT"] == tracking.WANDB_DEFAULT_PROJECT


def test_a_netrc_login_for_the_wandb_host_counts_and_another_host_does_not(no_login, monkeypatch, tmp_path):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine github.com login me password secret\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert tracking.wandb_login_source() is None
    netrc_file.write_text("machine api.wandb.ai login user password " + "k" * 40 + "\n")
    assert tracking.wandb_login_source() == str(netrc_file)
    tracking.configure_tracking(args(tmp_path, ["wandb"]))
    assert "WANDB_MODE" not in os.environ
    # a self-hosted server is looked up by its own host
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert tracking.wandb_login_source() is None


def test_a_wandb_mode_the_user_set_is_left_alone(no_login, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    tracking.configure_tracking(args(tmp_path, ["wandb"]))
    assert os.environ["WANDB_MODE"] == "disabled"


def test_no_wandb_listed_changes_nothing(no_login, tmp_path):
    assert tracking.configure_tracking(args(tmp_path, [])) == []
    assert "WANDB_MODE" not in os.environ


def test_without_the_wandb_package_it_falls_back_to_tensorboard(no_login, monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    training_args = args(tmp_path, ["wandb"])
    with caplog.at_level(logging.INFO, logger="recipes.tracking"):
        assert tracking.configure_tracking(training_args) == ["tensorboard"]
    assert training_args.report_to == ["tensorboard"]
    assert "not installed" in caplog.text and str(tmp_path / "runs") in caplog.text
    assert "WANDB_MODE" not in os.environ


# --- TensorBoard ---------------------------------------------------------------------------------


def test_report_to_tensorboard_writes_event_files(tiny_vlm_dir, small_prepared_dataset, tmp_path):
    """The SFT recipe with report_to: tensorboard leaves event files holding the training loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from recipes.sft import sft

    out = tmp_path / "sft"
    sft.main([
        "--config", str(REPO / "recipes/sft/sft_demo.yaml"), "--model_name_or_path", str(tiny_vlm_dir),
        "--dataset_path", str(small_prepared_dataset), "--output_dir", str(out), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--max_train_samples", "8", "--eval_strategy", "no",
        "--logging_steps", "1", "--report_to", "tensorboard", "--disable_tqdm", "true",
    ])
    event_files = list((out / tracking.TENSORBOARD_RUNS_FOLDER).rglob("events.out.tfevents.*"))
    assert event_files
    accumulator = EventAccumulator(str(event_files[0].parent))
    accumulator.Reload()
    losses = accumulator.Scalars("train/loss")
    assert [event.step for event in losses] == [1, 2]


# --- model cards ---------------------------------------------------------------------------------

HUB_BASE = "HuggingFaceTB/SmolVLM-Instruct"


def make_stage_folder(folder: Path, recipe: dict, steps: int, stage: str) -> Path:
    """A stage's output as save_stage leaves it (recipe.yaml, trainer_state.json, weights), plus its card."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": steps}))
    (folder / "model.safetensors").write_bytes(b"weights")
    model_card.write_model_card(folder, recipe, stage, recipe["model_name_or_path"], recipe["dataset_path"])
    return folder


def front_matter_and_body(card: Path) -> tuple[dict, str]:
    text = card.read_text()
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.DOTALL)
    assert match, "the card must start with YAML front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


@pytest.fixture
def chain(tmp_path, small_prepared_dataset):
    data = str(small_prepared_dataset)
    sft_recipe = {"model_name_or_path": HUB_BASE, "dataset_path": data, "target_column": "answer_json",
                  "use_peft": True, "load_in_4bit": True, "lora_r": 8, "learning_rate": 1e-4}
    sft = make_stage_folder(tmp_path / "sft", sft_recipe, steps=12, stage="sft")
    stage1_recipe = {"model_name_or_path": str(sft), "dataset_path": data, "algorithm": "actor_critic",
                     "reward_funcs": ["clip_alignment"], "reward_weights": [1.0], "use_peft": False,
                     "vision_tower": "frozen"}
    stage1 = make_stage_folder(tmp_path / "stage1", stage1_recipe, steps=34, stage="stage1")
    stage2_recipe = {"model_name_or_path": str(stage1), "dataset_path": data, "reward_funcs": ["action_reasoning"],
                     "reward_weights": [1.0], "use_peft": True, "lora_r": 8, "beta": 0.02,
                     "frames_per_clip": 3, "image_splitting": False}
    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    (stage2 / "trainer_state.json").write_text(json.dumps({"global_step": 56}))
    (stage2 / "model.safetensors").write_bytes(b"weights")
    return SimpleNamespace(sft=sft, stage1=stage1, stage2=stage2, recipe=stage2_recipe, data=data)


def test_model_card_lists_the_chain_recipe_data_and_versions(chain):
    card = model_card.write_model_card(chain.stage2, chain.recipe, "stage2", str(chain.stage1), chain.data)
    front, body = front_matter_and_body(card)
    assert front["base_model"] == HUB_BASE  # the hub model the whole chain started from
    assert front["library_name"] == "transformers"
    assert {"smoldrive", "trl", "stage2", "grpo", "lora"} <= set(front["tags"])
    assert front[model_card.STAGE_KEY] == "stage2"
    # the chain, oldest first, with each stage's method and steps
    rows = [line for line in body.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [row.split("|")[2].strip() for row in rows] == ["base", "sft", "stage1", "**stage2** (this model)"]
    assert "QLoRA r=8" in rows[1] and "| 12 |" in rows[1]
    assert "actor-critic" in rows[2] and "| 34 |" in rows[2]
    assert "GRPO on 1·action_reasoning, LoRA r=8" in rows[3] and "| 56 |" in rows[3]
    # the recipe, as YAML that reads back to what was given
    recipe_block = re.search(r"```yaml\n(.*?)```", body, re.DOTALL).group(1)
    assert yaml.safe_load(recipe_block) == chain.recipe
    # the data: the prepared set's options and split sizes
    assert "3 frames per clip" in body and re.search(r"train \d+, val \d+, test \d+", body)
    # versions of what trained it
    assert f"| transformers | {metadata.version('transformers')} |" in body
    assert f"| trl | {metadata.version('trl')} |" in body
    assert "Not evaluated yet" in body


def test_model_card_base_model_is_left_out_when_the_chain_starts_from_a_local_folder(tmp_path, tiny_vlm_dir):
    recipe = {"model_name_or_path": str(tiny_vlm_dir), "dataset_path": str(tmp_path / "none")}
    card = model_card.write_model_card(tmp_path / "sft", recipe, "sft", str(tiny_vlm_dir), recipe["dataset_path"])
    front, body = front_matter_and_body(card)
    assert "base_model" not in front  # a local path is not a hub id
    assert str(tiny_vlm_dir) in body


def write_metrics(path: Path, actions_mf1: float) -> Path:
    path.write_text(json.dumps({
        "split": "test", "dataset": "work/dataset", "n_samples": 24,
        "actions": {"mf1": actions_mf1, "f1_all": 0.61, "accuracy": 0.7},
        "reasons": {"mf1": 0.21, "f1_all": 0.33, "accuracy": 0.9}, "json_rate": 0.95,
    }))
    return path


def test_model_card_shows_metrics_given_or_found_but_not_stale_ones(chain):
    found = write_metrics(chain.stage2 / "metrics.json", actions_mf1=0.512)
    stale = time.time() - 3600
    os.utime(found, (stale, stale))  # evaluated before these weights were written: another model
    card = model_card.write_model_card(chain.stage2, chain.recipe, "stage2", str(chain.stage1), chain.data)
    assert "0.512" not in card.read_text() and "Not evaluated yet" in card.read_text()
    os.utime(found)  # evaluated after training
    card = model_card.write_model_card(chain.stage2, chain.recipe, "stage2", str(chain.stage1), chain.data)
    assert "| actions | 0.512 | 0.610 | 0.700 |" in card.read_text()
    given = write_metrics(chain.stage2.parent / "eval.json", actions_mf1=0.777)
    card = model_card.write_model_card(chain.stage2, chain.recipe, "stage2", str(chain.stage1), chain.data,
                                     metrics=given)
    assert "| actions | 0.777 |" in card.read_text() and str(given) in card.read_text()


def test_refreshing_a_card_after_evaluation_keeps_its_stage(chain):
    metrics = write_metrics(chain.sft.parent / "sft_metrics.json", actions_mf1=0.444)
    assert model_card.main(["--model", str(chain.sft), "--metrics", str(metrics)]) == 0
    front, body = front_matter_and_body(chain.sft / "README.md")
    assert front[model_card.STAGE_KEY] == "sft" and front["base_model"] == HUB_BASE
    assert "| actions | 0.444 |" in body


def test_refreshing_a_folder_that_is_not_a_stage_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        model_card.main(["--model", str(tmp_path)])
    assert "recipe.yaml" in capsys.readouterr().err
