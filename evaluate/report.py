"""The Markdown report: our rows (one per model or stage) beside the published BDD-OIA rows.

Our numbers and the published ones are computed the same way (BDD-OIA's official F1_all and mF1,
evaluate/metrics.py), but not on the same data unless the dataset is the real BDD-OIA test split:
the report says so above the table. It also gives the best constant prediction on the same split
(a floor: a model below it has learnt nothing beyond label frequencies), per-class F1, JSON
validity, CLIP score, answer length, and links to the plots and the gallery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from taxonomy.labels import ACTION_KEYS, REASON_BY_KEY, REASON_KEYS

# Published results on the real BDD-OIA test set (4,572 clips): act mF1, act F1_all, expl mF1, expl
# F1_all. Sources and caveats in docs/bddoia.md ("Published results"): Xu et al. CVPR 2020 for the
# first two rows, each method's own paper for the others. Some later works select the best epoch on
# test; ours select on val.
PUBLISHED_SOURCE = (
    "Xu et al., CVPR 2020 (arXiv:2003.09405) and each method's paper, compiled in SmolDrive's "
    "docs/bddoia.md; the real BDD-OIA test set, 4,572 clips"
)
PUBLISHED_RESULTS: tuple[tuple[str, float, float, float, float], ...] = (
    ("ResNet-101 baseline (Xu 2020)", 0.392, 0.601, 0.180, 0.331),
    ("OIA (Xu 2020)", 0.718, 0.734, 0.208, 0.422),
    ("GPT-4V zero-shot", 0.436, 0.537, 0.191, 0.284),
    ("NLE-DM", 0.723, 0.733, 0.312, 0.517),
    ("InAction", 0.694, 0.714, 0.347, 0.565),
    ("MM-XAD", 0.723, 0.743, 0.360, 0.535),
    ("SGDCL (IJCAI 2024)", 0.733, 0.753, 0.386, 0.582),
    ("DAMO", 0.751, 0.768, 0.423, 0.614),
)
BEST_CONSTANT_LABEL = "best constant (max F1_all)"
ALL_ONES_LABEL = "constant: all ones (max mF1)"
REAL_TEST_SIZE = 4572  # the real BDD-OIA test split's clip count, to tell it from the synthetic world


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _clip(run: Mapping) -> str:
    if run.get("clip_score") is None:
        return "n/a" if not run.get("clip_model") else "n/a (no description)"
    return f"{run['clip_score']:.3f} (n={run.get('clip_scored_samples', '?')})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def maybe_not_real_test(run: Mapping) -> bool:
    """True unless the run looks like the real BDD-OIA test split (size and no 'synth' in the path)."""
    dataset = str(run.get("dataset", ""))
    return "synth" in dataset.lower() or run.get("n_samples") != REAL_TEST_SIZE


def main_table(runs: Sequence[Mapping], baseline: Mapping | None) -> str:
    """Our rows, the constant floors on the same split, then the published rows (marked)."""
    header = ["method", "data", "act mF1", "act F1_all", "expl mF1", "expl F1_all", "act acc", "expl acc"]
    rows = []
    for run in runs:
        where = f"ours: {run.get('dataset', '?')} [{run.get('split', '?')}], n={run.get('n_samples', '?')}"
        rows.append([
            f"**{run.get('label', 'model')}**", where,
            _num(run["actions"]["mf1"]), _num(run["actions"]["f1_all"]),
            _num(run["reasons"]["mf1"]), _num(run["reasons"]["f1_all"]),
            _num(run["actions"]["accuracy"]), _num(run["reasons"]["accuracy"]),
        ])
    if baseline:
        where = f"ours: same split, n={baseline['actions'].get('n_samples', '?')}"
        for label, pick in ((BEST_CONSTANT_LABEL, lambda m: m), (ALL_ONES_LABEL, lambda m: m["all_ones"])):
            actions, reasons = pick(baseline["actions"]), pick(baseline["reasons"])
            rows.append([
                label, where, _num(actions["mf1"]), _num(actions["f1_all"]), _num(reasons["mf1"]),
                _num(reasons["f1_all"]), _num(actions["accuracy"]), _num(reasons["accuracy"]),
            ])
    for name, act_mf1, act_f1, expl_mf1, expl_f1 in PUBLISHED_RESULTS:
        rows.append([f"_{name}_", "_published: real BDD-OIA test_", _num(act_mf1), _num(act_f1),
                     _num(expl_mf1), _num(expl_f1), "", ""])
    return _table(header, rows)


def per_class_table(runs: Sequence[Mapping], group: str, baseline: Mapping | None) -> str:
    keys = ACTION_KEYS if group == "actions" else REASON_KEYS
    header = ["class"] + [str(run.get("label", "model")) for run in runs]
    if baseline:
        header.append(BEST_CONSTANT_LABEL)
    rows = []
    for key in keys:
        name = f"{key} ({REASON_BY_KEY[key].phrase})" if group == "reasons" else key
        row = [name] + [_num(run[group]["per_class"].get(key)) for run in runs]
        if baseline:
            row.append(_num(baseline[group]["per_class"].get(key)))
        rows.append(row)
    return _table(header, rows)


def quality_table(runs: Sequence[Mapping]) -> str:
    header = ["method", "decoding", "JSON found", "schema-valid JSON", "only the JSON", "empty answers",
              "CLIP (answer)", "CLIP (reference)", "description = reference", "description word F1",
              "tokens", "words", "no EOS", "s/sample"]
    rows = []
    for run in runs:
        generation = run.get("generation", {})
        description = run.get("description") or {}  # absent in evaluations made before the metric
        rows.append([
            str(run.get("label", "model")), generation.get("decoding", "free"), _pct(run.get("json_rate")), _pct(run.get("schema_valid_rate")),
            _pct(run.get("clean_json_rate")), _pct(run.get("empty_rate")), _clip(run),
            _num(run.get("clip_score_reference")), _pct(description.get("exact_match")),
            _num(description.get("word_f1")), _num(run.get("output_tokens_mean"), 1),
            _num(run.get("output_words_mean"), 1), _pct(generation.get("hit_max_new_tokens_rate")),
            _num(generation.get("seconds_per_sample"), 3),
        ])
    return _table(header, rows)


def render_report(runs: Sequence[Mapping], baseline: Mapping | None = None,
                  plots: Mapping[str, str] | None = None, galleries: Mapping[str, str] | None = None,
                  title: str = "SmolDrive evaluation") -> str:
    """The report's Markdown. ``plots`` maps a caption to a path relative to the report;
    ``galleries`` maps a run label to its gallery's path relative to the report."""
    if not runs:
        raise ValueError("render_report needs at least one run")
    datasets = sorted({f"{r.get('dataset', '?')} [{r.get('split', '?')}]" for r in runs})
    synthetic = any(maybe_not_real_test(r) for r in runs)
    parts = [f"# {title}", ""]
    parts.append(
        f"Ours: {', '.join(datasets)}. Metrics: BDD-OIA's official F1_all (per-sample F1, averaged) and "
        "mF1 (mean of per-class F1), plus accuracy over all label entries (evaluate/metrics.py). "
        "Answers are read with the one parser, taxonomy.answer.parse_answer."
    )
    parts.append("")
    parts.append(
        "> **Published rows are other people's numbers on the real BDD-OIA test set** "
        f"(source: {PUBLISHED_SOURCE}); **ours are on {', '.join(datasets)}**"
        + (" — **not comparable when that is the synthetic world** (or any set other than the real "
           "BDD-OIA test split)." if synthetic else ".")
    )
    parts.append("")
    parts.append(
        "> Model selection (checkpoints, stages, hyper-parameters) uses the **val** split only; the "
        "test split is evaluated once, for this report."
    )
    parts += ["", "## Actions and explanations", "", main_table(runs, baseline), ""]
    if baseline:
        parts.append(
            f"Constant rows: one fixed prediction for every clip, fitted on this same split (an optimistic "
            f"floor). Actions: {baseline['actions'].get('rule', '')}, predicts "
            f"{baseline['actions'].get('positive_classes', [])}. Reasons: {baseline['reasons'].get('rule', '')}, "
            f"predicts {baseline['reasons'].get('positive_classes', [])}."
        )
        parts.append("")
    parts += ["## Answer quality", "", quality_table(runs), ""]
    parts.append(
        "Decoding: free (as the model says it) or constrained (only tokens the answer schema allows, "
        "evaluate/constrained.py). JSON found: the answer holds a JSON object. Schema-valid: that object passes "
        "taxonomy/answer.schema.json. Only the JSON: schema-valid and nothing else in the answer. "
        "CLIP: cosine between the answer's description and the clip (the normalised mean of its frame "
        "embeddings), as the clip_alignment reward computes it, averaged over the answers that have a "
        "description (n = how many); a CLIP cosine sits around 0.2-0.35 for real models, so compare with "
        "the reference descriptions' score, not with 1. Description = reference: the answer's description "
        "has the reference's words in order (case and punctuation aside); word F1: bag-of-words F1 against "
        "it (evaluate/metrics.py, description_metrics): what CLIP only approximates. "
        "Tokens: generated tokens before the EOS; words: whitespace-separated; no EOS: answers cut at "
        "max_new_tokens (runaway generations)."
    )
    clip_models = sorted({str(r.get("clip_model")) for r in runs if r.get("clip_model")})
    if clip_models:
        parts.append(f"CLIP model: {', '.join(clip_models)}.")
    parts += ["", "## Per-class F1: actions", "", per_class_table(runs, "actions", baseline), ""]
    parts += ["## Per-class F1: reasons", "", per_class_table(runs, "reasons", baseline), ""]
    if plots:
        parts += ["## Plots", ""]
        for caption, path in plots.items():
            parts += [f"[{caption}]({path})", "", f"![{caption}]({path})", ""]
    if galleries:
        parts += ["## Gallery", ""]
        parts += [f"- {label}: [{path}]({path})" for label, path in galleries.items()]
        parts += ["", "Each card: the frames, true and predicted actions as arrows, explanations coloured green "
                  "(true positive), red (false positive), grey (false negative).", ""]
    return "\n".join(parts)


def write_report(out_path: str | Path, runs: Sequence[Mapping], baseline: Mapping | None = None,
                 plots: Mapping[str, str] | None = None, galleries: Mapping[str, str] | None = None,
                 title: str = "SmolDrive evaluation") -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_report(runs, baseline, plots, galleries, title), encoding="utf-8")
    return out_path
