"""Which checkpoint a run resumes from: ``--resume_from_checkpoint true`` or a folder.

transformers' Trainer takes ``resume_from_checkpoint=True`` (the last ``checkpoint-N`` in
``output_dir``) or a path, but a YAML or command line gives the string "true", which the Trainer
reads as a path, and a checkpoint left half-written by a kill (no ``trainer_state.json`` yet)
fails deep inside the Trainer with a raw FileNotFoundError. This module turns the setting into a
complete checkpoint folder, or None, before anything loads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from recipes.errors import RecipeError

logger = logging.getLogger(__name__)

TRUE_WORDS = ("true", "yes", "1", "last", "latest")
FALSE_WORDS = ("", "false", "no", "0", "none")
STATE_FILE = "trainer_state.json"
# A checkpoint holds the model's weights in one of these (full model, sharded, LoRA adapter).
WEIGHT_FILES = (
    "model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
    "pytorch_model.bin", "pytorch_model.bin.index.json",
)


def missing_parts(checkpoint: str | Path) -> list[str]:
    """What a complete checkpoint folder lacks: its trainer state, its weights (empty: complete)."""
    folder = Path(checkpoint)
    missing = [] if (folder / STATE_FILE).is_file() else [STATE_FILE]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"model weights (one of {', '.join(WEIGHT_FILES)})")
    return missing


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-numbered complete ``checkpoint-N`` in ``output_dir``; incomplete ones (a kill
    while writing) are skipped with a warning naming them."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    for checkpoint in reversed(sort_checkpoints(str(folder), PREFIX_CHECKPOINT_DIR)):
        missing = missing_parts(checkpoint)
        if not missing:
            return Path(checkpoint)
        logger.warning("skipping %s: incomplete (no %s), probably left half-written by a kill", checkpoint,
                       " and no ".join(missing))
    return None


def resolve_resume(value: str | bool | None, output_dir: str | Path) -> str | None:
    """The checkpoint folder to resume from, or None to start fresh.

    ``true`` (or ``last``): the newest complete checkpoint in ``output_dir`` (an error when there is
    none); a path: that folder, which must be a complete checkpoint; ``false``/None: start fresh.
    """
    if value is None or value is False:
        return None
    text = str(value).strip()
    if value is True or text.lower() in TRUE_WORDS:
        found = newest_complete_checkpoint(output_dir)
        if found is None:
            raise RecipeError(
                f"resume_from_checkpoint: no complete {PREFIX_CHECKPOINT_DIR}-N folder in {output_dir} "
                "(set save_strategy/save_steps to write some, or leave resume_from_checkpoint out to start fresh)"
            )
        logger.info("resuming from %s", found)
        return str(found)
    if text.lower() in FALSE_WORDS:
        return None
    folder = Path(text)
    if not folder.is_dir():
        raise RecipeError(f"resume_from_checkpoint: {folder} is not a folder")
    missing = missing_parts(folder)
    if missing:
        raise RecipeError(f"resume_from_checkpoint: {folder} is incomplete: no {' and no '.join(missing)}")
    return str(folder)
