"""A recipe's configuration: the keys every stage shares, parsing the YAML and the command line,
and the precision the trainer runs in.

A recipe is one flat YAML parsed by TRL's ``TrlParser`` onto three dataclasses: our
:class:`RecipeArguments` (data, image budget, precision, vision tower), the trainer's config
(``SFTConfig`` or ``GRPOConfig``, or a subclass adding stage keys) and TRL's ``ModelConfig``
(``model_name_or_path`` and ``model_revision``, LoRA, quantisation). Any key can be overridden on
the command line (``--learning_rate 3e-5``); an unknown key is an error naming it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from trl import TrlParser

from core.precision import hardware_precision, resolve_precision
from recipes.errors import RecipeError

logger = logging.getLogger(__name__)


@dataclass
class RecipeArguments:
    """Keys every stage shares (the trainer's and the model's keys come from TRL's dataclasses)."""

    dataset_path: str = field(
        default="work/dataset",
        metadata={"help": "A DatasetDict saved by `make data` (datasets.load_from_disk)."},
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="val",
        metadata={"help": "Split for evaluation and model selection during training (never test)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on training clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on evaluation clips."})
    frames_per_clip: int | None = field(
        default=None,
        metadata={"help": "Frames per sample: None keeps the dataset's M; a smaller k keeps the last k."},
    )
    image_splitting: bool = field(
        default=False,
        metadata={"help": "Idefics3 image splitting: tiles each frame (13 tiles for 1280x720) instead of one."},
    )
    image_longest_edge: int | None = field(
        default=None,
        metadata={"help": "Resize frames so the longest edge is this before tiling (None: processor's)."},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on GPUs that support it, else fp32), bf16, fp16 or fp32."},
    )
    vision_tower: str = field(
        default="frozen",
        metadata={"help": "Full fine-tuning only: frozen, train (same lr) or own_lr (vision_learning_rate)."},
    )
    vision_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the vision tower when vision_tower=own_lr."}
    )


@dataclass
class RLRecipeArguments(RecipeArguments):
    """Keys the RL stages add: which rewards, with which parameters (their weights are TRL's
    ``reward_weights`` and their aggregation TRL's ``multi_objective_aggregation``)."""

    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Registered reward names (rewards/registry.py), e.g. action_reasoning structure."},
    )
    reward_params: dict | str | None = field(
        default=None,
        metadata={"help": "Per-reward parameters: a mapping in YAML, or JSON on the command line."},
    )
    reward_columns: list[str] = field(
        default_factory=lambda: ["id", "actions", "reasons", "description"],
        metadata={"help": "Dataset columns handed to the reward functions (images always are)."},
    )
    rare_label_share: float | None = field(
        default=None,
        metadata={"help": "Labels true on fewer than this share of the train clips are rare (None: no "
                  "oversampling). Each train clip with a rare label appears rare_clip_repeats times."},
    )
    rare_clip_repeats: int = field(
        default=1,
        metadata={"help": "How many times a train clip with a rare label appears per epoch (1: once)."},
    )
    reward_control: bool = field(
        default=False,
        metadata={"help": "The null-reward control (recipes/reward_control.py): every reward scores each "
                  "completion against another clip's truth, so the rewards carry no information about its clip."},
    )


def _option_names(leftovers: Sequence[str]) -> list[str]:
    """The option names among parser leftovers (``['--key', 'value', ...]``)."""
    return [s[2:] for s in leftovers if s.startswith("--")]


def parse_recipe(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """Parse ``--config recipe.yaml`` plus command-line overrides onto the given dataclasses."""
    argv = list(sys.argv[1:] if args is None else args)
    config_path = argv[argv.index("--config") + 1] if "--config" in argv else None
    if config_path is not None and not Path(config_path).is_file():
        raise RecipeError(f"recipe file not found: {config_path}")
    parser = TrlParser(list(dataclass_types))
    # TRL's configs default to bf16, which they reject on a machine without a bf16 GPU before our
    # `precision` key is even read: start from what the hardware supports (the YAML may override).
    hardware = hardware_precision()
    parser.set_defaults(bf16=hardware == "bf16", fp16=hardware == "fp16")
    *parsed, from_config, from_command_line = parser.parse_args_and_config(
        args=argv, return_remaining_strings=True, separate_remaining_strings=True
    )
    if from_config:
        raise RecipeError(
            f"{config_path}: unknown key(s) {_option_names(from_config)}. Check the spelling; keys are the fields "
            f"of {', '.join(t.__name__ for t in dataclass_types)}."
        )
    if from_command_line:
        raise RecipeError(f"unknown command-line option(s): {from_command_line}")
    return tuple(parsed)


def recipe_as_dict(*configs: Any) -> dict[str, Any]:
    """The resolved recipe (every dataclass's fields) as one flat, YAML-serialisable dict."""
    out: dict[str, Any] = {}
    for config in configs:
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if isinstance(value, enum.Enum):  # schedulers, strategies: their plain value
                value = value.value
            try:
                json.dumps(value)
            except TypeError:
                value = str(value)
            out[f.name] = value
    return out


def apply_precision(training_args: Any, precision: str) -> str:
    """Set bf16/fp16 on the trainer config from the hardware (or an explicit choice); return it."""
    try:
        precision = resolve_precision(precision)
    except ValueError as err:
        raise RecipeError(str(err)) from None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not training_args.use_cpu:
        raise RecipeError(
            "launched on several processes on a machine without CUDA: add `--use_cpu true` (gloo), or every "
            "process trains alone and they all write the same output folder"
        )
    if precision in ("bf16", "fp16") and not torch.cuda.is_available():
        logger.warning("precision=%s on a machine without CUDA: slow on CPUs without bf16/fp16 matrix units", precision)
    training_args.bf16 = precision == "bf16"
    training_args.fp16 = precision == "fp16"
    return precision
