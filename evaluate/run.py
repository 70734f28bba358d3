"""Evaluate a model folder on a split of a prepared dataset (``make eval``), or merge several runs.

One model::

    python -m evaluate.run --model work/sft --dataset work/dataset --split test --out work/eval/sft \\
        --label sft [--max-samples N --batch-size B --max-new-tokens T] \\
        [--clip-model local-dir:work/models/tiny-clip | --clip-model ViT-B-32 --clip-pretrained TAG | --no-clip] \\
        [--logs work/sft/trainer_state.json ...]

generates an answer per clip (no text prompt), parses it with taxonomy.answer.parse_answer, and
writes to OUT: metrics.json, predictions.jsonl (id, text, parsed, truth), report.md, per-class F1
plots (and training curves with --logs), gallery.html.

Several runs in one table (each OUT written by the command above)::

    python -m evaluate.run --compare untrained=work/eval/untrained sft=work/eval/sft \\
        stage1=work/eval/stage1 --out work/eval/all [--logs sft=work/sft stage1=work/stage1]

Model selection never uses test: choose checkpoints, stages and settings with ``--split val``;
evaluate on ``--split test`` once, for the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from core.image_budget import image_budget
from evaluate import gallery as gallery_module
from evaluate import plots, report
from evaluate.generate import (
    add_model_loading_args,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODING,
    DEFAULT_MAX_NEW_TOKENS,
    EvaluationError,
    decoding_constraint,
    generate_for_split,
    load_eval_split,
    load_model_and_processor,
)
from evaluate.metrics import answer_metrics, best_constant_baseline, description_metrics
from taxonomy.answer import ParsedAnswer, parse_answer
from taxonomy.labels import (
    ACTION_KEYS,
    REASON_KEYS,
    actions_from_vector,
    reasons_from_vector,
)

# The demo's CLIP (built by `make tiny-models`); a real run names an open_clip model instead.
DEFAULT_CLIP_MODEL = "local-dir:work/models/tiny-clip"
DEFAULT_GALLERY_SIZE = 12
CLIP_BATCH_CLIPS = 16  # clips whose frames are decoded and embedded at once (bounds memory)
METRICS_FILE, PREDICTIONS_FILE, REPORT_FILE, GALLERY_FILE = (
    "metrics.json", "predictions.jsonl", "report.md", "gallery.html"
)
PLOT_FILES = {"actions": "per_class_f1_actions.png", "reasons": "per_class_f1_reasons.png"}
CURVES_FILE = "training_curves.png"


# ---------------------------------------------------------------------------------------------
# Answer checks


def schema_valid(parsed: ParsedAnswer) -> bool:
    """The answer's first JSON object passes taxonomy/answer.schema.json and repeats no key (the
    parser's own verdict, the one the rewards read)."""
    return parsed.schema_valid


def clean_json(parsed: ParsedAnswer) -> bool:
    """Schema-valid, and the answer is that one object and nothing else (the parser's verdict)."""
    return parsed.clean


def ordered(keys, vocabulary: Sequence[str]) -> list[str]:
    return [k for k in vocabulary if k in set(keys)]


# ---------------------------------------------------------------------------------------------
# CLIP score


def clip_scores(data: Any, texts: Mapping[str, Sequence[str]], clip_model: str, clip_pretrained: str | None = None,
                device: str = "cpu", progress: bool = True, cache_prefix: str = "") -> dict[str, list[float | None]]:
    """Per clip and per text set: the CLIP cosine between ``texts[name][i]`` and clip i's frames.

    The very cosine the clip_alignment reward (R1) is built on, computed by its scorer
    (rewards.clip_alignment): the text against the normalised mean of the clip's normalised frame
    embeddings. ``texts`` maps a name ("answer", "reference") to one text per clip; frames are
    embedded once per clip, ``CLIP_BATCH_CLIPS`` clips at a time. An empty text scores None (left
    out of the mean, counted separately). The scorer caches frame embeddings by id for the whole
    process, so ids are prefixed with ``cache_prefix`` (the dataset and split).
    """
    from rewards.clip_alignment import get_scorer

    scorer = get_scorer(clip_model, clip_pretrained, device)
    scores: dict[str, list[float | None]] = {name: [] for name in texts}
    with tqdm(total=len(data), desc="CLIP score", unit="sample", disable=not progress) as bar:
        for start in range(0, len(data), CLIP_BATCH_CLIPS):
            rows = data[start : start + CLIP_BATCH_CLIPS]
            keys = [f"{cache_prefix}{clip_id}" for clip_id in rows["id"]]
            videos = scorer.video_embeddings(keys, rows["frames"])
            for name, all_texts in texts.items():
                batch = [text.strip() for text in all_texts[start : start + len(keys)]]
                scores[name].extend(scorer.cosines(videos, batch))
            bar.update(len(keys))
    return scores


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(sum(present) / len(present)) if present else None


# ---------------------------------------------------------------------------------------------
# One model


def parse_labelled(items: Sequence[str], what: str) -> dict[str, str]:
    """``LABEL=PATH`` or ``PATH`` items as an ordered {label: path} (label = the folder's name)."""
    out: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            path, label = item, Path(item.rstrip("/")).name
            if label == "trainer_state.json":
                label = Path(item).parent.name
        if label in out:
            raise EvaluationError(f"{what}: label {label!r} given twice; name them LABEL=PATH")
        out[label] = path
    return out


def score_answers(texts: Sequence[str], data: Any) -> tuple[dict, list[dict]]:
    """Metrics of answers against a split's truth, and one record per answer."""
    parsed = [parse_answer(text) for text in texts]
    if len(parsed) != len(data):
        raise EvaluationError(f"{len(parsed)} answers for {len(data)} clips: they must match one to one")
    # Column reads: these do not decode the frames.
    ids = list(data["id"])
    actions_true = list(data["actions"])
    reasons_true = list(data["reasons"])
    metrics = answer_metrics(parsed, actions_true, reasons_true)
    valid = [schema_valid(p) for p in parsed]
    clean = [clean_json(p) for p in parsed]
    metrics["schema_valid_rate"] = sum(valid) / len(parsed)
    metrics["clean_json_rate"] = sum(clean) / len(parsed)
    references = list(data["description"]) if "description" in data.column_names else [""] * len(parsed)
    metrics["description"] = description_metrics([p.description for p in parsed], references)
    records = []
    for i, answer in enumerate(parsed):
        records.append({
            "id": ids[i],
            "text": texts[i],
            "parsed": {
                "actions": ordered(answer.actions, ACTION_KEYS),
                "reasons": ordered(answer.reasons, REASON_KEYS),
                "description": answer.description,
                "justification": answer.justification,
                "is_json": answer.is_json,
                "schema_valid": valid[i],
                "clean_json": clean[i],
            },
            "truth": {
                "actions": actions_from_vector(actions_true[i]),
                "reasons": reasons_from_vector(reasons_true[i]),
                "description": references[i],
            },
        })
    return metrics, records


def evaluate_model(model_dir: str, dataset_dir: str, split: str, out_dir: str, label: str | None = None,
                   max_samples: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                   max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, clip_model: str | None = DEFAULT_CLIP_MODEL,
                   clip_pretrained: str | None = None, logs: Mapping[str, str] | None = None,
                   gallery_size: int = DEFAULT_GALLERY_SIZE, image_splitting: bool | None = None,
                   image_longest_edge: int | None = None, device: str | None = None, precision: str = "auto",
                   progress: bool = True, decoding: str = DEFAULT_DECODING) -> dict:
    """Generate, parse, score, and write every output file; returns the metrics dict.

    ``clip_model=None`` skips the CLIP score. ``decoding``: free or constrained (evaluate/constrained.py);
    a constrained run's default label says so.
    """
    out = Path(out_dir)
    label = label or Path(model_dir.rstrip("/")).name + ("" if decoding == DEFAULT_DECODING else f" ({decoding})")
    data = load_eval_split(dataset_dir, split, max_samples)
    for path in (logs or {}).values():  # fail before the long generation, not after it
        plots.load_log_history(path)
    model, processor = load_model_and_processor(model_dir, image_splitting, image_longest_edge, device, precision)
    constraint = decoding_constraint(decoding, model, processor)
    if clip_model:
        from rewards.clip_alignment import get_scorer

        get_scorer(clip_model, clip_pretrained, str(model.device))  # loads (and checks) the CLIP model now
    started = time.perf_counter()
    generated = generate_for_split(model, processor, data, batch_size, max_new_tokens, progress, constraint)
    generation_seconds = time.perf_counter() - started
    texts, tokens = generated.texts, generated.token_counts
    metrics, records = score_answers(texts, data)
    for record, n_tokens, hit_limit in zip(records, tokens, generated.hit_limit):
        record["output_tokens"] = n_tokens
        record["hit_max_new_tokens"] = hit_limit

    clip_info: dict[str, Any] = {"clip_model": None, "clip_score": None, "clip_score_reference": None,
                                 "clip_scored_samples": 0}
    if clip_model:
        from rewards.clip_alignment import DEFAULT_MAX_DESCRIPTION_CHARS, description_of

        texts_to_score = {  # the description span only, cut as the reward cuts it
            "answer": [description_of(r["text"]) for r in records],
            "reference": [r["truth"]["description"][:DEFAULT_MAX_DESCRIPTION_CHARS] for r in records],
        }
        all_scores = clip_scores(data, texts_to_score, clip_model, clip_pretrained, str(model.device), progress,
                                 cache_prefix=f"{Path(dataset_dir).resolve()}[{split}]/")
        scores, reference_scores = all_scores["answer"], all_scores["reference"]
        for record, score in zip(records, scores):
            record["clip_score"] = score
        clip_info = {
            "clip_model": clip_model + (f" ({clip_pretrained})" if clip_pretrained else ""),
            "clip_score": _mean(scores),
            "clip_score_reference": _mean(reference_scores),
            "clip_scored_samples": sum(s is not None for s in scores),
        }

    baseline = {
        "actions": best_constant_baseline(list(data["actions"]), ACTION_KEYS),
        "reasons": best_constant_baseline(list(data["reasons"]), REASON_KEYS),
    }
    metrics = {
        "label": label,
        "model": str(model_dir),
        "dataset": str(dataset_dir),
        "split": split,
        **metrics,
        **clip_info,
        "output_tokens_mean": sum(tokens) / len(tokens),
        "output_words_mean": sum(len(t.split()) for t in texts) / len(texts),
        "generation": {
            "decoding": decoding,
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens,
            "hit_max_new_tokens_rate": sum(generated.hit_limit) / len(texts),
            **image_budget(processor),
            "device": str(model.device),
            "dtype": str(model.dtype).removeprefix("torch."),
            "seconds": generation_seconds,
            "seconds_per_sample": generation_seconds / len(texts),
            "constraint_ms_per_token": constraint.ms_per_token if constraint else None,
        },
        "baseline": baseline,
    }

    out.mkdir(parents=True, exist_ok=True)
    with open(out / PREDICTIONS_FILE, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    plot_files = write_plots(out, {label: metrics}, logs, baseline)
    gallery_path = write_run_gallery(out / GALLERY_FILE, data, records, label, dataset_dir, split, gallery_size)
    metrics["files"] = {
        "predictions": PREDICTIONS_FILE,
        "report": REPORT_FILE,
        "gallery": gallery_path.name if gallery_path else None,
        "plots": plot_files,
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    report.write_report(out / REPORT_FILE, [metrics], baseline, plot_files,
                        {label: gallery_path.name} if gallery_path else None,
                        title=f"SmolDrive evaluation: {label}")
    return metrics


def write_plots(out: Path, runs: Mapping[str, Mapping], logs: Mapping[str, str] | None,
                baseline: Mapping | None = None) -> dict[str, str]:
    """Per-class F1 bars (and training curves when logs are given); {caption: file name}."""
    files = {}
    for group, name in PLOT_FILES.items():
        plots.plot_per_class_f1(runs, group, out / name, baseline, report.BEST_CONSTANT_LABEL)
        files[f"per-class F1: {group}"] = name
    if logs:
        plots.plot_training_curves(logs, out / CURVES_FILE)
        files["training loss and rewards"] = CURVES_FILE
    return files


def write_run_gallery(path: Path, data: Any, records: Sequence[dict], label: str, dataset_dir: str, split: str,
                      size: int) -> Path | None:
    rows = gallery_module.spread_indices(len(records), size)
    if not rows:
        return None
    examples = []
    for row in rows:
        record = records[row]
        notes = {}
        if record.get("clip_score") is not None:
            notes["CLIP score"] = f"{record['clip_score']:.3f}"
        examples.append(gallery_module.GalleryExample(
            id=record["id"],
            frames=data[row]["frames"],
            true_actions=set(record["truth"]["actions"]),
            true_reasons=set(record["truth"]["reasons"]),
            parsed=parse_answer(record["text"]),
            raw_text=record["text"],
            schema_valid=record["parsed"]["schema_valid"],
            reference_description=record["truth"]["description"],
            notes=notes,
        ))
    return gallery_module.write_gallery(
        examples, path, title=f"SmolDrive answers: {label}",
        subtitle=f"{len(examples)} of {len(records)} clips of {dataset_dir} [{split}], spread evenly over the split",
    )


# ---------------------------------------------------------------------------------------------
# Several runs


def load_run(run_dir: str | Path) -> dict:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise EvaluationError(f"{path}: not found (write it with `python -m evaluate.run --model ... --out {run_dir}`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{path}: not valid JSON ({err})") from err


def load_predictions(run_dir: str | Path) -> list[dict]:
    """The per-answer records (id, text, parsed, truth) an evaluation wrote, in sample order."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise EvaluationError(f"{path}: not found (write it with `python -m evaluate.run --model ... --out {run_dir}`)")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def add_evaluation_pairs(parser: argparse.ArgumentParser) -> None:
    """``--start``/``--end``: one pair of evaluation folders per seed, for the tools that compare two models."""
    parser.add_argument("--start", action="append", required=True, help="the start model's evaluation folder (one per seed)")
    parser.add_argument("--end", action="append", required=True, help="the end model's evaluation folder (one per seed)")


def evaluation_pairs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[list[dict], list[dict]]]:
    """The parsed ``--start``/``--end`` folders' records, pair by pair (a usage error when unmatched;
    an EvaluationError naming a folder without predictions)."""
    if len(args.start) != len(args.end):
        parser.error("give as many --end as --start folders (one pair per seed)")
    return [(load_predictions(s), load_predictions(e)) for s, e in zip(args.start, args.end)]


def pair_by_clip(start: Sequence[dict], end: Sequence[dict]) -> list[tuple[dict, dict]]:
    """Two evaluations' records of the same clips, paired by clip id in ``start``'s order; a
    ValueError when they cover different clips."""
    end_by_id = {r["id"]: r for r in end}
    missing = [r["id"] for r in start if r["id"] not in end_by_id]
    if missing or len(end_by_id) != len(start):
        raise ValueError(f"the two evaluations cover different clips ({len(start)} against {len(end_by_id)}; "
                         f"first missing: {missing[:3]})")
    return [(r, end_by_id[r["id"]]) for r in start]


def compare_runs(runs: Mapping[str, str], out_dir: str | Path, logs: Mapping[str, str] | None = None) -> Path:
    """Merge the metrics.json of several runs ({label: run folder}) into one report in ``out_dir``.

    The constant-prediction rows come from the first run; they are shown only when every run was
    scored on the same dataset, split and number of samples (otherwise the report says so).
    """
    if not runs:
        raise EvaluationError("--compare needs at least one run folder")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = []
    for label, run_dir in runs.items():
        metrics = load_run(run_dir)
        metrics["label"] = label
        loaded.append((run_dir, metrics))
    same_split = len({(m.get("dataset"), m.get("split"), m.get("n_samples")) for _, m in loaded}) == 1
    baseline = loaded[0][1].get("baseline") if same_split else None
    plot_files = write_plots(out, {m["label"]: m for _, m in loaded}, logs, baseline)
    galleries = {}
    for run_dir, metrics in loaded:
        name = (metrics.get("files") or {}).get("gallery")
        if name and (Path(run_dir) / name).is_file():
            galleries[metrics["label"]] = _relative(Path(run_dir) / name, out)
    title = "SmolDrive evaluation: " + ", ".join(m["label"] for _, m in loaded)
    path = report.write_report(out / REPORT_FILE, [m for _, m in loaded], baseline, plot_files, galleries, title)
    if not same_split:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n> The runs were scored on different datasets, splits or sample counts: their rows are "
                         "not directly comparable, and no constant-prediction row is shown.\n")
    merged = {"runs": [m for _, m in loaded], "baseline": baseline, "same_split": same_split}
    (out / METRICS_FILE).write_text(json.dumps(merged, indent=2))
    return path


def _relative(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluate.run",
        description="Evaluate a model folder on a prepared split (or merge runs with --compare). "
                    "Select models on --split val; report on --split test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", help="model folder (save_pretrained output; a LoRA adapter folder also works)")
    parser.add_argument("--dataset", default="work/dataset", help="prepared DatasetDict (make data)")
    parser.add_argument("--split", default="test", help="split to evaluate: val for selection, test for the report")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--label", default=None, help="row name in the report; None: the model folder's name")
    parser.add_argument("--max-samples", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL,
                        help="open_clip model: 'local-dir:FOLDER' (the tiny one) or an architecture like ViT-B-32")
    parser.add_argument("--clip-pretrained", default=None, help="open_clip pretrained tag or checkpoint file")
    parser.add_argument("--no-clip", action="store_true", help="skip the CLIP score")
    parser.add_argument("--logs", nargs="+", default=None, metavar="[LABEL=]PATH",
                        help="trainer_state.json files or Trainer output folders, one per stage, for loss/reward curves")
    parser.add_argument("--gallery-size", type=int, default=DEFAULT_GALLERY_SIZE, help="examples in gallery.html")
    add_model_loading_args(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--compare", nargs="+", default=None, metavar="[LABEL=]RUN_DIR",
                        help="merge the metrics.json of these evaluation folders into one report in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        logs = parse_labelled(args.logs, "--logs") if args.logs else None
        if args.compare:
            if args.model:
                parser.error("--compare merges finished runs: drop --model")
            path = compare_runs(parse_labelled(args.compare, "--compare"), args.out, logs)
            print(f"report: {path}")
            return 0
        if not args.model:
            parser.error("--model is required (or --compare RUN_DIR ...)")
        metrics = evaluate_model(
            args.model, args.dataset, args.split, args.out, label=args.label, max_samples=args.max_samples,
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            clip_model=None if args.no_clip else args.clip_model, clip_pretrained=args.clip_pretrained,
            logs=logs, gallery_size=args.gallery_size, image_splitting=args.image_splitting,
            image_longest_edge=args.image_longest_edge, device=args.device, precision=args.precision,
            progress=not args.no_progress, decoding=args.decoding,
        )
    except (EvaluationError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {
        "label": metrics["label"], "n": metrics["n_samples"],
        "act_mF1": round(metrics["actions"]["mf1"], 4), "act_F1_all": round(metrics["actions"]["f1_all"], 4),
        "expl_mF1": round(metrics["reasons"]["mf1"], 4), "expl_F1_all": round(metrics["reasons"]["f1_all"], 4),
        "schema_valid": round(metrics["schema_valid_rate"], 4),
    }
    print(json.dumps(summary))
    print(f"report: {Path(args.out) / REPORT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
