"""Where a stage's change in F1_all comes from: the clips whose description it rewrote, or the rest.

    python -m evaluate.answer_shift --start work/eval/sft --end work/eval/stage1 [--start ... --end ...]

Every answer states the description first, then the actions and reasons. A stage whose reward
judges only the description (stage 1, R1) can still move the labels: through the shared weights,
or because the labels are generated after, and conditioned on, a description that changed. This
reads two evaluations of the same clips (``predictions.jsonl`` of ``python -m evaluate.run``, or of
``make rl-record``'s eval folders) and splits the change in act and expl F1_all into the share of
the clips whose description changed and the share of those whose description did not. F1_all is
a mean over clips, so the two shares add up to the whole change: each is the subset's F1_all
change weighted by the subset's share of the clips (:func:`evaluate.metrics.label_metrics` on each
subset). Several ``--start``/``--end`` pairs (one per seed) are pooled clip by clip.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

from evaluate.metrics import LABEL_GROUPS, label_metrics, signed
from evaluate.run import add_evaluation_pairs, evaluation_pairs, pair_by_clip


@dataclass(frozen=True)
class Shift:
    """The change from a start model's answers to an end model's, on the same clips."""

    clips: int
    description_changed: int  # clips whose description differs
    labels_changed: int  # clips whose actions or reasons differ
    labels_changed_description_same: int
    f1_change: dict  # {"act": {"description changed": d, "description same": d, "all": d}, "expl": ...}


def _f1_all(records: Sequence[dict], field: str, keys: Sequence[str], to_vector) -> float:
    truth = [to_vector(r["truth"][field]) for r in records]
    pred = [to_vector(r["parsed"][field] or []) for r in records]
    return label_metrics(truth, pred, keys)["f1_all"]


def answer_shift(start: Sequence[dict], end: Sequence[dict]) -> Shift:
    """Pair the two evaluations' records by clip id and split the F1_all change."""
    pairs = pair_by_clip(start, end)
    changed = [(a, b) for a, b in pairs if a["parsed"]["description"] != b["parsed"]["description"]]
    same = [(a, b) for a, b in pairs if a["parsed"]["description"] == b["parsed"]["description"]]

    def labels_differ(a: dict, b: dict) -> bool:
        return any(sorted(a["parsed"][f] or []) != sorted(b["parsed"][f] or []) for f in ("actions", "reasons"))

    f1_change = {}
    for name, field, keys, to_vector in LABEL_GROUPS:
        parts = {}
        for part, subset in (("description changed", changed), ("description same", same)):
            if not subset:
                parts[part] = 0.0
                continue
            gain = (_f1_all([b for _, b in subset], field, keys, to_vector)
                    - _f1_all([a for a, _ in subset], field, keys, to_vector))
            parts[part] = gain * len(subset) / len(pairs)
        parts["all"] = parts["description changed"] + parts["description same"]
        f1_change[name] = parts
    return Shift(clips=len(pairs), description_changed=len(changed),
                 labels_changed=sum(labels_differ(a, b) for a, b in pairs),
                 labels_changed_description_same=sum(labels_differ(a, b) for a, b in same),
                 f1_change=f1_change)


def render(shift: Shift, start: str, end: str) -> str:
    lines = [f"{start} -> {end}: {shift.clips} clips; description changed on {shift.description_changed}; "
             f"actions or reasons changed on {shift.labels_changed} ({shift.labels_changed_description_same} "
             "of them with the description unchanged)",
             "| F1_all change | from clips whose description changed | from the others | all |",
             "|---|---|---|---|"]
    for name, parts in shift.f1_change.items():
        lines.append(f"| {name} | {signed(parts['description changed'])} | {signed(parts['description same'])} | "
                     f"{signed(parts['all'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_evaluation_pairs(parser)
    args = parser.parse_args(argv)
    try:
        start, end = [], []
        for index, (s, e) in enumerate(evaluation_pairs(parser, args)):
            # prefix ids with the pair's index: the same clip id recurs across seeds
            start += [{**r, "id": (index, r["id"])} for r in s]
            end += [{**r, "id": (index, r["id"])} for r in e]
        shift = answer_shift(start, end)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(shift, " + ".join(args.start), " + ".join(args.end)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
