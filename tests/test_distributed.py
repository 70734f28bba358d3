"""Data parallelism: RL stages launched with two processes on CPU (gloo), with the same accelerate
config users launch with (recipes/accelerate/ddp.yaml) plus the recipe key ``use_cpu: true``.

Each stage runs through tests/distributed_check.py, which calls the stage's own ``main`` and
records, per process, the rewards it computed, the rewards TRL gathered, and the final weights.
What must hold:
- both processes ran in one process group (world size 2, gloo) on different clips;
- every process sees the same gathered rewards, and its own rewards sit in its slice of them;
- the policy (and the actor-critic's value head, averaged by hand outside DDP) ends identical on
  both processes, and differs from where it started;
- the saved folder loads with from_pretrained and holds those weights, written by one process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
HELPER = REPO / "tests" / "distributed_check.py"
ACCELERATE_CONFIG = REPO / "recipes" / "accelerate" / "ddp.yaml"
NUM_PROCESSES = 2
LAUNCH_TIMEOUT_S = 600  # generous: the machine may be shared; a normal run takes well under a minute
# small enough for seconds per step on two CPU cores, large enough that each process gets its own clip:
# per process 4 completions = one clip x 4 generations; the global batch holds 2 clips.
RUN_OVERRIDES = [
    "--use_cpu", "true", "--max_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "4",
    "--max_completion_length", "16", "--max_train_samples", "8", "--report_to", "none", "--disable_tqdm", "true",
    # the untrained model never ends within 16 tokens: with truncated completions masked nothing would train
    "--mask_truncated_completions", "false",
]
DIGEST_REWARD = "completion_digest"  # registered by the helper: a text hash in [0, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(stage: str, work: Path, model: Path, dataset: Path, extra: list[str], config: Path = ACCELERATE_CONFIG) -> dict:
    record, out = work / "record", work / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--num_processes", str(NUM_PROCESSES), "--main_process_port", str(free_port()),
        str(HELPER), "--stage", stage, "--record", str(record),
        "--config", str(REPO / "recipes" / stage / f"{stage}_demo.yaml"),
        "--model_name_or_path", str(model), "--dataset_path", str(dataset), "--output_dir", str(out),
        *RUN_OVERRIDES, *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           # the helper is a script: its folder heads sys.path, not the working directory; name this checkout
           # first, or an installed copy of the project (an editable install elsewhere) is what it imports
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=LAUNCH_TIMEOUT_S)
    assert done.returncode == 0, f"{stage} with {NUM_PROCESSES} processes failed:\n{done.stderr[-4000:]}"
    ranks = []
    for rank in range(NUM_PROCESSES):
        info = json.loads((record / f"rank{rank}.json").read_text())
        info["weights"] = load_file(str(record / f"rank{rank}.safetensors"))
        ranks.append(info)
    return {"ranks": ranks, "out": out}


@pytest.fixture(scope="module")
def dataset_copy(small_prepared_dataset, tmp_path_factory):
    """The session dataset is read-only; the recipes' dataset.map writes cache files beside it."""
    target = tmp_path_factory.mktemp("distributed") / "dataset"
    shutil.copytree(small_prepared_dataset, target)
    return target


@pytest.fixture(scope="module")
def stage2_run(tiny_vlm_dir, dataset_copy, tmp_path_factory):
    return launch("stage2", tmp_path_factory.mktemp("stage2"), tiny_vlm_dir, dataset_copy,
                  ["--reward_funcs", DIGEST_REWARD, "action_reasoning", "--reward_weights", "1.0", "1.0"])


@pytest.fixture(scope="module")
def stage1_run(tiny_vlm_dir, tiny_clip, dataset_copy, tmp_path_factory):
    clip = json.dumps({"clip_alignment": {"model_name": tiny_clip, "pretrained": None}})
    # two micro-batches per optimizer step: the value head is averaged once per step, after both
    return launch("stage1", tmp_path_factory.mktemp("stage1"), tiny_vlm_dir, dataset_copy,
                  ["--reward_params", clip, "--gradient_accumulation_steps", "2", "--critic_warmup_steps", "0"])


def check_one_process_group(run):
    for rank, info in enumerate(run["ranks"]):
        assert info["rank"] == rank and info["world_size"] == NUM_PROCESSES
        assert info["distributed_type"].endswith("MULTI_CPU")
    first_clips = [set(info["steps"][0]["ids"]) for info in run["ranks"]]
    assert first_clips[0].isdisjoint(first_clips[1]), "both processes trained on the same clips"


def check_same_rewards_after_gathering(run):
    steps = [info["steps"] for info in run["ranks"]]
    assert len(steps[0]) == len(steps[1]) >= 2
    for step_index, per_rank in enumerate(zip(*steps)):
        gathered = [torch.tensor(step["gathered"]) for step in per_rank]
        assert torch.equal(gathered[0], gathered[1]), f"step {step_index}: processes gathered different rewards"
        local = [torch.tensor(step["local"]) for step in per_rank]
        n = local[0].shape[0]
        assert gathered[0].shape[0] == NUM_PROCESSES * n
        for rank, own in enumerate(local):  # each process's rewards sit in its own slice, in order
            torch.testing.assert_close(gathered[0][rank * n : (rank + 1) * n], own, rtol=0, atol=1e-6)
        # the comparison means something: rewards differ between completions
        assert torch.unique(gathered[0][:, 0]).numel() > 1


def check_same_final_weights(run, initial: dict[str, torch.Tensor], prefix: str = ""):
    weights = [{k: v for k, v in info["weights"].items() if k.startswith(prefix)} for info in run["ranks"]]
    assert weights[0] and weights[0].keys() == weights[1].keys()
    differing = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert not differing, f"processes ended with different weights: {differing[:5]}"
    moved = [k for k, v in initial.items() if not torch.equal(v, weights[0][prefix + k])]
    assert moved, "training changed nothing: the comparison above proves nothing"


def model_weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(folder)
    return {k: v.detach() for k, v in model.state_dict().items()}


# --- the accelerate configs ----------------------------------------------------------------------

CONFIGS = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_accelerate_configs_load_with_accelerates_own_loader(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "recipes" / "accelerate" / f"{name}.yaml"))
    assert str(config.distributed_type).endswith(CONFIGS[name])
    if name.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


def test_fsdp_wraps_layer_classes_that_exist_in_smolvlm(tiny_vlm_dir):
    """A misspelt class name would leave the model unwrapped (one shard unit: no memory saving)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from transformers import AutoModelForImageTextToText

    config = load_config_from_file(str(REPO / "recipes" / "accelerate" / "fsdp.yaml"))
    wrapped = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    classes = {type(module).__name__ for module in model.modules()}
    assert set(wrapped) <= classes
    layers = model.config.vision_config.num_hidden_layers + model.config.text_config.num_hidden_layers
    assert sum(type(m).__name__ in wrapped for m in model.modules()) == layers  # every encoder/decoder layer


# --- stage 2: GRPO -----------------------------------------------------------------------------


@pytest.mark.slow
def test_stage2_runs_as_one_process_group_on_different_clips(stage2_run):
    check_one_process_group(stage2_run)


@pytest.mark.slow
def test_stage2_every_process_sees_the_same_gathered_rewards(stage2_run):
    check_same_rewards_after_gathering(stage2_run)


@pytest.mark.slow
def test_stage2_processes_end_with_identical_weights(stage2_run, tiny_vlm_dir):
    check_same_final_weights(stage2_run, model_weights(tiny_vlm_dir))


def check_saved_folder_holds_the_trained_weights(run):
    saved = model_weights(run["out"])
    trained = run["ranks"][0]["weights"]
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[k], trained[k]) for k in saved)


@pytest.mark.slow
def test_stage2_output_loads_with_the_trained_weights(stage2_run):
    check_saved_folder_holds_the_trained_weights(stage2_run)


@pytest.mark.slow
def test_stage2_only_the_main_process_writes_the_stage_folder(stage2_run):
    """Two processes writing the same files race; the second may also see a half-written folder."""
    writers = {save["rank"] for info in stage2_run["ranks"] for save in info["saves"]
               if Path(save["path"]).resolve() == stage2_run["out"].resolve()}
    assert writers == {0}


# --- stage 1: the actor-critic (DDP wraps the policy; the value head is averaged by hand) -------


@pytest.mark.slow
def test_stage1_actor_critic_runs_as_one_process_group(stage1_run):
    check_one_process_group(stage1_run)
    check_same_rewards_after_gathering(stage1_run)


@pytest.mark.slow
def test_stage1_actor_critic_policy_and_value_head_stay_identical(stage1_run, tiny_vlm_dir):
    import yaml

    from recipes.actor_critic import ValueHead

    check_same_final_weights(stage1_run, model_weights(tiny_vlm_dir))
    recipe = yaml.safe_load((stage1_run["out"] / "recipe.yaml").read_text())
    hidden = json.loads((tiny_vlm_dir / "config.json").read_text())["text_config"]["hidden_size"]
    fresh_head = ValueHead(hidden, recipe["value_head_hidden_size"], seed=recipe["seed"]).state_dict()
    check_same_final_weights(stage1_run, fresh_head, prefix="value_head.")
    saved_head = load_file(str(stage1_run["out"] / "value_head.safetensors"))
    assert all(torch.equal(v, stage1_run["ranks"][0]["weights"]["value_head." + k]) for k, v in saved_head.items())


# --- stage 2 with recipes/accelerate/fsdp.yaml on CPU ---------------------------------------------
# accelerate (1.15) turns any config into plain multi-process CPU training (MULTI_CPU, gloo) under
# `--use_cpu true`, and the recipes refuse several processes on a CPU without it: the FSDP sharding
# itself can only be checked on a GPU. What can be checked here: the config launches, the processes
# agree, and the folder loads. The first test fails, on purpose, the day accelerate shards on CPU.


@pytest.fixture(scope="module")
def stage2_fsdp_run(tiny_vlm_dir, dataset_copy, tmp_path_factory):
    return launch("stage2", tmp_path_factory.mktemp("stage2_fsdp"), tiny_vlm_dir, dataset_copy,
                  ["--reward_funcs", DIGEST_REWARD, "action_reasoning", "--reward_weights", "1.0", "1.0"],
                  config=REPO / "recipes" / "accelerate" / "fsdp.yaml")


@pytest.mark.slow
def test_fsdp_config_on_cpu_runs_as_plain_multi_cpu_training(stage2_fsdp_run, tiny_vlm_dir):
    check_one_process_group(stage2_fsdp_run)  # MULTI_CPU, not FSDP: see the note above
    check_same_rewards_after_gathering(stage2_fsdp_run)
    check_same_final_weights(stage2_fsdp_run, model_weights(tiny_vlm_dir))


@pytest.mark.slow
def test_fsdp_config_on_cpu_writes_a_folder_that_loads_with_the_trained_weights(stage2_fsdp_run):
    check_saved_folder_holds_the_trained_weights(stage2_fsdp_run)
