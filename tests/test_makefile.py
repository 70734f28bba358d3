"""The Makefile passes what users set: `make demo WORK=/somewhere/else` keeps every stage's input and
output under WORK, and `make data` hands every option of the prepare script on."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("sft", "stage1", "stage2", "stage3")


def _stage_commands(work: Path) -> dict[str, list[str]]:
    printed = subprocess.run(["make", "-n", "demo", f"WORK={work}"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    commands = {}
    pieces = [piece for line in printed.replace("\\\n", " ").splitlines() for piece in line.split("&&")]
    for piece in pieces:
        words = shlex.split(piece)
        if "-m" in words and words[words.index("-m") + 1].startswith("recipes."):
            commands[words[words.index("-m") + 1].split(".")[1]] = words[words.index("-m") + 2:]
    return commands


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    work = tmp_path_factory.mktemp("elsewhere")
    return work, _stage_commands(work)


@pytest.mark.parametrize("stage", STAGES)
def test_demo_stage_reads_and_writes_under_work(commands, stage):
    import importlib

    from recipes import config, rl

    work, found = commands
    assert stage in found, sorted(found)
    module = importlib.import_module(f"recipes.{stage}.{stage}")
    parsed = config.parse_recipe(module.RECIPE_TYPES, found[stage])
    recipe, training_args, model_args = parsed
    for value in (model_args.model_name_or_path, recipe.dataset_path, training_args.output_dir):
        assert str(value).startswith(str(work)), value
    for params in (rl.reward_params(recipe) if hasattr(recipe, "reward_funcs") else {}).values():
        name = str(params.get("model_name", ""))
        assert not name.startswith("local-dir:") or name.startswith(f"local-dir:{work}"), name


def test_make_data_passes_every_option_of_the_prepare_script():
    from data_prep.prepare import build_parser

    variables = ["BDDOIA_ROOT=/r", "OUT=/o", "FRAMES=5", "STRIDE=2", "IMAGE_SIZE=96", "JOBS=3", "FRAMES_DIR=/f",
                 "VIDEOS_DIR=/v", "REASON_ORDER=/order.json", "SHORT_CLIP=error", "SKIP_BAD=1", "OVERWRITE=1",
                 "DATA_ARGS=--jpeg-quality 80 --image-format png --samples-per-shard 7"]
    printed = subprocess.run(["make", "-n", "data", *variables], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.replace("\\\n", " ")
    line = next(line for line in printed.splitlines() if "-m data_prep.prepare" in line)
    words = shlex.split(line)
    args = build_parser().parse_args(words[words.index("-m") + 2:])
    expected = dict(root=Path("/r"), out=Path("/o"), frames=5, stride=2, image_size=96, num_proc=3,
                    frames_dir=Path("/f"), videos_dir=Path("/v"), reason_order="/order.json", short_clip="error",
                    skip_bad=True, overwrite=True, jpeg_quality=80, image_format="png", samples_per_shard=7)
    assert {key: getattr(args, key) for key in expected} == expected
    assert set(vars(args)) == set(expected)  # no option of the script is left out of this test
