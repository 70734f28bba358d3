"""The BDD-OIA label taxonomy: 4 actions, 21 reasons, their order and what each reason says.

This is the lowest layer of SmolDrive: everything else imports it, it imports nothing of ours.

Index order. BDD-OIA stores actions as ``[F, S, L, R]`` and reasons as a 21-vector whose position
order is not the row order of the paper's Table 1. Order "B" (from the data's own readme and the
authors' conversion script, confirmed by label co-occurrence) is the default. Another order is a
choice a user makes explicitly, either by name from :data:`REASON_ORDERS` or as a JSON file listing
the 21 canonical reason ids in file-position order (see :func:`load_reason_order`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Action:
    key: str  # short id used in JSON answers
    phrase: str  # readable phrase used in text answers and justifications


ACTIONS: tuple[Action, ...] = (
    Action("forward", "move forward"),
    Action("stop", "stop/slow down"),
    Action("left", "turn left"),
    Action("right", "turn right"),
)
ACTION_KEYS: tuple[str, ...] = tuple(a.key for a in ACTIONS)
NUM_ACTIONS = len(ACTIONS)

SUPPORTS = "supports"  # the reason says this action is possible
RULES_OUT = "rules_out"  # the reason says this action is not possible


@dataclass(frozen=True)
class Reason:
    key: str  # canonical name: the only spelling a JSON answer uses
    phrase: str  # readable phrase, as in BDD-OIA's readme, used by justifications
    action: str  # the action key this reason is about
    effect: str  # SUPPORTS or RULES_OUT

    @property
    def group(self) -> str:
        """The BDD-OIA group: forward, stop, can turn, cannot turn."""
        if self.action in ("forward", "stop"):
            return self.action
        return "can_turn" if self.effect == SUPPORTS else "cannot_turn"


# Canonical reasons in order B (the released vector's position order).
REASONS: tuple[Reason, ...] = (
    Reason("follow_traffic", "follow traffic", "forward", SUPPORTS),
    Reason("road_clear", "the road is clear", "forward", SUPPORTS),
    Reason("green_light", "the traffic light is green", "forward", SUPPORTS),
    Reason("obstacle_car", "obstacle: car", "stop", SUPPORTS),
    Reason("obstacle_person", "obstacle: person", "stop", SUPPORTS),
    Reason("obstacle_rider", "obstacle: rider", "stop", SUPPORTS),
    Reason("obstacle_other", "obstacle: others", "stop", SUPPORTS),
    Reason("stop_traffic_light", "the traffic light says stop", "stop", SUPPORTS),
    Reason("stop_traffic_sign", "a traffic sign says stop", "stop", SUPPORTS),
    Reason("front_car_turning_left", "the front car is turning left", "left", SUPPORTS),
    Reason("on_left_turn_lane", "on the left-turn lane", "left", SUPPORTS),
    Reason("light_allows_left", "the traffic light allows turning left", "left", SUPPORTS),
    Reason("front_car_turning_right", "the front car is turning right", "right", SUPPORTS),
    Reason("on_right_turn_lane", "on the right-turn lane", "right", SUPPORTS),
    Reason("light_allows_right", "the traffic light allows turning right", "right", SUPPORTS),
    Reason("left_lane_blocked", "obstacles on the left lane", "left", RULES_OUT),
    Reason("no_left_lane", "no lane on the left", "left", RULES_OUT),
    Reason("solid_line_left", "solid line on the left", "left", RULES_OUT),
    Reason("right_lane_blocked", "obstacles on the right lane", "right", RULES_OUT),
    Reason("no_right_lane", "no lane on the right", "right", RULES_OUT),
    Reason("solid_line_right", "solid line on the right", "right", RULES_OUT),
)
REASON_KEYS: tuple[str, ...] = tuple(r.key for r in REASONS)
NUM_REASONS = len(REASONS)
REASON_BY_KEY: dict[str, Reason] = {r.key: r for r in REASONS}

# Known file-position orders: position i of a released vector holds the canonical reason
# REASON_ORDERS[name][i]. Only order B is documented well enough to ship; other orders are
# given as files (load_reason_order) rather than guessed here.
REASON_ORDERS: dict[str, tuple[str, ...]] = {"B": REASON_KEYS}
DEFAULT_REASON_ORDER = "B"


def load_reason_order(name_or_path: str | Path = DEFAULT_REASON_ORDER) -> tuple[str, ...]:
    """Return the file-position order: a known name ("B") or a JSON file with 21 reason keys."""
    if str(name_or_path) in REASON_ORDERS:
        return REASON_ORDERS[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"unknown reason order {str(name_or_path)!r}: use one of {sorted(REASON_ORDERS)} "
            "or a JSON file listing the 21 canonical reason keys in file-position order"
        )
    try:
        order = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    validate_reason_order(order, source=str(path))
    return tuple(order)


def validate_reason_order(order: Sequence[str], source: str = "reason order") -> None:
    if not isinstance(order, (list, tuple)) or sorted(order) != sorted(REASON_KEYS):
        raise ValueError(
            f"{source}: a reason order must list each of the {NUM_REASONS} canonical reason keys "
            f"exactly once; known keys: {', '.join(REASON_KEYS)}"
        )


def reasons_from_vector(vector: Sequence[int], order: Sequence[str] = REASON_KEYS) -> list[str]:
    """Canonical reason keys set in a file-order 0/1 vector."""
    return [order[i] for i, v in enumerate(vector) if v]


def reasons_to_vector(keys: Iterable[str], order: Sequence[str] = REASON_KEYS) -> list[int]:
    """File-order 0/1 vector of a set of canonical reason keys (unknown keys are ignored)."""
    wanted = set(keys)
    return [int(k in wanted) for k in order]


def actions_from_vector(vector: Sequence[int]) -> list[str]:
    return [ACTION_KEYS[i] for i, v in enumerate(vector[:NUM_ACTIONS]) if v]


def actions_to_vector(keys: Iterable[str]) -> list[int]:
    wanted = set(keys)
    return [int(k in wanted) for k in ACTION_KEYS]


def as_label_matrix(values: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    """A (N, K) int array of 0/1 labels, or a ValueError that names ``name`` and the problem."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as err:  # ragged lists
        raise ValueError(f"{name}: not a rectangular (N, K) array of 0/1 labels ({err})") from err
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (N, K) array of 0/1 labels, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: no samples (shape {array.shape})")
    if num_classes is not None and array.shape[1] != num_classes:
        raise ValueError(f"{name}: expected {num_classes} classes (columns), got {array.shape[1]}")
    if array.dtype == bool:
        return array.astype(int)
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: labels must be numbers 0/1, got dtype {array.dtype}")
    if not np.isin(array, (0, 1)).all():
        bad = array[~np.isin(array, (0, 1))].ravel()[:5].tolist()
        raise ValueError(f"{name}: labels must be 0 or 1 (threshold scores first); found {bad}")
    return array.astype(int)


def inconsistent_reasons(actions: Iterable[str], reasons: Iterable[str]) -> list[str]:
    """Reasons that contradict the action set.

    A reason that SUPPORTS an action is inconsistent when that action is not in the set (a green
    light beside "stop" only); a reason that RULES_OUT an action is inconsistent when the action is
    in the set (a solid line on the left beside "turn left"). Unknown reason keys are ignored.
    """
    action_set = set(actions)
    bad = []
    for key in reasons:
        reason = REASON_BY_KEY.get(key)
        if reason is None:
            continue
        possible = reason.action in action_set
        if (reason.effect == SUPPORTS) != possible:
            bad.append(key)
    return bad
