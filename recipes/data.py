"""A stage's data: one split of the prepared dataset (``make data``) in the conversational form TRL
wants (``images``, the prompt-free user turn, and for SFT the answer turn), what one sample costs
in tokens, and for RL the train split with the clips of rare labels repeated."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from datasets import load_from_disk

from core.prompt import answer_turn, image_prompt, tokens_per_sample
from recipes.config import RecipeArguments
from recipes.errors import RecipeError
from taxonomy.labels import ACTION_KEYS, NUM_ACTIONS, NUM_REASONS, REASON_KEYS, as_label_matrix

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


def oversample_rare_labels(data, rare_label_share: float | None, rare_clip_repeats: int):
    """The train split with every clip that carries a rare label repeated ``rare_clip_repeats``
    times. A label is rare when it is true on fewer than ``rare_label_share`` of the clips.

    Why: GRPO learns a label only from groups whose samples disagree on it. A label true on 2-7%
    of the clips puts such groups in few steps, and the gradient of the other clips outweighs them:
    on the demo, stage 2 trained on the plain split said "turn left" less often afterwards on the
    very clips it trained on, although its samples that said it scored R2 0.885 against 0.493
    (BENCHMARKS.md, "Fifth sweep")."""
    if rare_label_share is not None and not 0.0 < rare_label_share <= 1.0:
        raise RecipeError(f"rare_label_share must be in (0, 1], got {rare_label_share!r}")
    if isinstance(rare_clip_repeats, bool) or not isinstance(rare_clip_repeats, int) or rare_clip_repeats < 1:
        raise RecipeError(f"rare_clip_repeats must be an integer >= 1, got {rare_clip_repeats!r}")
    if rare_label_share is None or rare_clip_repeats == 1:
        return data
    missing = [c for c in ("actions", "reasons") if c not in data.column_names]
    if missing:
        raise RecipeError(f"rare_label_share needs the label column(s) {missing} in reward_columns")
    try:  # BDD-OIA's actions may carry a 5th "confuse" entry, which is no action
        actions = as_label_matrix([row[:NUM_ACTIONS] for row in data["actions"]], "actions", NUM_ACTIONS)
        labels = np.concatenate([actions, as_label_matrix(data["reasons"], "reasons", NUM_REASONS)], axis=1)
    except ValueError as err:
        raise RecipeError(f"rare_label_share needs 0/1 label vectors in the train split ({err}); "
                          "re-run `make data`") from None
    share = labels.mean(axis=0)
    rare = (share > 0) & (share < rare_label_share)  # a label no clip carries repeats nothing
    carries_rare = labels[:, rare].any(axis=1)
    rows = [i for i in range(len(data)) for _ in range(rare_clip_repeats if carries_rare[i] else 1)]
    names = [name for name, is_rare in zip((*ACTION_KEYS, *REASON_KEYS), rare) if is_rare]
    logger.info("rare labels (true on < %g of %d train clips): %s; the %d clips that carry one appear "
                "%d times: %d rows", rare_label_share, len(data), ", ".join(names) or "none",
                int(carries_rare.sum()), rare_clip_repeats, len(rows))
    return data.select(rows)
