"""The RL learning record (``make rl-record SEEDS="0 1 2"``): does each stage earn its place?

For every seed it trains the demo chain (sft -> stage1 -> stage2 -> stage3, each from the one
before), stage 1 a second time by critic-free GRPO (same reward, budget and seed: actor-critic vs
GRPO), each RL stage a second time under the null-reward control (its rewards scored against another
clip: recipes/reward_control.py), and a control (SFT continued from the SFT model for as many clips
as the RL stages see);
then evaluates every model greedily on the val split (never test: nothing here selects on test)
and, with ``--holdout``, on a second, larger held-out world, and writes a markdown record with plots:

- per model: act/expl F1_all and mF1, schema-valid share, CLIP score, and each RL stage's own
  reward (its YAML's rewards and weights, scored on the greedy val answers) before and after;
- every figure as the mean over seeds with its range [min, max];
- each RL stage against its null control (same start, steps and seed): what its reward's
  information adds beyond the cost of sampled updates;
- every run against its start, every stage against its control and the chain's end against SFT:
  the F1_all difference with its interval over clips (:mod:`evaluate.paired_bootstrap`), since
  the seeds' range says nothing of how the clips were drawn;
- R1 on val against training steps for stage 1 by actor-critic, by GRPO and under the null reward
  (checkpoints);
- what each stage's reward can pay for: R1's headroom over SFT's descriptions
  (:mod:`evaluate.r1_headroom`) and, per label, the signal stage 2's samples carry
  (:mod:`evaluate.label_signal`) beside the label's F1 before and after stage 2;
- every model's F1 per label on the largest evaluation set (which labels each stage moves);
- SFT's and the final stage's labels with the reference description forced in
  (:mod:`evaluate.description_forcing`, the largest set): how much of the label error is the
  description's;
- the done-when checks of the RL issue, computed from the figures (a miss is printed as a miss),
  once per evaluation set.

Why a held-out world: the demo's val split has 150 clips, where one answer's flip moves act F1_all
by about 0.007 and three seeds' SFT models span 0.026, as wide as anything RL does. ``make
rl-record`` also writes a world of 1,000 clips from another world seed that no model trains on
(every clip in its val split) and scores every model there too; no setting is chosen on it.

Runs already on disk (a ``config.json`` in the output folder) are reused, so an interrupted record
resumes. The demo's dataset and tiny models must exist (``make demo``, or the Makefile target
builds them).

    python -m evaluate.record --seeds 0 1 2 --work work/record --out records/rl_record.md
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from core.logs import configure_logging
from evaluate.generate import DEFAULT_MAX_NEW_TOKENS
from evaluate.description_forcing import OUTPUT_FILE as FORCING_FILE
from evaluate.description_forcing import force_descriptions
from evaluate.label_signal import signal_of_model
from evaluate.metrics import description_metrics
from evaluate.paired_bootstrap import Interval, compare
from evaluate.r1_headroom import headroom_of_predictions
from evaluate.run import PREDICTIONS_FILE, evaluate_model, load_predictions

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "work/dataset"
DEFAULT_CLIP = "local-dir:work/models/tiny-clip-trained"
CONTROL_RECIPE = "recipes/sft/sft_control_demo.yaml"
# Margin the issue allows a stage to lose on F1_all against the stage before.
F1_TOLERANCE = 0.01
SCHEMA_VALID_TARGET = 0.99
# A stage whose start is within this of what the reference answers score may hold its reward
# instead of raising it (the "or holds it where the start is already within 0.01 of the maximum").
HOLD_MARGIN = 0.01
REFERENCE_COLUMN = "answer_json"
CHECKPOINT_CLIPS = 64  # val clips scored per stage-1 checkpoint for the R1-vs-steps plot
CURVE_POINTS = 5  # checkpoints per stage-1 run
LABEL_SIGNAL_FILE = "label_signal.json"  # beside the start model's evaluation, so a record resumes


@dataclass(frozen=True)
class EvalSet:
    """A split the record scores every model on: the demo's val, or a held-out world's."""

    name: str  # as the record names it
    dataset: str
    split: str
    folder: str  # each seed's evaluations go to <seed root>/<folder>/<run name>


@dataclass(frozen=True)
class Run:
    name: str
    module: str
    recipe: str
    start: str | None = None  # the run whose output this one starts from
    extra: tuple[str, ...] = ()
    rl: bool = True
    curve: bool = False  # save checkpoints and plot R1 on val against steps
    null_of: str | None = None  # the run this one repeats under the null-reward control


def null_control(run: Run) -> Run:
    """``run`` again with every reward scored against another clip (``reward_control: true``)."""
    return Run(f"{run.name}_null", run.module, run.recipe, run.start, (*run.extra, "--reward_control", "true"),
               curve=run.curve, null_of=run.name)


STAGE1 = Run("stage1", "recipes.stage1.stage1", "recipes/stage1/stage1_demo.yaml", "sft", curve=True)
STAGE2 = Run("stage2", "recipes.stage2.stage2", "recipes/stage2/stage2_demo.yaml", "stage1")
STAGE3 = Run("stage3", "recipes.stage3.stage3", "recipes/stage3/stage3_demo.yaml", "stage2")
RUNS = (
    Run("sft", "recipes.sft.sft", "recipes/sft/sft_demo.yaml", rl=False),
    STAGE1,
    Run("stage1_grpo", STAGE1.module, STAGE1.recipe, "sft", ("--algorithm", "grpo"), curve=True),
    null_control(STAGE1),
    STAGE2,
    null_control(STAGE2),
    STAGE3,
    null_control(STAGE3),
    Run("sft_control", "recipes.sft.sft", CONTROL_RECIPE, "sft", rl=False),
)
CHAIN = ("sft", "stage1", "stage2", "stage3")
# The models whose labels are also read after the reference description (the chain's two ends).
FORCED_RUNS = (CHAIN[0], CHAIN[-1])
# The RL run whose start model's label signal the record shows.
SIGNAL_RUN = next(run for run in RUNS if run.name == "stage2")
METRICS = (
    ("act F1_all", lambda m: m["actions"]["f1_all"]),
    ("expl F1_all", lambda m: m["reasons"]["f1_all"]),
    ("act mF1", lambda m: m["actions"]["mf1"]),
    ("expl mF1", lambda m: m["reasons"]["mf1"]),
    ("schema-valid", lambda m: m["schema_valid_rate"]),
    ("CLIP score", lambda m: m["clip_score"]),
    ("description = reference", lambda m: m["description"]["exact_match"]),
)


# The (start, end) pairs whose F1_all differences get an interval over clips: every run against the
# model it starts from, every RL stage against its null control, and the chain's end against SFT.
COMPARISONS = (*((run.start, run.name) for run in RUNS if run.start),
               *((run.name, run.null_of) for run in RUNS if run.null_of),
               (CHAIN[0], CHAIN[-1]))


# ---------------------------------------------------------------------------------------------
# Training


def read_recipe(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def rl_prompts_seen(recipe: Mapping[str, Any]) -> int:
    """Clips an RL stage trains on: steps x prompts per step (completions / generations)."""
    per_step = recipe["per_device_train_batch_size"] * recipe.get("gradient_accumulation_steps", 1)
    return int(recipe["max_steps"]) * per_step // recipe["num_generations"]


def control_steps() -> int:
    """SFT steps that show the control as many clips as the chain's RL stages see."""
    seen = sum(rl_prompts_seen(read_recipe(r.recipe)) for r in RUNS if r.name in CHAIN and r.rl)
    batch = read_recipe(CONTROL_RECIPE)["per_device_train_batch_size"]
    return max(1, round(seen / batch))


def train(run: Run, seed: int, root: Path, dataset: str) -> Path:
    out = root / run.name
    if (out / "config.json").is_file():
        logger.info("%s exists: reusing it", out)
        return out
    command = [sys.executable, "-m", run.module, "--config", run.recipe, "--seed", str(seed),
               "--output_dir", str(out), "--dataset_path", dataset, *run.extra]
    if run.start:
        command += ["--model_name_or_path", str(root / run.start)]
    if run.name == "sft_control":
        command += ["--max_steps", str(control_steps())]
    if run.curve:
        steps = int(read_recipe(run.recipe)["max_steps"])
        command += ["--save_strategy", "steps", "--save_steps", str(max(1, steps // CURVE_POINTS))]
    logger.info("training %s (seed %d): %s", run.name, seed, " ".join(command))
    subprocess.run(command, check=True)
    return out


# ---------------------------------------------------------------------------------------------
# Scoring


def stage_reward(recipe: Mapping[str, Any], texts: Sequence[str], data: Any) -> float:
    """Mean over clips of the stage's own reward: sum_i weight_i * reward_i(answer), as in training
    (TRL's per-group normalisation has no meaning for one greedy answer per clip)."""
    from rewards.registry import resolve_rewards

    funcs, weights = resolve_rewards(recipe["reward_funcs"], recipe.get("reward_weights"), recipe.get("reward_params"))
    weights = weights or [1.0] * len(funcs)
    columns = {name: list(data[name]) for name in ("id", "actions", "reasons", "description") if name in data.column_names}
    columns["images"] = list(data["frames"])
    total = [0.0] * len(texts)
    for func, weight in zip(funcs, weights):
        for i, value in enumerate(func(list(texts), **columns)):
            total[i] += weight * (0.0 if value is None else value)
    return sum(total) / len(total)


def evaluate(model_dir: Path, out: Path, dataset: str, clip: str | None, max_samples: int | None = None,
             gallery_size: int = 12, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, split: str = "val") -> dict:
    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        if "description" not in metrics:  # an evaluation made before the metric existed: from its answers
            records = load_predictions(out)
            metrics["description"] = description_metrics([r["parsed"]["description"] for r in records],
                                                         [r["truth"]["description"] for r in records])
        return metrics
    return evaluate_model(str(model_dir), dataset, split, str(out), label=model_dir.name, clip_model=clip,
                          max_samples=max_samples, progress=False, gallery_size=gallery_size,
                          max_new_tokens=max_new_tokens)


def own_rewards(eval_root: Path, dataset: str, split: str = "val") -> dict[str, dict[str, float]]:
    """Per RL run: its own reward on the greedy answers (under ``eval_root``) of its start model and
    of itself, and on the dataset's reference answers (the truthful, complete answer: the top of R2
    and R3; for R1, what the true description scores, the most a truthful description is owed)."""
    from evaluate.generate import load_eval_split

    data = load_eval_split(dataset, split, None)
    texts = {run.name: _texts(eval_root / run.name) for run in RUNS}
    out = {}
    for run in RUNS:
        if not run.rl:
            continue
        recipe = read_recipe(run.recipe)
        out[run.name] = {"before": stage_reward(recipe, texts[run.start], data),
                         "after": stage_reward(recipe, texts[run.name], data),
                         "reference": stage_reward(recipe, list(data[REFERENCE_COLUMN]), data)}
    return out


def stage_label_signal(root: Path, dataset: str, seed: int) -> dict:
    """:mod:`evaluate.label_signal` of ``SIGNAL_RUN``'s start model, sampled as that stage samples."""
    cache = root / "eval" / SIGNAL_RUN.start / LABEL_SIGNAL_FILE
    if cache.is_file():
        return json.loads(cache.read_text())
    signal = signal_of_model(str(root / SIGNAL_RUN.start), dataset, "val", SIGNAL_RUN.recipe, seed=seed)
    cache.write_text(json.dumps(signal, indent=1))
    return signal


def forced_labels(model_dir: Path, eval_dir: Path, dataset: str, split: str) -> dict:
    """:mod:`evaluate.description_forcing` of one evaluated model, read back when already written."""
    cache = eval_dir / FORCING_FILE
    if cache.is_file():
        return json.loads(cache.read_text())
    return force_descriptions(str(model_dir), str(eval_dir), dataset, split)


def _texts(eval_dir: Path) -> list[str]:
    return [record["text"] for record in load_predictions(eval_dir)]


def r1_curve(run: Run, root: Path, dataset: str, clip: str) -> list[tuple[int, float]]:
    """(step, the run's own reward on the first val clips) for its start model (step 0) and every
    checkpoint of the run (stage 1: R1)."""
    from evaluate.generate import load_eval_split

    recipe, run_dir, eval_root = read_recipe(run.recipe), root / run.name, root / "eval"
    start_eval = eval_root / run.start
    data = load_eval_split(dataset, "val", CHECKPOINT_CLIPS)
    points = [(0, stage_reward(recipe, _texts(start_eval)[:CHECKPOINT_CLIPS], data))]
    for checkpoint in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(checkpoint.name.split("-")[1])
        out = eval_root / f"{run_dir.name}-{checkpoint.name}"
        evaluate(checkpoint, out, dataset, clip, CHECKPOINT_CLIPS, gallery_size=0)
        points.append((step, stage_reward(recipe, _texts(out), data)))
    return points


# ---------------------------------------------------------------------------------------------
# The record


@dataclass
class Spread:
    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def range(self) -> float:
        return max(self.values) - min(self.values)

    def __str__(self) -> str:
        if len(self.values) == 1:
            return f"{self.values[0]:.4f}"
        return f"{self.mean:.4f} [{min(self.values):.4f}, {max(self.values):.4f}]"


def spread(per_seed: Sequence[Mapping], get) -> Spread:
    return Spread([float(get(m)) for m in per_seed])


def paired(before: Spread, after: Spread) -> str:
    """The per-seed changes (each seed's stage against its own start): seeds differ in their SFT
    model too, so these show what a stage does better than the spread of the means."""
    return " / ".join(f"{a - b:+.4f}" for b, a in zip(before.values, after.values))


def checks(metrics: Mapping[str, list[dict]], rewards: Mapping[str, list[dict]],
           where: str = "val") -> list[tuple[bool, str]]:
    """The issue's done-when lines, each (met, what was measured), on the evaluation set ``where``."""
    out = []
    for stage in CHAIN[1:]:
        before = Spread([r["before"] for r in rewards[stage]])
        after = Spread([r["after"] for r in rewards[stage]])
        gain, noise = after.mean - before.mean, max(before.range, after.range)
        measured = (f"{before} -> {after} (gain {gain:+.4f}, seed range {noise:.4f}; per seed "
                    f"{paired(before, after)})")
        references = [r["reference"] for r in rewards[stage] if "reference" in r]
        top = sum(references) / len(references) if references else None
        if top is not None and before.mean >= top - HOLD_MARGIN and gain <= noise:  # may hold instead
            out.append((gain >= -noise, f"{stage} holds its own reward on {where}, its start being within {HOLD_MARGIN} "
                                        f"of the reference answers' {top:.4f} or above: {measured}"))
        else:
            out.append((gain > noise, f"{stage} raises its own reward on {where}: {measured}"))
    for previous, stage in zip(CHAIN, CHAIN[1:]):
        for name, get in METRICS[:2]:
            drop = spread(metrics[previous], get).mean - spread(metrics[stage], get).mean
            out.append((drop <= F1_TOLERANCE, f"{stage} vs {previous}, {name}: change {-drop:+.4f} "
                                               f"(per seed {paired(spread(metrics[previous], get), spread(metrics[stage], get))}; "
                                               f"may not fall by more than {F1_TOLERANCE})"))
    final, sft = CHAIN[-1], CHAIN[0]
    for name, get in METRICS[:2]:
        a, b = spread(metrics[final], get), spread(metrics[sft], get)
        gain, noise = a.mean - b.mean, max(a.range, b.range)
        out.append((gain > noise, f"{final} beats sft on {name}: {b} -> {a} (gain {gain:+.4f}, seed range {noise:.4f}; "
                                  f"per seed {paired(b, a)})"))
    for name, get in METRICS[2:4]:
        a, b = spread(metrics[final], get), spread(metrics[sft], get)
        out.append((a.mean >= b.mean, f"{final} {name} not below sft's: {b} -> {a}"))
    valid = spread(metrics[final], METRICS[4][1])
    out.append((min(valid.values) >= SCHEMA_VALID_TARGET, f"{final} schema-valid >= {SCHEMA_VALID_TARGET:.0%}: {valid}"))
    a, b = spread(metrics["stage1"], METRICS[5][1]), spread(metrics["sft"], METRICS[5][1])
    out.append((a.mean > b.mean, f"stage1 CLIP score above sft's ({where}): {b} -> {a}"))
    return out


def plot_curves(curves: Mapping[str, list[list[tuple[int, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, per_seed in curves.items():
        xs = [step for step, _ in per_seed[0]]
        rows = [[value for _, value in seed] for seed in per_seed]
        means = [sum(col) / len(col) for col in zip(*rows)]
        ax.plot(xs, means, marker="o", label=name)
        ax.fill_between(xs, [min(c) for c in zip(*rows)], [max(c) for c in zip(*rows)], alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"R1 on val (first {CHECKPOINT_CLIPS} clips, greedy)")
    ax.set_title("Stage 1 (mean and range over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


HEADROOM_ROWS = (
    ("SFT's descriptions", "model"),
    ("the reference descriptions", "reference"),
    ("the empty text, R1(I, \"\")", "empty"),
    ("another clip's reference description", "other_clip"),
    ("per clip, the best of the train descriptions", "best_train_description"),
    ("share of clips whose best train description is their own reference", "best_is_reference"),
    ("among the clips where SFT's description is wrong, the share where CLIP prefers the reference", "prefers_reference"),
)


def render_headroom(headroom: Sequence[Mapping]) -> list[str]:
    """What R1 can pay stage 1 for (:mod:`evaluate.r1_headroom` on each seed's SFT val answers)."""
    lines = ["## What R1 can pay stage 1 for (`evaluate/r1_headroom.py`, each seed's SFT model, val)", "",
             "| CLIP cosine of | mean [range] over seeds |", "|---|---|"]
    for label, key in HEADROOM_ROWS:
        values = [h[key] for h in headroom if h.get(key) is not None]
        lines.append(f"| {label} | {Spread(values) if values else 'n/a'} |")
    differs = Spread([h["model_differs"] for h in headroom])
    lines += ["", f"SFT's description differs from the reference on {differs.mean:.0f} of {headroom[0]['clips']} val "
              "clips on average. Stage 1 can raise R1 honestly only where CLIP prefers the true description "
              "to the model's wrong one; where that share is near or below one half, a description R1 likes "
              "more is no truer, and the room above SFT is CLIP's own error.", ""]
    return lines


def render_forcing(forcing: Mapping[str, Sequence[Mapping]], evalset: str) -> list[str]:
    """Each model's labels as it said them and after the reference description (mean [range])."""
    lines = [f"## The labels after the reference description ({evalset}; `evaluate/description_forcing.py`)", "",
             "| model | clips described wrong | act F1_all: own -> forced | expl F1_all: own -> forced "
             "| act mF1: own -> forced | expl mF1: own -> forced |", "|---|---|---|---|---|---|"]
    for name, results in forcing.items():
        wrong = [r["described_wrong"] for r in results]
        cells = [f"{sum(wrong) / len(wrong):.0f} of {results[0]['clips']} [{min(wrong)}, {max(wrong)}]"]
        for group, metric in (("actions", "f1_all"), ("reasons", "f1_all"), ("actions", "mf1"), ("reasons", "mf1")):
            own, forced = (Spread([r[key][group][metric] for r in results]) for key in ("own", "forced"))
            cells.append(f"{own} -> {forced}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + ["", "Each clip whose greedy description is wrong is decoded again with the reference "
                    "description forced in its place; the labels that follow are scored. The reference "
                    "descriptions name what the labels follow from, so the forced figures are no reachable "
                    "gain: they show how much of the label error is in what the description says.", ""]


def render_label_signal(signals: Sequence[Mapping], metrics: Mapping[str, list[dict]]) -> list[str]:
    """Per label: the signal in ``SIGNAL_RUN``'s samples (mean over seeds) beside its F1 before and after."""
    run = SIGNAL_RUN
    lines = [f"## What {run.name}'s reward can teach, label by label (`evaluate/label_signal.py`, each seed's "
             f"{run.start} model sampled as {run.name} samples, val)", "",
             f"| label | val clips where true | hit rate | false-alarm rate | lift | F1 {run.start} -> {run.name} |",
             "|---|---|---|---|---|---|"]

    def mean(values, digits: int = 3) -> str:
        values = [v for v in values if v is not None]
        return f"{sum(values) / len(values):.{digits}f}" if values else "–"

    for group in ("actions", "reasons"):
        for name, first in signals[0][group].items():
            rows = [signal[group][name] for signal in signals]
            f1 = [mean(m[group]["per_class"][name] for m in metrics[key]) for key in (run.start, run.name)]
            lines.append(f"| {name} | {first['positives']} | {mean(r['hit_rate'] for r in rows)} | "
                         f"{mean(r['false_alarm_rate'] for r in rows)} | {mean((r['lift'] for r in rows), 1)} | "
                         f"{f1[0]} -> {f1[1]} |")
    lines += ["", "Hit rate: the share of a clip's sampled answers that say the label, on the clips where it is "
              "true; false-alarm rate: the same on the other clips; lift: their ratio (– where no sample says "
              "it on a false clip). GRPO can only move a label towards the truth where its samples find it "
              "(hit rate above 0) more often where it is true (lift above 1); near 1 the model does not see "
              "it in the frames, and RL on the language side cannot teach it.", ""]
    return lines


@dataclass
class Scores:
    """What the record measured on one evaluation set: per run, one entry per seed."""

    evalset: EvalSet
    metrics: dict[str, list[dict]]
    rewards: dict[str, list[dict]]
    intervals: dict[tuple[str, str], dict[str, Interval]] = field(default_factory=dict)  # per COMPARISONS pair

    @property
    def clips(self) -> int:
        """Clips scored (every model sees the same split)."""
        return self.metrics[RUNS[0].name][0]["actions"]["n_samples"]

    def checks(self) -> list[tuple[bool, str]]:
        return checks(self.metrics, self.rewards, self.evalset.name)


def render_scores(scores: Scores) -> list[str]:
    """The every-model table and the own-reward table on one evaluation set."""
    where = f"{scores.evalset.name}, {scores.clips} clips"
    lines = [f"## Every model ({where})", "",
             "| model | " + " | ".join(name for name, _ in METRICS) + " |",
             "|---" * (len(METRICS) + 1) + "|"]
    for run in RUNS:
        row = [str(spread(scores.metrics[run.name], get)) for _, get in METRICS]
        lines.append(f"| {run.name} | " + " | ".join(row) + " |")
    lines += ["", f"## Each RL stage's own reward ({where}; its YAML's rewards and weights, on the greedy answers)", "",
              "| stage | starts from | before | after | reference answers |", "|---|---|---|---|---|"]
    for run in RUNS:
        if run.rl:
            before, after, reference = (Spread([r[key] for r in scores.rewards[run.name]])
                                        for key in ("before", "after", "reference"))
            lines.append(f"| {run.name} | {run.start} | {before} | {after} | {reference} |")
    return lines + [""]


def render_controls(scores: Scores) -> list[str]:
    """Each RL stage beside its null control: the control's change is what sampled updates do with a
    reward that knows nothing of the clip; the stage minus the control is what its reward's
    information adds. Each cell: the mean change, then each seed's."""
    def change(before: Spread, after: Spread) -> str:
        return f"{after.mean - before.mean:+.4f} ({paired(before, after)})"

    def reward(name: str, key: str) -> Spread:
        return Spread([r[key] for r in scores.rewards[name]])

    lines = [f"## Each RL stage against its null control ({scores.evalset.name}, {scores.clips} clips)", "",
             "| stage | own reward: control's change | own reward: stage's change | own reward: stage − control "
             "| act F1_all: stage − control | expl F1_all: stage − control |", "|---|---|---|---|---|---|"]
    for control in (run for run in RUNS if run.null_of):
        stage = control.null_of
        cells = [change(reward(control.name, "before"), reward(control.name, "after")),
                 change(reward(stage, "before"), reward(stage, "after")),
                 change(reward(control.name, "after"), reward(stage, "after"))]
        cells += [change(spread(scores.metrics[control.name], get), spread(scores.metrics[stage], get))
                  for name, get in METRICS if name in ("act F1_all", "expl F1_all")]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return lines + [""]


def clip_intervals(eval_dirs: Mapping[str, Sequence[Path]]) -> dict[tuple[str, str], dict[str, Interval]]:
    """Per COMPARISONS pair, the act and expl F1_all difference (end − start, mean over seeds) with
    its interval over clips (evaluate/paired_bootstrap.py), from each run's per-seed evaluation
    folders ``eval_dirs[run]`` (every folder of one evaluation set: the same clips)."""
    predictions = {name: [load_predictions(d) for d in dirs] for name, dirs in eval_dirs.items()}
    return {(start, end): compare(predictions[start], predictions[end]) for start, end in COMPARISONS}


def render_intervals(scores: Scores) -> list[str]:
    """Each comparison's F1_all differences with their intervals over clips, beside the per-seed values."""
    some = next(iter(next(iter(scores.intervals.values())).values()))
    lines = [f"## Which differences the clips can tell from none ({scores.evalset.name}, {scores.clips} clips)", "",
             f"End − start in F1_all, mean over seeds, then its {some.level:.0%} interval over clips "
             "(`python -m evaluate.paired_bootstrap`: the clips drawn again with replacement, the same draw for "
             "both models, each clip's difference averaged over the seeds first), then each seed's difference. "
             "The seeds share the clips, so the per-seed values can agree in sign and still sit inside the "
             "clips' interval; an interval that holds 0 is a difference these clips cannot tell from none, and "
             "one that does not is in bold.", "",
             "| start -> end | act F1_all [interval] | act per seed | expl F1_all [interval] | expl per seed |",
             "|---|---|---|---|---|"]
    def told(interval: Interval) -> str:
        return f"**{interval}**" if interval.excludes_zero else str(interval)

    for (start, end), by_group in scores.intervals.items():
        cells = [cell for name in ("act", "expl")
                 for cell in (told(by_group[name]), by_group[name].seeds)]
        lines.append(f"| {start} -> {end} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_per_label(scores: Scores) -> list[str]:
    """Per label, every model's F1 on one evaluation set (mean over seeds): which labels each stage moves."""
    lines = [f"## F1 per label ({scores.evalset.name}, {scores.clips} clips, mean over seeds)", "",
             "| label | " + " | ".join(run.name for run in RUNS) + " |", "|---" * (len(RUNS) + 1) + "|"]
    for group in ("actions", "reasons"):
        for label in scores.metrics[RUNS[0].name][0][group]["per_class"]:
            means = [spread(scores.metrics[run.name], lambda m: m[group]["per_class"][label]).mean for run in RUNS]
            lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    return lines + [""]


def render(seeds, scores: Sequence[Scores], curves_file: str, command: str, headroom=(), signals=(),
           forcing: Mapping[str, Sequence[Mapping]] | None = None) -> str:
    sets = " and ".join(f"{s.evalset.name} ({s.clips} clips)" for s in scores)
    lines = [
        "# RL learning record", "",
        f"Made by `{command}` on the synthetic world and the tiny models of `make demo` (2 CPU cores). "
        f"Every figure: greedy decoding on {sets}, mean over seeds {', '.join(map(str, seeds))} with the "
        f"range [min, max]. Nothing here is selected on test{' or on the held-out world' if len(scores) > 1 else ''}.", "",
    ]
    for score in scores:
        lines += render_scores(score)
    for score in scores:
        lines += render_controls(score)
    for score in scores:
        if score.intervals:
            lines += render_intervals(score)
    lines += ["`stage1_grpo`: stage 1 trained by critic-free GRPO (same reward, steps and seeds) instead of "
              "the actor-critic; `<stage>_null`: the stage as in its recipe, from the same start, but with "
              "every reward scored against another clip of the batch (`reward_control: true`): the same "
              "updates with rewards that carry no information about the clip, so what a stage does beyond "
              "its control is its reward's doing; "
              "`sft_control`: the SFT model trained further by SFT on as many clips as the "
              "three RL stages see. Reference answers: the dataset's own answers (the truthful, complete "
              "answer, the top of R2 and R3; for R1 what the true description scores)."]
    lines += ["", f"![R1 on val against steps]({curves_file})", ""]
    if headroom:
        lines += render_headroom(headroom)
    if signals:
        lines += render_label_signal(signals, scores[0].metrics)
    lines += render_per_label(scores[-1])  # the largest set: the held-out world where there is one
    if forcing:
        lines += render_forcing(forcing, scores[-1].evalset.name)
    for score in scores:
        lines += [f"## The RL issue's targets on {score.evalset.name} ({score.clips} clips)", ""]
        lines += [f"- {'met' if ok else '**missed**'}: {text}" for ok, text in score.checks()] + [""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", default="work/record", help="where the runs and evaluations go")
    parser.add_argument("--dataset", default=DEFAULT_DATASET)
    parser.add_argument("--holdout", default=None,
                        help="a prepared DatasetDict of another world no model trains on: every model is scored "
                             "on its --holdout-split too, and the targets are checked there as well")
    parser.add_argument("--holdout-split", default="val")
    parser.add_argument("--clip-model", default=DEFAULT_CLIP, help="CLIP for the CLIP score (R1's model)")
    parser.add_argument("--out", default="records/rl_record.md")
    args = parser.parse_args(argv)
    configure_logging()

    evalsets = [EvalSet("val", args.dataset, "val", "eval")]
    if args.holdout:
        evalsets.append(EvalSet("the held-out world", args.holdout, args.holdout_split, "eval-holdout"))
    scores = [Scores(e, {run.name: [] for run in RUNS}, {run.name: [] for run in RUNS if run.rl}) for e in evalsets]
    curves: dict[str, list] = {run.name: [] for run in RUNS if run.curve}
    headroom: list[dict] = []
    signals: list[dict] = []
    forcing: dict[str, list[dict]] = {name: [] for name in FORCED_RUNS}
    largest = evalsets[-1]  # the held-out world where there is one
    for seed in args.seeds:
        root = Path(args.work) / f"seed{seed}"
        for run in RUNS:
            model_dir = train(run, seed, root, args.dataset)
            for score in scores:
                e = score.evalset
                score.metrics[run.name].append(evaluate(model_dir, root / e.folder / run.name, e.dataset,
                                                        args.clip_model, split=e.split))
        for score in scores:
            e = score.evalset
            for name, value in own_rewards(root / e.folder, e.dataset, e.split).items():
                score.rewards[name].append(value)
        headroom.append(headroom_of_predictions(root / "eval" / "sft" / PREDICTIONS_FILE, args.dataset, "val",
                                                args.clip_model))
        signals.append(stage_label_signal(root, args.dataset, seed))
        for name in FORCED_RUNS:
            forcing[name].append(forced_labels(root / name, root / largest.folder / name, largest.dataset, largest.split))
        for run in RUNS:
            if run.curve:
                curves[run.name].append(r1_curve(run, root, args.dataset, args.clip_model))

    for score in scores:
        score.intervals = clip_intervals({run.name: [Path(args.work) / f"seed{seed}" / score.evalset.folder / run.name
                                                     for seed in args.seeds] for run in RUNS})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    curves_file = out.with_suffix(".r1_curve.png")
    plot_curves({"actor-critic": curves["stage1"], "GRPO": curves["stage1_grpo"],
                 "actor-critic, null reward": curves["stage1_null"]}, curves_file)
    command = "make rl-record SEEDS=\"" + " ".join(map(str, args.seeds)) + "\""
    out.write_text(render(args.seeds, scores, curves_file.name, command, headroom, signals, forcing))
    raw = {"seeds": args.seeds, "curves": curves, "r1_headroom": headroom, "label_signal": signals,
           "description_forcing": forcing,
           "sets": {s.evalset.name: {"dataset": s.evalset.dataset, "split": s.evalset.split, "clips": s.clips,
                                     "rewards": s.rewards,
                                     "clip_intervals": [{"start": a, "end": b, **{k: asdict(v) for k, v in i.items()}}
                                                        for (a, b), i in s.intervals.items()],
                                     "metrics": {k: [{n: get(m) for n, get in METRICS} for m in v]
                                                 for k, v in s.metrics.items()}}
                    for s in scores}}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=2))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
