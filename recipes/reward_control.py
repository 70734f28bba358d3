"""The null-reward control: every reward of a stage scores each completion against another clip.

With ``reward_control: true`` an RL stage trains exactly as its recipe says, except that each
reward (and stage 1's dense increments) reads the truth of the clip one group earlier in the
generation batch: its frames, id, labels and description. The rewards keep their scale and spread
but say nothing about the clip the policy is answering. What a stage does beyond this control is
its reward's information; what the control does too is the cost of RL's sampled updates alone.

TRL hands a reward function the dataset's columns as keyword lists, one entry per completion, and
the ``num_generations`` completions of a clip sit next to each other in the batch (its
RepeatSampler): rolling every such list by ``num_generations`` gives each group the previous
group's clip. A batch must therefore hold at least two groups. With several processes each rolls
the rows it scores (checked on one process).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

# TRL's own per-completion arguments: what the policy said, never another clip's.
POLICY_ARGUMENTS = frozenset({"prompts", "completions", "completion_ids"})


def check_groups(completions: int, group_size: int) -> None:
    """The control's one rule: the completions split into groups of ``group_size``, at least two.

    Checked on the recipe's settings before the model loads, and on the rows each call scores."""
    if completions % group_size:
        raise ValueError(f"reward_control: {completions} completions do not split into groups of {group_size}")
    if completions < 2 * group_size:
        raise ValueError(
            f"reward_control needs at least 2 clips per generation batch to score each against another; got "
            f"{completions} completions in groups of {group_size} (raise per_device_train_batch_size)"
        )


def other_clip(rows: list, group_size: int) -> list:
    """The rows rolled by one group: group g gets group g - 1's rows (the first gets the last's)."""
    check_groups(len(rows), group_size)
    return rows[-group_size:] + rows[:-group_size]


def scored_against_other_clips(reward: Callable, group_size: int) -> Callable:
    """A TRL reward callable that sees, for every completion, another clip's dataset columns."""

    @functools.wraps(reward)  # keeps __name__ (TRL's logs) and the span it judges
    def control(*args: Any, completions: Any = None, **kwargs: Any) -> Any:
        size = len(completions)
        for key, value in kwargs.items():
            if key not in POLICY_ARGUMENTS and isinstance(value, list) and len(value) == size:
                kwargs[key] = other_clip(value, group_size)
        return reward(*args, completions=completions, **kwargs)

    return control


def token_rewards_against_other_clips(token_reward_fn: Callable, group_size: int) -> Callable:
    """A dense token reward (``recipes.actor_critic.TokenRewardFn``) fed another clip's rows."""

    @functools.wraps(token_reward_fn)  # keeps ``span`` and ``pays``
    def control(texts: list[str], completion_ids: list[list[int]], inputs: list[dict]) -> Any:
        return token_reward_fn(texts, completion_ids, other_clip(list(inputs), group_size))

    return control
