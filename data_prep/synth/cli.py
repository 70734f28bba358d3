"""The command line: ``python -m data_prep.synth --out DIR --clips N --seed S [--frames 5
--num-proc 2 --videos]``; every WorldConfig field is a flag of the same name."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Sequence

from data_prep.synth.release import SPLITS, generate, label_rates
from data_prep.synth.world import WorldConfig
from taxonomy.labels import ACTION_KEYS


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("world (WorldConfig fields)")
    defaults = WorldConfig()
    for f in fields(WorldConfig):
        default = getattr(defaults, f.name)
        # A switch is --name / --no-name (type=bool would read any text, "False" too, as True).
        kind = ({"action": argparse.BooleanOptionalAction} if isinstance(default, bool)
                else {"type": type(default)})
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=default,
                           help=f"{f.metadata.get('help', '')} (default {default})", **kind)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.synth",
        description="Write a synthetic driving world in the BDD-OIA release layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (the release root)")
    parser.add_argument("--clips", required=True, type=int, help="number of clips")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--num-proc", type=int, default=max(1, (os.cpu_count() or 1)),
                        help="rendering processes (default: all cores)")
    parser.add_argument("--videos", action="store_true", help="also write videos/<id>.mp4 per clip")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out (only after the new world is complete)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _config_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = WorldConfig(**{f.name: getattr(args, f.name) for f in fields(WorldConfig)})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        truths = generate(args.out, args.clips, seed=args.seed, config=config,
                          num_proc=args.num_proc, videos=args.videos, overwrite=args.overwrite,
                          progress=not args.no_progress)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    counts = {s: sum(t.split == s for t in truths) for s in SPLITS}
    rates = label_rates(truths)
    print(f"wrote {len(truths)} clips to {args.out} in {seconds:.1f} s "
          f"({len(truths) / seconds:.1f} clips/s, {args.num_proc} processes)")
    print("splits: " + ", ".join(f"{s} {n}" for s, n in counts.items())
          + f"; confuse {sum(t.confuse for t in truths)}")
    print("actions: " + ", ".join(f"{k} {rates[k]:.2f}" for k in ACTION_KEYS))
    return 0
