"""The decoding record: one row per model and decoding mode (free, constrained), from the
evaluation folders ``make decoding-record`` writes (``python -m evaluate.run --decoding ...``).

    python -m evaluate.decoding_record --runs sft=work/eval/decoding/sft-free ... \\
        --out records/constrained_decoding.md --command "make decoding-record"

Each row: schema-valid share, act/expl F1_all and mF1, output tokens and seconds per sample, the
time the constraint's logits processors took per generated token, and the share of answers that
hit ``max_new_tokens``. The command that made the record is written in it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Sequence

from evaluate.generate import EvaluationError
from evaluate.report import _num, _pct, _table
from evaluate.run import load_run, parse_labelled

HEADER = ["model", "decoding", "schema-valid", "act F1_all", "act mF1", "expl F1_all", "expl mF1",
          "tokens/sample", "s/sample", "constraint ms/token", "hit the cap", "n"]


def record_rows(runs: Mapping[str, str]) -> list[list[str]]:
    rows = []
    for label, run_dir in runs.items():
        run = load_run(run_dir)
        generation = run.get("generation", {})
        rows.append([
            str(run.get("label", label)), generation.get("decoding", "free"), _pct(run["schema_valid_rate"]),
            _num(run["actions"]["f1_all"]), _num(run["actions"]["mf1"]),
            _num(run["reasons"]["f1_all"]), _num(run["reasons"]["mf1"]),
            _num(run["output_tokens_mean"], 1), _num(generation.get("seconds_per_sample"), 3),
            _num(generation.get("constraint_ms_per_token"), 3) if generation.get("constraint_ms_per_token") else "–",
            _pct(generation.get("hit_max_new_tokens_rate")), str(run.get("n_samples", "?")),
        ])
    return rows


def render_record(runs: Mapping[str, str], command: str) -> str:
    first = load_run(next(iter(runs.values())))
    generation = first.get("generation", {})
    return "\n".join([
        "# Free and grammar-constrained decoding", "",
        f"Made by `{command}`.", "",
        f"Dataset {first.get('dataset')} [{first.get('split')}], greedy, batch {generation.get('batch_size')}, "
        f"max_new_tokens {generation.get('max_new_tokens')}, on {generation.get('device')}. Constrained: only "
        "tokens the grammar derived from taxonomy/answer.schema.json allows, closed before the cap "
        "(evaluate/constrained.py). s/sample is wall time on a shared machine: compare rows of one record only; "
        "constraint ms/token is the time spent in the constraint's logits processors per generated token.",
        "", _table(HEADER, record_rows(runs)), "",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluate.decoding_record", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="KEY=EVAL_DIR",
                        help="evaluation folders, one row each (the row shows the run's own label and decoding)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--command", required=True, help="the command that made the record, written in it")
    args = parser.parse_args(argv)
    try:
        text = render_record(parse_labelled(args.runs, "--runs"), args.command)
    except EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
