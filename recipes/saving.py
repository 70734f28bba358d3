"""Saving a stage: what ``from_pretrained`` loads, plus the recipe, package versions and model card
that produced it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from transformers.integrations import is_deepspeed_zero3_enabled

from recipes.model_card import RECIPE_FILE, TRAINER_STATE_FILE, package_versions, write_model_card

RUN_INFO_FILE = "smoldrive.json"  # the saved layout and package versions


def infer_stage(output_dir: str | Path) -> str:
    """The running stage's name: the ``recipes.<stage>.<stage>`` module run with ``python -m``, else
    the output folder's name (stage, YAML, make target and output folder share the name)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    parts = (spec.name if spec is not None else "").split(".")
    if len(parts) == 3 and parts[0] == "recipes" and parts[1] == parts[2]:
        return parts[1]
    return Path(output_dir).name


def save_stage(trainer: Any, processor: Any, output_dir: str | Path, recipe: dict[str, Any], extra: dict | None = None):
    """Save what ``from_pretrained`` loads, plus the recipe, versions and model card that produced it.

    LoRA adapters are merged into the base so the folder loads like any model. QLoRA adapters sit
    on a 4-bit base that cannot be merged losslessly: the adapter is saved with its base recorded
    in adapter_config.json, which ``AutoModelForImageTextToText.from_pretrained`` also loads.
    With several processes the main one writes and the others wait (two writers race on the same
    files). Under DeepSpeed ZeRO-3 or FSDP the weights are sharded: every process takes part in
    ``Trainer.save_model``, which gathers them, and a LoRA adapter is saved unmerged.
    """
    output_dir = Path(output_dir)
    model = trainer.model
    sharded = is_deepspeed_zero3_enabled() or trainer.is_fsdp_enabled
    if sharded:
        trainer.save_model(str(output_dir))  # collective: every process hands over its shard
        layout = ("LoRA adapter, not merged (sharded training; base recorded in adapter_config.json)"
                  if hasattr(model, "peft_config") else "full model")
    if trainer.accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not sharded:
            if not hasattr(model, "merge_and_unload"):
                layout = "full model"
            elif getattr(model, "is_loaded_in_4bit", False):
                layout = "LoRA adapter over a 4-bit base (base recorded in adapter_config.json)"
            else:
                model, layout = model.merge_and_unload(), "LoRA merged into the base"
            model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        if hasattr(trainer, "save_value_head"):  # the actor-critic's critic, beside the policy
            trainer.save_value_head(output_dir)
        trainer.state.save_to_json(str(output_dir / TRAINER_STATE_FILE))  # loss and reward curves
        (output_dir / RECIPE_FILE).write_text(yaml.safe_dump(recipe, sort_keys=False))
        info = {"layout": layout, "versions": package_versions(), **(extra or {})}
        (output_dir / RUN_INFO_FILE).write_text(json.dumps(info, indent=2))
        write_model_card(output_dir, recipe, infer_stage(output_dir), str(recipe.get("model_name_or_path", "")),
                         str(recipe.get("dataset_path", "")))
    trainer.accelerator.wait_for_everyone()  # nobody reads the folder before it is complete
    return output_dir
