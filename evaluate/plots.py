"""Figures for the report (matplotlib, Agg backend: no display needed).

- :func:`plot_per_class_f1`: per-class F1 bars for actions or reasons, one bar per run and class.
- :func:`plot_training_curves`: loss and reward curves from the HF Trainer's ``trainer_state.json``
  (its ``log_history``), one curve per stage; stages are placed one after another on the x axis.
  Reward keys: ``reward`` (GRPO's total) and every ``rewards/<name>/mean``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from taxonomy.labels import ACTION_KEYS, REASON_KEYS  # noqa: E402

DPI = 110
LOSS_KEYS = ("loss", "eval_loss")
TOTAL_REWARD_KEY = "reward"
COMPONENT_REWARD = re.compile(r"^rewards/(?P<name>.+)/mean$")
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


# ---------------------------------------------------------------------------------------------
# Per-class F1


def plot_per_class_f1(runs: Mapping[str, Mapping], group: str, out_path: str | Path,
                      baseline: Mapping | None = None, baseline_label: str = "best constant") -> Path:
    """Bars of per-class F1 for ``group`` ("actions" or "reasons"); ``runs`` maps a label to a
    metrics dict holding ``metrics[group]["per_class"]`` (as evaluate.metrics.label_metrics).
    ``baseline`` (``{"actions": ..., "reasons": ...}`` from best_constant_baseline) adds grey
    hatched bars: the floor each class's F1 should beat."""
    if group not in ("actions", "reasons"):
        raise ValueError(f"group must be 'actions' or 'reasons', got {group!r}")
    if not runs:
        raise ValueError("plot_per_class_f1 needs at least one run")
    classes = list(ACTION_KEYS if group == "actions" else REASON_KEYS)
    runs = dict(runs)
    if baseline:
        runs[baseline_label] = baseline
    labels = list(runs)
    width = 0.8 / len(labels)
    fig_width = max(6.0, 0.45 * len(classes) * max(1.0, len(labels) ** 0.5) + 2)
    fig, ax = plt.subplots(figsize=(fig_width, 4.2))
    for i, label in enumerate(labels):
        per_class = runs[label][group]["per_class"]
        values = [per_class.get(c, 0.0) for c in classes]
        positions = [k + (i - (len(labels) - 1) / 2) * width for k in range(len(classes))]
        mf1 = runs[label][group].get("mf1")
        name = f"{label} (mF1 {mf1:.3f})" if isinstance(mf1, (int, float)) else label
        style = {"color": "#bbbbbb", "hatch": "//", "edgecolor": "#888888"} if baseline and label == baseline_label else {}
        ax.bar(positions, values, width=width, label=name, **style)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45 if group == "reasons" else 0, ha="right" if group == "reasons" else "center",
                       fontsize=8 if group == "reasons" else 10)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"per-class F1: {group}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, out_path)


# ---------------------------------------------------------------------------------------------
# Training curves


def find_trainer_state(path: str | Path) -> Path:
    """``trainer_state.json`` itself, or the one in a Trainer output folder, or in its latest
    ``checkpoint-N`` (the final state is only written inside checkpoints)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"training log not found: {path} (give trainer_state.json or its folder)")
    if (path / TRAINER_STATE).is_file():
        return path / TRAINER_STATE
    checkpoints = sorted(
        (p for p in path.iterdir() if _CHECKPOINT.search(p.name) and (p / TRAINER_STATE).is_file()),
        key=lambda p: int(_CHECKPOINT.search(p.name).group(1)),
    )
    if not checkpoints:
        raise FileNotFoundError(f"{path}: no {TRAINER_STATE} in it or in any checkpoint-N/ folder")
    return checkpoints[-1] / TRAINER_STATE


def load_log_history(path: str | Path) -> list[dict]:
    """The Trainer's ``log_history`` (a list of dicts with ``step`` and logged values)."""
    state_path = find_trainer_state(path)
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{state_path}: not valid JSON ({err})") from err
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise ValueError(f"{state_path}: no log_history list (is it a Trainer's trainer_state.json?)")
    return [entry for entry in history if isinstance(entry, dict)]


def curve(history: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one logged key, skipping entries without it or without a number."""
    steps, values = [], []
    for entry in history:
        value, step = entry.get(key), entry.get("step")
        if isinstance(value, (int, float)) and isinstance(step, (int, float)) and value == value:
            steps.append(float(step))
            values.append(float(value))
    return steps, values


def reward_keys(history: Sequence[dict]) -> list[str]:
    keys = {key for entry in history for key in entry if COMPONENT_REWARD.match(key)}
    return sorted(keys)


def plot_training_curves(logs: Mapping[str, str | Path], out_path: str | Path) -> Path:
    """Loss (and eval loss) and reward curves of one or several stages, in the order given.

    ``logs`` maps a stage label to its trainer_state.json (or Trainer output folder). Each stage's
    steps are offset by the previous stages' last step, so the stages read left to right.
    """
    if not logs:
        raise ValueError("plot_training_curves needs at least one log")
    histories = {label: load_log_history(path) for label, path in logs.items()}
    has_rewards = any(curve(h, TOTAL_REWARD_KEY)[0] or reward_keys(h) for h in histories.values())
    panels = 3 if has_rewards else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    loss_ax = axes[0][0]
    offset = 0.0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, history) in enumerate(histories.items()):
        colour = colours[index % len(colours)]
        last_step = max((float(e.get("step", 0) or 0) for e in history), default=0.0)
        for key, style in zip(LOSS_KEYS, ("-", "o--")):  # markers: eval loss is often a few points
            steps, values = curve(history, key)
            if steps:
                loss_ax.plot([s + offset for s in steps], values, style, color=colour, markersize=4,
                             label=f"{label} {key}")
        if has_rewards:
            steps, values = curve(history, TOTAL_REWARD_KEY)
            if steps:
                axes[0][1].plot([s + offset for s in steps], values, color=colour, label=label)
            for k, key in enumerate(reward_keys(history)):
                steps, values = curve(history, key)
                name = COMPONENT_REWARD.match(key).group("name")
                axes[0][2].plot([s + offset for s in steps], values, linestyle=("-", "--", ":", "-.")[k % 4],
                                color=colour, label=f"{label} {name}")
        if len(histories) > 1:
            for ax in axes[0]:
                ax.axvline(offset, color="#bbb", linewidth=0.8)
        offset += last_step
    titles = ["loss", "mean reward", "reward components (mean)"]
    for ax, title in zip(axes[0], titles):
        ax.set_title(title)
        ax.set_xlabel("step" + (" (stages one after another)" if len(histories) > 1 else ""))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes, color="#888")
    fig.tight_layout()
    return _save(fig, out_path)


def _save(fig, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=DPI, format="png")
    plt.close(fig)
    return out_path
