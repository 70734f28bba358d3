"""The demo learns: on the synthetic world, whose labels follow from the pixels, the tiny
SmolVLM-shaped model trained by the SFT recipe answers far better than the untrained model and
than the best constant prediction. Seeded, with margins, a few CPU minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.sft import sft

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
WORLD_CLIPS = 1500  # the demo's world: train ~1050, test ~300
WORLD_SIZE = (128, 72)  # frames are read at 64 px: the world's cues are sized for that
FRAMES = 4
EVAL_SAMPLES = 150
EVAL_MAX_NEW_TOKENS = 160  # answers are ~100 tokens; the untrained model runs to the limit
SFT_EPOCHS = 6
MARGIN_OVER_CONSTANT = {"actions": 0.03, "reasons": 0.2}
MARGIN_OVER_UNTRAINED = 0.2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world_dataset(tmp_path_factory):
    from data_prep.prepare import prepare
    from data_prep.synth import WorldConfig, generate

    root = tmp_path_factory.mktemp("learning") / "world"
    width, height = WORLD_SIZE
    generate(root, WORLD_CLIPS, seed=1, config=WorldConfig(width=width, height=height), num_proc=2, progress=False)
    out = root.parent / "dataset"
    prepare(root, out, frames=FRAMES, stride=1, image_size=64, num_proc=2)
    return out


@pytest.fixture(scope="module")
def sft_model(world_dataset, tiny_vlm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("learning_sft") / "sft"
    sft.main([
        "--config", str(RECIPES / "sft" / "sft_demo.yaml"),
        "--model_name_or_path", str(tiny_vlm_dir),
        "--dataset_path", str(world_dataset),
        "--output_dir", str(out),
        "--num_train_epochs", str(SFT_EPOCHS),
        "--eval_strategy", "no",
        "--disable_tqdm", "true",
    ])
    return out


def _evaluate(model_dir, dataset, out, label):
    from evaluate.run import evaluate_model

    return evaluate_model(
        str(model_dir), str(dataset), "test", str(out), label=label, max_samples=EVAL_SAMPLES,
        clip_model=None, gallery_size=2, progress=False, max_new_tokens=EVAL_MAX_NEW_TOKENS,
    )


def test_sft_output_is_a_complete_model_folder(sft_model):
    for name in ("config.json", "model.safetensors", "processor_config.json", "recipe.yaml", "smoldrive.json",
                 "trainer_state.json"):
        assert (sft_model / name).is_file(), name
    info = json.loads((sft_model / "smoldrive.json").read_text())
    assert info["layout"] == "full model" and info["versions"]["trl"] == "1.16.0"


def test_sft_learns_actions_and_reasons_from_the_frames(world_dataset, sft_model, tiny_vlm_dir, tmp_path):
    untrained = _evaluate(tiny_vlm_dir, world_dataset, tmp_path / "untrained", "untrained")
    trained = _evaluate(sft_model, world_dataset, tmp_path / "sft", "sft")
    assert trained["schema_valid_rate"] > 0.9
    for group in ("actions", "reasons"):
        ours, constant = trained[group]["f1_all"], trained["baseline"][group]["f1_all"]
        assert ours > untrained[group]["f1_all"] + MARGIN_OVER_UNTRAINED, (group, ours, untrained[group]["f1_all"])
        assert ours > constant + MARGIN_OVER_CONSTANT[group], (group, ours, constant)


# --- RL stages: a short run on a few fixed clips raises its mean reward above its start --------
# The machinery learns (not a result: the RL record, `make rl-record`, measures that on held-out
# clips). The demo recipes' own settings are tuned for the whole train split; on a handful of clips
# a larger step shows learning within a minute.
RL_STEPS = 60
RL_CLIPS = 8  # a fixed handful of clips, so the reward curve measures learning, not which clips came up
RL_OVERRIDES = ["--learning_rate", "1e-4", "--per_device_train_batch_size", "16", "--critic_warmup_steps", "5"]
RL_WINDOW = {"start": 10, "end": 20}  # mean reward of the first and of the last steps
RL_MARGIN = 0.02


@pytest.fixture(scope="module")
def trained_clip(world_dataset, tiny_clip, tmp_path_factory):
    from tiny_models.train_clip import TrainClipConfig, train_clip

    out = tmp_path_factory.mktemp("learning_clip") / "clip"
    train_clip(str(world_dataset), tiny_clip, str(out), TrainClipConfig(seed=0, progress=False))
    return f"local-dir:{out}"


def _reward_curve(output_dir: Path) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["reward"] for entry in history if "reward" in entry]


def _assert_reward_rises(rewards: list[float]):
    assert len(rewards) == RL_STEPS
    start = sum(rewards[: RL_WINDOW["start"]]) / RL_WINDOW["start"]
    end = sum(rewards[-RL_WINDOW["end"] :]) / RL_WINDOW["end"]
    assert end > start + RL_MARGIN, (start, end)


def _rl_args(stage: str, sft_model, world_dataset, output_dir) -> list[str]:
    return [
        "--config", str(RECIPES / stage / f"{stage}_demo.yaml"),
        "--model_name_or_path", str(sft_model),
        "--dataset_path", str(world_dataset),
        "--output_dir", str(output_dir),
        "--max_steps", str(RL_STEPS),
        "--max_train_samples", str(RL_CLIPS),
        "--disable_tqdm", "true",
        *(RL_OVERRIDES if stage == "stage1" else RL_OVERRIDES[:4]),
    ]


def test_stage1_actor_critic_raises_the_clip_reward(sft_model, world_dataset, trained_clip, tmp_path):
    from recipes.stage1 import stage1

    out = tmp_path / "stage1"
    clip = json.dumps({"clip_alignment": {"model_name": trained_clip, "pretrained": None}})
    stage1.main(_rl_args("stage1", sft_model, world_dataset, out) + ["--reward_params", clip])
    _assert_reward_rises(_reward_curve(out))
    assert (out / "value_head.safetensors").is_file()


def test_stage2_grpo_raises_the_action_reasoning_reward(sft_model, world_dataset, tmp_path):
    from recipes.stage2 import stage2

    out = tmp_path / "stage2"
    stage2.main(_rl_args("stage2", sft_model, world_dataset, out))
    _assert_reward_rises(_reward_curve(out))
