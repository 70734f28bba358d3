"""Which reason order fits an annotation set? Measured from the labels alone.

    python -m data_prep.audit --root R [--reason-order B --reason-order my_order.json]

Idea: each canonical reason says something about one action (taxonomy.labels): "the traffic light
is green" SUPPORTS forward, "solid line on the left" RULES_OUT turning left. So if file position i
really holds reason r, the action rate among samples with position i set, P(action_r | i), should
sit above the action's base rate when r supports it and below when r rules it out.

Per position and semantic group g = (action, effect) we compute a normalised agreement:
    supports:  (P(a|i) - P(a)) / (1 - P(a))      1 = the action always holds, 0 = no relation
    rules out: (P(a) - P(a|i)) / P(a)            1 = the action never holds,  0 = no relation
(clipped to [-1, 1]). An order's score is the mean agreement of its positions with the groups it
claims. The null distribution is the score of random permutations of the 21 reasons: a fitting
order scores far above it (z-score, percentile). Second, independent check: mutually exclusive
reasons (a can-turn-left with a cannot-turn-left reason, a green light with a stop light) should
rarely be set together under the right order.

Limit: reasons sharing an (action, effect) group (e.g. obstacle: car / obstacle: person) cannot be
told apart by this test; a swap inside a group is invisible here.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from taxonomy.labels import (
    ACTION_KEYS,
    NUM_REASONS,
    REASON_BY_KEY,
    REASON_KEYS,
    REASON_ORDERS,
    REASONS,
    RULES_OUT,
    SUPPORTS,
    load_reason_order,
)

from data_prep.bddoia import SPLITS, read_bddoia

# The semantic groups that canonical reasons fall into, e.g. ("left", "rules_out").
GROUPS: tuple[tuple[str, str], ...] = tuple(dict.fromkeys((r.action, r.effect) for r in REASONS))
GROUP_INDEX = {g: i for i, g in enumerate(GROUPS)}
ACTION_INDEX = {a: i for i, a in enumerate(ACTION_KEYS)}

# Pairs no correct annotation sets together: the turn is possible and not possible; a green
# light that is also a stop light.
EXTRA_EXCLUSIVE_PAIRS: tuple[tuple[str, str], ...] = (("green_light", "stop_traffic_light"),)

DEFAULT_NULL_SAMPLES = 2000
DEFAULT_SEED = 0
DEFAULT_MIN_Z = 3.0  # an order must beat random permutations by this many standard deviations
DEFAULT_MIN_POSITION_AGREEMENT = 0.2  # below: the position does not behave like its claimed reason
DEFAULT_MIN_COUNT = 5
TIE_TOLERANCE = 1e-9
DEFAULT_CONFLICT_ROWS = 10  # exclusive pairs listed in the report  # positions set fewer times than this carry too little evidence to score


def group_label(group: tuple[str, str]) -> str:
    action, effect = group
    return f"{action}{'+' if effect == SUPPORTS else '-'}"


def exclusive_pairs() -> list[tuple[str, str]]:
    pairs = []
    for action in ("left", "right"):
        can = [r.key for r in REASONS if r.action == action and r.effect == SUPPORTS]
        cannot = [r.key for r in REASONS if r.action == action and r.effect == RULES_OUT]
        pairs += [(a, b) for a in can for b in cannot]
    return pairs + list(EXTRA_EXCLUSIVE_PAIRS)


@dataclass
class LabelStats:
    """Statistics of file-position reason vectors against action vectors."""

    num_samples: int
    counts: np.ndarray  # (21,) samples with position i set
    cond: np.ndarray  # (21, 4) P(action | position i set); nan where counts == 0
    marginal: np.ndarray  # (4,) P(action)
    cooccur: np.ndarray  # (21, 21) samples with positions i and j both set
    agreement: np.ndarray  # (21, len(GROUPS)) normalised agreement of position i with group g
    scored: np.ndarray  # (21,) bool: position has enough samples to be scored

    @classmethod
    def from_vectors(cls, actions: np.ndarray, reasons: np.ndarray,
                     min_count: int = DEFAULT_MIN_COUNT) -> "LabelStats":
        actions = np.asarray(actions, dtype=np.float64)
        reasons = np.asarray(reasons, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != len(ACTION_KEYS):
            raise ValueError(f"actions must be (N, {len(ACTION_KEYS)}), got {actions.shape}")
        if reasons.ndim != 2 or reasons.shape[1] != NUM_REASONS or len(reasons) != len(actions):
            raise ValueError(f"reasons must be (N, {NUM_REASONS}) with N = {len(actions)}")
        n = len(actions)
        counts = reasons.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cond = (reasons.T @ actions) / counts[:, None]
        marginal = actions.mean(axis=0) if n else np.zeros(len(ACTION_KEYS))
        agreement = np.zeros((NUM_REASONS, len(GROUPS)))
        for g, (action, effect) in enumerate(GROUPS):
            a = ACTION_INDEX[action]
            base = marginal[a]
            with np.errstate(invalid="ignore", divide="ignore"):
                if effect == SUPPORTS:
                    value = (cond[:, a] - base) / (1.0 - base) if base < 1 else np.zeros(NUM_REASONS)
                else:
                    value = (base - cond[:, a]) / base if base > 0 else np.zeros(NUM_REASONS)
            agreement[:, g] = np.clip(np.nan_to_num(value, nan=0.0), -1.0, 1.0)
        return cls(n, counts, cond, marginal, reasons.T @ reasons, agreement, counts >= min_count)

    def group_indices(self, order: Sequence[str]) -> np.ndarray:
        return np.array([GROUP_INDEX[(REASON_BY_KEY[k].action, REASON_BY_KEY[k].effect)] for k in order])

    def score(self, order: Sequence[str]) -> float:
        """Mean agreement of scored positions with the groups the order claims for them."""
        if not self.scored.any():
            return 0.0
        per_position = self.agreement[np.arange(NUM_REASONS), self.group_indices(order)]
        return float(per_position[self.scored].mean())

    def conflicts_per_sample(self, order: Sequence[str]) -> float:
        """Exclusive reason pairs set together, per sample, if the file is in ``order``."""
        position = {key: i for i, key in enumerate(order)}
        total = sum(self.cooccur[position[a], position[b]] for a, b in exclusive_pairs())
        return float(total / self.num_samples) if self.num_samples else 0.0


@dataclass
class CandidateScore:
    name: str
    order: tuple[str, ...]
    score: float
    z: float
    percentile: float  # share of random permutations scoring below this order, in %
    conflicts: float  # exclusive pairs set together per sample
    conflicts_percentile: float  # share of random permutations with MORE conflicts, in %
    bad_positions: list[int] = field(default_factory=list)  # positions contradicting their reason
    verdict: str = ""

    @property
    def fits(self) -> bool:
        return self.verdict == "fits"


@dataclass
class AuditReport:
    stats: LabelStats
    candidates: list[CandidateScore]
    null_mean: float
    null_std: float
    null_conflicts_median: float
    skipped: int = 0
    min_z: float = DEFAULT_MIN_Z

    def candidate(self, name: str) -> CandidateScore:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(f"no candidate order {name!r}; have {[c.name for c in self.candidates]}")

    def position_table(self, name: str) -> str:
        cand = self.candidate(name)
        s = self.stats
        best = s.agreement.argmax(axis=1)
        header = (f"{'pos':>3}  {'reason at this position (order ' + cand.name + ')':<44} {'n':>6}  "
                  + "  ".join(f"P({a[0].upper()})" for a in ACTION_KEYS)
                  + f"  {'expects':<9} {'agree':>6}  {'looks like':<10}")
        lines = [header, "-" * len(header)]
        for i, key in enumerate(cand.order):
            reason = REASON_BY_KEY[key]
            group = (reason.action, reason.effect)
            rates = "  ".join(
                " -  " if np.isnan(s.cond[i, a]) else f"{s.cond[i, a]:4.2f}" for a in range(len(ACTION_KEYS))
            )
            if not s.scored[i]:
                mark, agree, looks = "", "   n/a", "(too few)"
            else:
                agree_value = s.agreement[i, GROUP_INDEX[group]]
                agree = f"{agree_value:6.2f}"
                # On a tie (a left-arrow light is both "left+" and "stop+") show the claimed group.
                tied = agree_value >= s.agreement[i, best[i]] - TIE_TOLERANCE
                looks = group_label(group if tied else GROUPS[best[i]])
                mark = "  <-- does not fit" if i in cand.bad_positions else ""
            lines.append(
                f"{i:>3}  {key:<44} {int(s.counts[i]):>6}  {rates}  {group_label(group):<9} {agree}  "
                f"{looks:<10}{mark}"
            )
        lines.append("expects/looks like: action+ = the reason supports the action, action- = rules "
                     "it out; agree: 1 = perfect, 0 = no relation, < 0 = contrary")
        return "\n".join(lines)

    def conflicts_table(self, name: str, limit: int = DEFAULT_CONFLICT_ROWS) -> str:
        """Mutually exclusive reason pairs set together, if the file is in order ``name``."""
        position = {key: i for i, key in enumerate(self.candidate(name).order)}
        rows = []
        for a, b in exclusive_pairs():
            both = int(self.stats.cooccur[position[a], position[b]])
            if both:
                rows.append((both, a, b))
        if not rows:
            return f"Exclusive reasons set together (order {name}): none."
        rows.sort(reverse=True)
        lines = [f"Exclusive reasons set together (order {name}), samples:"]
        lines += [f"  {a} + {b}: {n}" for n, a, b in rows[:limit]]
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more pairs")
        return "\n".join(lines)

    def candidates_table(self) -> str:
        header = f"{'order':<40} {'score':>6} {'z':>7} {'pctile':>7} {'conflicts/sample':>17}  verdict"
        lines = [header, "-" * len(header)]
        for c in self.candidates:
            lines.append(
                f"{c.name[-40:]:<40} {c.score:6.3f} {c.z:7.1f} {c.percentile:6.1f}% "
                f"{c.conflicts:17.4f}  {c.verdict}"
            )
        lines.append(
            f"null (random permutations): score {self.null_mean:.3f} +- {self.null_std:.3f}, "
            f"median conflicts/sample {self.null_conflicts_median:.4f}"
        )
        return "\n".join(lines)

    def verdict(self) -> str:
        fitting = [c for c in self.candidates if c.fits]
        if fitting:
            best = max(fitting, key=lambda c: c.score)
            return (f"order {best.name} fits these annotations (score {best.score:.3f}, z {best.z:.1f}, "
                    f"above {best.percentile:.1f}% of random orders)")
        partly = [c for c in self.candidates if c.verdict.startswith("partly")]
        if partly:
            best = max(partly, key=lambda c: c.score)
            return (f"no candidate fits fully; order {best.name} is closest but positions "
                    f"{best.bad_positions} do not behave like their reasons")
        return "no candidate order fits these annotations: give the right order as a JSON file"

    def render(self, table_order: str | None = None) -> str:
        name = table_order or self.candidates[0].name
        parts = [
            f"{self.stats.num_samples} samples; action base rates "
            + ", ".join(f"P({a})={p:.2f}" for a, p in zip(ACTION_KEYS, self.stats.marginal))
            + (f"; {self.skipped} bad records left out" if self.skipped else ""),
            "",
            self.position_table(name),
            "",
            self.conflicts_table(name),
            "",
            self.candidates_table(),
            "",
            "Note: reasons of the same group (e.g. the stop obstacles) cannot be told apart by this test.",
            f"Verdict: {self.verdict()}",
        ]
        return "\n".join(parts)


def audit_vectors(
    actions: np.ndarray,
    reasons: np.ndarray,
    candidates: dict[str, Sequence[str]],
    null_samples: int = DEFAULT_NULL_SAMPLES,
    seed: int = DEFAULT_SEED,
    min_z: float = DEFAULT_MIN_Z,
    min_position_agreement: float = DEFAULT_MIN_POSITION_AGREEMENT,
    min_count: int = DEFAULT_MIN_COUNT,
    skipped: int = 0,
) -> AuditReport:
    """Score each candidate order (name -> 21 keys in file-position order) on label vectors."""
    stats = LabelStats.from_vectors(actions, reasons, min_count=min_count)
    rng = np.random.default_rng(seed)
    keys = np.array(REASON_KEYS)
    null_orders = [tuple(rng.permutation(keys)) for _ in range(null_samples)]
    null = np.array([stats.score(o) for o in null_orders])
    null_conflicts = np.array([stats.conflicts_per_sample(o) for o in null_orders])
    null_mean, null_std = float(null.mean()), float(null.std())
    scored = []
    for name, order in candidates.items():
        order = tuple(order)
        score = stats.score(order)
        z = (score - null_mean) / null_std if null_std > 0 else 0.0
        conflicts = stats.conflicts_per_sample(order)
        groups = stats.group_indices(order)
        bad = [
            i for i in range(NUM_REASONS)
            if stats.scored[i] and stats.agreement[i, groups[i]] < min_position_agreement
        ]
        if z < min_z:
            verdict = "does not fit"
        elif bad:
            verdict = f"partly fits ({len(bad)} position(s) do not)"
        else:
            verdict = "fits"
        scored.append(
            CandidateScore(
                name=name, order=order, score=score, z=z,
                percentile=float((null < score).mean() * 100),
                conflicts=conflicts,
                conflicts_percentile=float((null_conflicts > conflicts).mean() * 100),
                bad_positions=bad, verdict=verdict,
            )
        )
    return AuditReport(stats, scored, null_mean, null_std, float(np.median(null_conflicts)),
                       skipped=skipped, min_z=min_z)


def audit(
    root: Path | str,
    orders: Sequence[str | Path] = (),
    splits: Sequence[str] = SPLITS,
    **kwargs,
) -> AuditReport:
    """Audit the annotation set under ``root``: the known orders plus ``orders`` (names or JSON
    files). The first of ``orders`` (or the default order) comes first in the report."""
    data = read_bddoia(root, reason_order=None, splits=splits, skip_bad=True, check_images=False)
    if not data.records:
        raise ValueError(f"{root}: no annotated samples to audit")
    actions = np.array([r.actions for r in data.records])
    reasons = np.array([r.reasons for r in data.records])  # file order (reason_order=None)
    candidates: dict[str, tuple[str, ...]] = {}
    for name in list(orders) + list(REASON_ORDERS):
        key = str(name)
        if key not in candidates:
            candidates[key] = load_reason_order(name)
    return audit_vectors(actions, reasons, candidates, skipped=len(data.skipped), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.audit",
        description="Measure P(action | reason position) and exclusive-reason co-occurrence on a "
        "BDD-OIA annotation set and say which reason order fits.",
    )
    parser.add_argument("--root", required=True, type=Path,
                        help="folder holding the six annotation files (beside or inside data/)")
    parser.add_argument("--reason-order", action="append", default=[],
                        help="candidate order: a known name or a JSON file of 21 reason keys in file "
                        "order (repeatable; the known orders are always scored too; the first one "
                        "given gets the per-position table)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--null-samples", type=int, default=DEFAULT_NULL_SAMPLES,
                        help="random permutations in the null distribution")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--min-z", type=float, default=DEFAULT_MIN_Z,
                        help="z-score over random orders an order needs to fit")
    parser.add_argument("--min-position-agreement", type=float, default=DEFAULT_MIN_POSITION_AGREEMENT,
                        help="agreement each scored position needs for an order to fit fully")
    parser.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT,
                        help="positions set fewer times are not scored")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = audit(args.root, args.reason_order, splits=args.splits,
                       null_samples=args.null_samples, seed=args.seed, min_z=args.min_z,
                       min_position_agreement=args.min_position_agreement, min_count=args.min_count)
    except ValueError as err:  # AnnotationError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.render(str(args.reason_order[0]) if args.reason_order else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
