"""The model and processor a stage trains: loaded as a user loads HuggingFaceTB/SmolVLM-Instruct
(or a previous stage's folder), at the recipe's revision and precision, optionally quantised
(QLoRA), with LoRA on the text model only and the vision tower frozen, trained or on its own
learning rate."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import get_peft_config, get_quantization_config

from core.image_budget import configure_image_budget
from core.model_source import check_model_source, check_weight_files
from core.precision import torch_dtype
from recipes.config import RecipeArguments
from recipes.errors import RecipeError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG_FILE = "adapter_config.json"


def load_processor(model_args: Any, recipe: RecipeArguments):
    """The model's processor (at ``model_revision``) with the recipe's image budget applied."""
    check_model_source(model_args.model_name_or_path, model_args.model_revision)  # before anything loads
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    return configure_image_budget(processor, recipe.image_splitting, recipe.image_longest_edge)


def quantization_config(model_args: Any, precision: str):
    """TRL's BitsAndBytesConfig for ``load_in_4bit`` / ``load_in_8bit`` (QLoRA), or None.

    On CUDA as published. Without CUDA, bitsandbytes (0.50) still runs nf4 on the CPU: slow, but
    the same code path, so it is tested in CI; a warning says so.
    """
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    if not torch.cuda.is_available():
        if model_args.load_in_8bit:
            raise RecipeError(
                "load_in_8bit needs CUDA; on this machine use load_in_4bit (nf4 runs on the CPU) or "
                "load_in_8bit: false"
            )
        logger.warning("load_in_4bit without CUDA: bitsandbytes runs nf4 on the CPU, which is slow; fine for "
                       "tests and small models, use a GPU for real runs")
    try:  # an optional dependency (the `cuda` extra): imported only when a recipe asks for QLoRA
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise RecipeError(
            "load_in_4bit/load_in_8bit (QLoRA) needs bitsandbytes: `pip install -e '.[cuda]'`, or set "
            "load_in_4bit: false for LoRA or full fine-tuning."
        ) from err
    model_args.dtype = str(torch_dtype(precision)).removeprefix("torch.")
    return get_quantization_config(model_args)


def quantized_device_map() -> dict[str, Any]:
    """A 4-bit model is placed whole on one device at load time: this process's GPU, else the CPU."""
    return {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}


def load_model(model_args: Any, precision: str):
    """Load the VLM (at ``model_revision``) exactly as a user loads HuggingFaceTB/SmolVLM-Instruct
    (or a previous stage)."""
    check_model_source(model_args.model_name_or_path, model_args.model_revision)
    if Path(model_args.model_name_or_path).is_dir():
        check_weight_files(model_args.model_name_or_path)
    quantization = quantization_config(model_args, precision)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(precision)}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = quantized_device_map()
    adapter = Path(model_args.model_name_or_path) / ADAPTER_CONFIG_FILE
    if adapter.is_file() and quantization is None:
        return load_merged_adapter(adapter.parent, kwargs)
    return AutoModelForImageTextToText.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, **kwargs
    )


def load_merged_adapter(folder: Path, kwargs: dict[str, Any]):
    """A previous stage saved as a LoRA adapter (a QLoRA run: its 4-bit base cannot be merged
    losslessly on disk): load its base at this stage's precision and merge the adapter in, so this
    stage starts from exactly what the previous one learnt and adds its own LoRA on top."""
    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    check_model_source(base)
    logger.info("%s is a LoRA adapter over %s: merging it into the base", folder, base)
    model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()


def lora_config(model_args: Any):
    """TRL's LoRA config from ``ModelConfig``, with one addition: a single target is a regex.
    SigLIP's attention also has q_proj/v_proj, so the recipes name the text model's modules by a
    regex (peft full-matches a string on module names), which spares the vision tower."""
    targets = model_args.lora_target_modules
    if isinstance(targets, (list, tuple)) and len(targets) == 1:
        model_args = copy.copy(model_args)
        model_args.lora_target_modules = targets[0]
    return get_peft_config(model_args)


def vision_tower(model: torch.nn.Module) -> torch.nn.Module:
    base = model.model if hasattr(model, "model") else model
    return base.vision_model


def configure_vision_tower(model: torch.nn.Module, recipe: RecipeArguments, training_args: Any, use_peft: bool):
    """Freeze the vision tower, train it, or give it its own learning rate (full fine-tuning).

    Returns an optimizer when the tower has its own learning rate (the Trainer builds the schedule
    around it), else None.
    """
    choices = ("frozen", "train", "own_lr")
    if recipe.vision_tower not in choices:
        raise RecipeError(f"vision_tower must be one of {choices}, got {recipe.vision_tower!r}")
    if use_peft:
        return None  # LoRA targets the text model; everything else stays frozen by peft
    tower_params = list(vision_tower(model).parameters())
    if recipe.vision_tower == "frozen":
        for p in tower_params:
            p.requires_grad_(False)
        return None
    if recipe.vision_tower == "train":
        return None
    if recipe.vision_learning_rate is None:
        raise RecipeError("vision_tower: own_lr needs vision_learning_rate")
    tower_ids = {id(p) for p in tower_params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in tower_ids]
    groups = [
        {"params": rest, "lr": training_args.learning_rate},
        {"params": tower_params, "lr": recipe.vision_learning_rate},
    ]
    return torch.optim.AdamW(groups, weight_decay=training_args.weight_decay)
