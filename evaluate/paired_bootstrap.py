"""How far a difference in F1_all between two models can be trusted, given the clips it was
measured on: a paired bootstrap over clips.

    python -m evaluate.paired_bootstrap --start work/eval/sft --end work/eval/stage3 [--start ... --end ...]

A range over training seeds says how much a result moves when the model is trained again; it
says nothing about the clips. Every seed is scored on the same clips, so a few clips that flip
move all the seeds at once, and a small set (the demo's 150 val clips) can put every seed on
the same side of a difference that another set of clips reverses.

F1_all is a mean over clips of each clip's F1 (:func:`evaluate.metrics.sample_f1`), so the
difference in F1_all between two models scored on the same clips is the mean of the per-clip
differences. Drawing the clips again with replacement, the same draw for both models (paired),
and reading the percentiles of the redrawn means gives an interval for the clips' share of the
uncertainty (the percentile bootstrap, Efron & Tibshirani 1993, ch. 13). With several seeds (one
``--start``/``--end`` pair per seed, all on the same clips) each clip's difference is first
averaged over the seeds, so the interval is that of the seed-mean difference; the per-seed
differences, printed beside it, show the seeds' share.

mF1 is a mean over classes, not over clips, and is not split this way.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from evaluate.metrics import DIFFERENCE_DECIMALS, LABEL_GROUPS, sample_f1, signed
from evaluate.run import add_evaluation_pairs, evaluation_pairs, pair_by_clip

RESAMPLES = 10_000  # redrawn clip sets per interval: the percentiles move by under 0.0005 between draws
LEVEL = 0.95
SEED = 0
CHUNK = 1_000  # redraws held in memory at once (CHUNK x clips indices)


@dataclass(frozen=True)
class Interval:
    """The mean per-clip difference (end - start) and its bootstrap interval over clips."""

    mean: float
    low: float
    high: float
    level: float
    clips: int
    per_seed: tuple[float, ...]

    def __str__(self) -> str:
        return f"{signed(self.mean)} [{signed(self.low)}, {signed(self.high)}]"

    @property
    def excludes_zero(self) -> bool:
        """Clear of 0 as printed (:func:`evaluate.metrics.signed`): a low end of +0.00001 reads as 0 and counts as 0."""
        return round(self.low, DIFFERENCE_DECIMALS) > 0 or round(self.high, DIFFERENCE_DECIMALS) < 0

    @property
    def seeds(self) -> str:
        """The per-seed differences, as printed."""
        return " / ".join(signed(v) for v in self.per_seed)


def bootstrap_interval(differences: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                       seed: int = SEED) -> Interval:
    """``differences``: (seeds, clips) per-clip differences, or (clips,) for one seed. Averages each
    clip over the seeds, then redraws the clips ``resamples`` times."""
    per_seed = np.atleast_2d(np.asarray(differences, dtype=float))
    if per_seed.ndim != 2 or per_seed.shape[1] == 0:
        raise ValueError(f"differences: expected (seeds, clips) or (clips,), got shape {np.shape(differences)}")
    if resamples < 1:
        raise ValueError(f"resamples: expected at least 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a share between 0 and 1, got {level}")
    per_clip = per_seed.mean(axis=0)
    clips = per_clip.size
    rng = np.random.default_rng(seed)
    means = np.concatenate([per_clip[rng.integers(0, clips, size=(min(CHUNK, resamples - done), clips))].mean(axis=1)
                            for done in range(0, resamples, CHUNK)])
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(per_clip.mean()), float(low), float(high), level, clips,
                    tuple(float(row.mean()) for row in per_seed))


def clip_differences(start: Sequence[dict], end: Sequence[dict]) -> dict[str, np.ndarray]:
    """Per label group ("act", "expl"): each clip's F1 under ``end`` minus under ``start``, in
    ``start``'s clip order (records of ``evaluate.run``'s predictions.jsonl, paired by clip id)."""
    pairs = pair_by_clip(start, end)
    out = {}
    for name, field, _, to_vector in LABEL_GROUPS:
        truth = [to_vector(a["truth"][field]) for a, _ in pairs]
        before = sample_f1(truth, [to_vector(a["parsed"][field] or []) for a, _ in pairs])
        after = sample_f1(truth, [to_vector(b["parsed"][field] or []) for _, b in pairs])
        out[name] = after - before
    return out


def compare(starts: Sequence[Sequence[dict]], ends: Sequence[Sequence[dict]], resamples: int = RESAMPLES,
            level: float = LEVEL, seed: int = SEED) -> dict[str, Interval]:
    """One (start, end) pair of evaluations per seed, every pair on the same clips: per label
    group, the seed-mean F1_all difference and its interval over clips."""
    if not starts or len(starts) != len(ends):
        raise ValueError(f"give one end evaluation per start evaluation ({len(starts)} against {len(ends)})")
    per_pair = [clip_differences(s, e) for s, e in zip(starts, ends)]
    ids = [[r["id"] for r in s] for s in starts]
    if any(sorted(i) != sorted(ids[0]) for i in ids[1:]):
        raise ValueError("the seeds' evaluations cover different clips: the interval needs the same clips for every seed")
    orders = [{clip: k for k, clip in enumerate(i)} for i in ids]
    aligned = [[orders[p][clip] for clip in ids[0]] for p in range(len(ids))]  # every pair in the first's clip order
    return {name: bootstrap_interval(np.stack([d[name][order] for d, order in zip(per_pair, aligned)]),
                                     resamples, level, seed)
            for name, *_ in LABEL_GROUPS}


def render(intervals: dict[str, Interval], start: str, end: str) -> str:
    some = next(iter(intervals.values()))
    lines = [f"{start} -> {end}: {some.clips} clips, {len(some.per_seed)} seed(s); F1_all difference (end - start), "
             f"mean over seeds [{some.level:.0%} interval over clips]",
             "| | difference [interval] | per seed |", "|---|---|---|"]
    for name, interval in intervals.items():
        lines.append(f"| {name} F1_all | {interval} | {interval.seeds} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_evaluation_pairs(parser)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--level", type=float, default=LEVEL)
    parser.add_argument("--seed", type=int, default=SEED, help="the redraws' random seed")
    args = parser.parse_args(argv)
    try:
        pairs = evaluation_pairs(parser, args)
        intervals = compare([s for s, _ in pairs], [e for _, e in pairs], args.resamples, args.level, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(intervals, " + ".join(args.start), " + ".join(args.end)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
