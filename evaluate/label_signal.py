"""Which labels can an RL stage teach? The signal a model's own samples carry for each label.

    python -m evaluate.label_signal --model work/stage1 --dataset work/dataset --split val \\
        --recipe recipes/stage2/stage2_demo.yaml

GRPO learns from differences inside a group of sampled answers: a label's decision can only move
towards the truth if, on the clips where the label is true, some samples say it (a reward that
pays for it then has something to reinforce), and say it more often than on the clips where it is
false (otherwise reinforcing it raises false alarms as much as hits). This samples each clip of a
split as the stage's recipe samples its groups (``num_generations``, ``temperature``, ``top_p``,
``top_k``, ``max_completion_length``) and reports, per action and reason:

- ``positives``: clips where the label is true;
- ``hit_rate``: the share of samples that say it on those clips;
- ``false_alarm_rate``: the share of samples that say it on the other clips;
- ``lift``: hit_rate / false_alarm_rate (None when no sample says it where it is false).

A label with hit_rate 0 gets no gradient towards it at all; a lift near 1 means the model does not
see the label in the frames, which RL on the language side (vision tower frozen) cannot fix. Read
it before a stage-2 run, together with :mod:`evaluate.r1_headroom` before stage 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.logs import configure_logging
from taxonomy.answer import parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS, actions_to_vector, as_label_matrix, reasons_to_vector

# The recipe fields that say how a stage samples, and their GRPOConfig names.
SAMPLING_FIELDS = ("num_generations", "temperature", "top_p", "top_k", "max_completion_length")


def label_signal(truth: Any, said: Any, names: Sequence[str]) -> dict[str, dict]:
    """Per label: the figures of the module docstring.

    ``truth``: (N, K) 0/1, the clips' labels; ``said``: (N, S, K) 0/1, which labels each of a
    clip's S samples says; ``names``: the K label names."""
    truth = as_label_matrix(truth, "truth", len(names))
    said = np.asarray(said)
    if said.ndim != 3 or said.shape[0] != truth.shape[0] or said.shape[2] != truth.shape[1] or not said.shape[1]:
        raise ValueError(f"said: expected shape ({truth.shape[0]}, S >= 1, {truth.shape[1]}), got {said.shape}")
    said_rate = said.mean(axis=1)  # (N, K): the share of a clip's samples that say each label
    out = {}
    for k, name in enumerate(names):
        positive = truth[:, k] == 1
        hit = float(said_rate[positive, k].mean()) if positive.any() else None
        false_alarm = float(said_rate[~positive, k].mean()) if (~positive).any() else None
        lift = hit / false_alarm if hit is not None and false_alarm else None
        out[name] = {"positives": int(positive.sum()), "hit_rate": hit, "false_alarm_rate": false_alarm,
                     "lift": lift}
    return out


def said_labels(texts: Sequence[str], samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, 4) actions and (N, S, 21) reasons said by ``texts``, S consecutive answers per clip,
    each read by the one parser (an unreadable answer says nothing)."""
    if samples < 1 or len(texts) % samples:
        raise ValueError(f"{len(texts)} answers do not split into groups of {samples}")
    parsed = [parse_answer(text) for text in texts]
    actions = np.array([actions_to_vector(p.actions) for p in parsed]).reshape(-1, samples, len(ACTION_KEYS))
    reasons = np.array([reasons_to_vector(p.reasons) for p in parsed]).reshape(-1, samples, len(REASON_KEYS))
    return actions, reasons


def sampling_of_recipe(recipe: dict):
    """The :class:`evaluate.generate.Sampling` and answer cap of an RL recipe; a field the recipe
    leaves out takes GRPOConfig's default, as the stage itself does."""
    from trl import GRPOConfig

    from evaluate.generate import Sampling

    defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.name in SAMPLING_FIELDS}
    value = {name: recipe.get(name, defaults[name]) for name in SAMPLING_FIELDS}
    sampling = Sampling(samples=value["num_generations"], temperature=value["temperature"],
                        top_p=value["top_p"], top_k=value["top_k"])
    return sampling, value["max_completion_length"]


def signal_of_model(model_dir: str, dataset: str, split: str, recipe_path: str | Path,
                    max_samples: int | None = None, seed: int = 0) -> dict:
    """:func:`label_signal` of a model's samples on a split, sampled as the recipe's stage samples."""
    import torch
    import yaml

    from evaluate.generate import EvaluationError, generate_for_split, load_eval_split, load_model_and_processor

    recipe = Path(recipe_path)
    if not recipe.is_file():
        raise EvaluationError(f"recipe not found: {recipe}")
    sampling, max_new_tokens = sampling_of_recipe(yaml.safe_load(recipe.read_text()) or {})
    data = load_eval_split(dataset, split, max_samples)
    model, processor = load_model_and_processor(model_dir)
    torch.manual_seed(seed)
    texts = generate_for_split(model, processor, data, max_new_tokens=max_new_tokens, sampling=sampling).texts
    actions, reasons = said_labels(texts, sampling.samples)
    return {"model": str(model_dir), "split": split, "clips": len(data), "sampling": dataclasses.asdict(sampling),
            "actions": label_signal(list(data["actions"]), actions, ACTION_KEYS),
            "reasons": label_signal(list(data["reasons"]), reasons, REASON_KEYS)}


def render(signal: dict) -> str:
    """A markdown table, one row per label."""
    lines = [f"{signal['model']} on {signal['split']} ({signal['clips']} clips), sampling {signal['sampling']}", "",
             "| label | positives | hit rate | false-alarm rate | lift |", "|---|---|---|---|---|"]

    def cell(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    def lift(row: dict) -> str:  # said where true and never where false: no ratio, a perfect separation
        return "∞" if row["lift"] is None and row["hit_rate"] and row["false_alarm_rate"] == 0 else cell(row["lift"], 1)

    for group in ("actions", "reasons"):
        for name, row in signal[group].items():
            lines.append(f"| {name} | {row['positives']} | {cell(row['hit_rate'], 3)} | "
                         f"{cell(row['false_alarm_rate'], 3)} | {lift(row)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the stage's starting model folder")
    parser.add_argument("--dataset", required=True, help="a prepared DatasetDict (make data)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--recipe", required=True, help="the RL stage's YAML: its sampling settings are used")
    parser.add_argument("--max-samples", type=int, default=None, help="only the split's first clips")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for the sampling")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    args = parser.parse_args(argv)
    configure_logging()
    from evaluate.generate import EvaluationError

    try:
        signal = signal_of_model(args.model, args.dataset, args.split, args.recipe, args.max_samples, args.seed)
    except (EvaluationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(signal, indent=1) if args.json else render(signal))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
