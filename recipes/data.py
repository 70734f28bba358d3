"""A stage's data: one split of the prepared dataset (``make data``) in the conversational form TRL
wants (``images``, the prompt-free user turn, and for SFT the answer turn), and what one sample
costs in tokens."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from datasets import load_from_disk

from core.prompt import answer_turn, image_prompt, tokens_per_sample
from recipes.config import RecipeArguments
from recipes.errors import RecipeError

logger = logging.getLogger(__name__)


def load_split(recipe: RecipeArguments, split: str | None, limit: int | None, columns: Sequence[str]):
    """One split of the prepared dataset, as TRL wants it: ``images`` plus the given columns."""
    if split is None:
        return None
    path = Path(recipe.dataset_path)
    if not path.exists():
        raise RecipeError(f"dataset not found: {path} (prepare one with `make data` or `make demo`)")
    dataset = load_from_disk(str(path))
    if split not in dataset:
        raise RecipeError(f"{path} has no split {split!r}; it has {sorted(dataset)}")
    data = dataset[split]
    missing = [c for c in ("frames", *columns) if c not in data.column_names and c != "images"]
    if missing:
        raise RecipeError(f"{path}[{split}] lacks column(s) {missing}; re-run `make data`")
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    keep = ["frames", *[c for c in columns if c not in ("images", "prompt")]]
    data = data.select_columns(keep).rename_column("frames", "images")
    frames_in_data = len(data[0]["images"])
    k = recipe.frames_per_clip or frames_in_data
    if k > frames_in_data:
        raise RecipeError(
            f"frames_per_clip={k} but {path} holds {frames_in_data} frames per clip; "
            f"re-run `make data FRAMES={k}`"
        )
    if k < frames_in_data:  # keep the last k frames: the annotated frame is the last one
        data = data.map(lambda ex: {"images": ex["images"][-k:]}, desc=f"keeping the last {k} frames")
    prompt = image_prompt(k)
    return data.map(lambda _: {"prompt": prompt}, desc="prompt-free user turn")


def with_answer_turn(data, target_column: str):
    """Add the conversational ``completion`` the model learns to say, from a target text column."""
    if data is None:
        return None
    return data.map(
        lambda ex: {"completion": answer_turn(ex[target_column])},
        remove_columns=[target_column],
        desc=f"answer turn from {target_column}",
    )


def log_token_budget(processor: Any, sample: dict) -> dict[str, int]:
    budget = tokens_per_sample(processor, sample)
    logger.info(
        "tokens per sample: %(total_tokens)d (%(frames)d frames -> %(image_tokens)d image tokens, "
        "prompt %(prompt_tokens)d, answer %(answer_tokens)d)",
        budget,
    )
    return budget
