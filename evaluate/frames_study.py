"""How many frames (``make frames-study``): does the model answer better when it sees more of the clip?

For every setting (M frames per clip, every ``stride``-th frame) and seed it prepares the dataset
from a BDD-OIA release root (the synthetic world or a real preparation) with ``data_prep.prepare
--frames M --stride S``, trains SFT through its real entry point with the demo recipe (same recipe,
steps and seed for every setting: only the frames change), evaluates the model greedily on the val
split, and writes a record: a table of act/expl F1_all and mF1 per setting (mean and range over
seeds) with the image tokens per sample and the step time beside them, the per-class F1 of the
classes to watch, and a plot of the four metrics against M.

Image tokens per sample come from the trained model's processor on the first train sample
(:func:`core.prompt.tokens_per_sample`, what the SFT script logs); step time is the trainer's
``train_runtime`` over its steps (``trainer_state.json``). Runs, datasets and evaluations already on
disk are reused, so an interrupted study resumes.

    python -m evaluate.frames_study --root work/synth-bddoia --model work/models/tiny-smolvlm \\
        --frames 1 2 4 8 --strides 1 2 --seeds 0 1 --work work/frames-study --out records/frames_study.md
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from datasets import load_from_disk
from transformers import AutoProcessor

from core.logs import configure_logging
from core.prompt import tokens_per_sample
from data_prep.prepare import prepare
from data_prep.synth import CONFIG_FILE, SceneFacts, WorldConfig, load_truth, temporal_reasons
from evaluate.generate import DEFAULT_MAX_NEW_TOKENS
from evaluate.record import METRICS, Spread, evaluate, read_recipe, spread

logger = logging.getLogger(__name__)

DEFAULT_RECIPE = "recipes/sft/sft_demo.yaml"
DEFAULT_FRAMES = (1, 2, 4, 8)
DEFAULT_STRIDES = (1,)
DEFAULT_SEEDS = (0, 1)
# The image size the demo prepares (the Makefile's IMAGE_SIZE): the tiny model's input.
DEFAULT_IMAGE_SIZE = 64
# The classes whose cause the temporal synthetic world shows only across frames.
DEFAULT_WATCH = ("front_car_turning_left", "front_car_turning_right", "obstacle_person", "left", "right")
F1_METRICS = METRICS[:4]  # act F1_all, expl F1_all, act mF1, expl mF1


@dataclass(frozen=True)
class Setting:
    frames: int
    stride: int

    @property
    def name(self) -> str:
        return f"M{self.frames}-stride{self.stride}"


def settings(frames: Sequence[int], strides: Sequence[int],
             stride_frames: Sequence[int] | None = None) -> list[Setting]:
    """Every M at stride 1, then each other stride for each M in `stride_frames` (default: every
    M > 1; one frame has no stride)."""
    strided = [m for m in (frames if stride_frames is None else stride_frames) if m > 1]
    return [Setting(m, 1) for m in frames] + [Setting(m, s) for s in strides if s != 1 for m in strided]


def prepare_dataset(args: argparse.Namespace, setting: Setting, out: Path) -> Path:

    # prepare() is a no-op when `out` already holds this preparation of these inputs.
    prepare(args.root, out, frames=setting.frames, stride=setting.stride, image_size=args.image_size,
            num_proc=args.num_proc, frames_dir=args.frames_dir, videos_dir=args.videos_dir)
    return out


def train(recipe: str, model: str, dataset: Path, out: Path, seed: int, extra: Sequence[str]) -> Path:
    if (out / "config.json").is_file():
        logger.info("%s exists: reusing it", out)
        return out
    command = [sys.executable, "-m", "recipes.sft.sft", "--config", recipe, "--model_name_or_path", model,
               "--dataset_path", str(dataset), "--output_dir", str(out), "--seed", str(seed), *extra]
    logger.info("training: %s", " ".join(command))
    subprocess.run(command, check=True)
    return out


def step_seconds(run_dir: Path) -> float:
    """The trainer's own train_runtime over its optimizer steps."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    summary = next(entry for entry in reversed(state["log_history"]) if "train_runtime" in entry)
    return float(summary["train_runtime"]) / max(int(state["global_step"]), 1)


def image_tokens(run_dir: Path, dataset: Path) -> int:
    """Image tokens of one sample, as the trained model's processor builds its input."""

    row = load_from_disk(str(dataset))["train"][0]
    processor = AutoProcessor.from_pretrained(str(run_dir))
    sample = {"prompt": row["prompt"], "images": row["frames"], "completion": row["completion"]}
    return tokens_per_sample(processor, sample)["image_tokens"]


# ---------------------------------------------------------------------------------------------
# The record


def collect(runs: Mapping[str, list[dict]], watch: Sequence[str]) -> dict[str, dict]:
    """Per setting: each F1 metric, each watched class's F1, image tokens and step time, as Spreads."""
    out = {}
    for name, per_seed in runs.items():
        row = {metric: spread([r["metrics"] for r in per_seed], get) for metric, get in F1_METRICS}
        for cls in watch:
            row[cls] = Spread([_class_f1(r["metrics"], cls) for r in per_seed])
        row["image tokens"] = Spread([r["image_tokens"] for r in per_seed])
        row["s/step"] = Spread([r["step_seconds"] for r in per_seed])
        out[name] = row
    return out


def _class_f1(metrics: Mapping, cls: str) -> float:
    for group in ("actions", "reasons"):
        if cls in metrics[group]["per_class"]:
            return metrics[group]["per_class"][cls]
    raise KeyError(f"no class {cls!r} in the evaluation's per-class F1 (actions or reasons)")


def constant_floor(runs: Mapping[str, list[dict]]) -> str:
    """The best constant prediction on the scored val clips (the evaluation computes it): a model
    below it has learnt nothing beyond the label frequencies."""
    baseline = next(iter(runs.values()))[0]["metrics"].get("baseline")
    if not baseline:
        return ""
    return (f"Best constant prediction on the same val clips: act F1_all {baseline['actions']['f1_all']:.4f}, "
            f"expl F1_all {baseline['reasons']['f1_all']:.4f}, act mF1 {baseline['actions']['mf1']:.4f}, "
            f"expl mF1 {baseline['reasons']['mf1']:.4f}.")


def plot(setting_list: Sequence[Setting], rows: Mapping[str, dict], path: Path, title: str,
         baseline: Mapping | None = None) -> None:
    """One panel per F1 metric against M, a line per stride (mean, range shaded), and the best
    constant prediction as a grey line when `baseline` (the evaluation's) is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(F1_METRICS), figsize=(4 * len(F1_METRICS), 3.6), sharex=True)
    for ax, (metric, _) in zip(axes, F1_METRICS):
        for stride in sorted({s.stride for s in setting_list}):
            line = [s for s in setting_list if s.stride == stride or (s.frames == 1 and stride != 1)]
            line = sorted({s.frames: s for s in line}.values(), key=lambda s: s.frames)
            values = [rows[s.name][metric] for s in line]
            xs = [s.frames for s in line]
            ax.plot(xs, [v.mean for v in values], marker="o", label=f"stride {stride}")
            ax.fill_between(xs, [min(v.values) for v in values], [max(v.values) for v in values], alpha=0.2)
        if baseline:
            ax.axhline(F1_METRICS[[m for m, _ in F1_METRICS].index(metric)][1](baseline), color="grey",
                       linestyle="--", label="best constant")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({s.frames for s in setting_list}), [str(m) for m in sorted({s.frames for s in setting_list})])
        ax.set_xlabel("frames per clip (M)")
        ax.set_title(metric)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(title: str, setting_list: Sequence[Setting], rows: Mapping[str, dict], watch: Sequence[str],
           seeds: Sequence[int], plot_file: str, command: str, sizing: str, floor: str = "") -> str:
    head = [metric for metric, _ in F1_METRICS] + ["image tokens / sample", "s / step"]
    lines = [
        f"# {title}", "",
        f"Made by `{command}`. {sizing} Every figure: greedy decoding on the val split, mean over "
        f"seeds {', '.join(map(str, seeds))} with the range [min, max].", "",
        "| M | stride | " + " | ".join(head) + " |", "|---|---" * 1 + "|---" * len(head) + "|",
    ]
    for s in setting_list:
        row = rows[s.name]
        cells = [str(row[m]) for m, _ in F1_METRICS]
        cells += [f"{row['image tokens'].mean:.0f}", f"{row['s/step'].mean:.3f}"]
        lines.append(f"| {s.frames} | {s.stride} | " + " | ".join(cells) + " |")
    lines += ["", floor] if floor else []
    lines += ["", "Per-class F1 of the classes to watch (the temporal world decides these across frames):", "",
              "| M | stride | " + " | ".join(watch) + " |", "|---|---" + "|---" * len(watch) + "|"]
    for s in setting_list:
        lines.append(f"| {s.frames} | {s.stride} | " + " | ".join(str(rows[s.name][c]) for c in watch) + " |")
    lines += ["", f"![F1 against frames per clip]({plot_file})"]
    return "\n".join(lines) + "\n"


def run_study(args: argparse.Namespace) -> dict[str, list[dict]]:
    work = Path(args.work)
    runs: dict[str, list[dict]] = {}
    # Seed by seed, so an interrupted study already holds every setting of the first seeds.
    for seed in args.seeds:
        for setting in settings(args.frames, args.strides, args.stride_frames):
            dataset = prepare_dataset(args, setting, work / "data" / setting.name)
            run_dir = train(args.recipe, args.model, dataset, work / "runs" / f"{setting.name}-seed{seed}",
                            seed, args.train_args)
            metrics = evaluate(run_dir, work / "eval" / f"{setting.name}-seed{seed}", str(dataset), None,
                               args.max_eval_samples, gallery_size=0, max_new_tokens=args.max_new_tokens)
            runs.setdefault(setting.name, []).append({
                "seed": seed, "metrics": metrics, "image_tokens": image_tokens(run_dir, dataset),
                "step_seconds": step_seconds(run_dir), "train_clips": split_size(dataset, "train"),
            })
    return runs


def temporal_share(root: str, dataset: Path, max_samples: int | None) -> str:
    """For a synthetic world: how many of the scored val clips hold a reason whose only cause lies
    in earlier frames (the most that more frames can win back); "" for any other release."""


    config_file = Path(root) / CONFIG_FILE
    if not config_file.is_file():
        return ""
    config = WorldConfig(**json.loads(config_file.read_text())["config"])
    scene_of = {t.id: t.scene for t in load_truth(root)}
    ids = load_from_disk(str(dataset))["val"]["id"][:max_samples]
    counts: dict[str, int] = {}
    decided = 0
    for clip in ids:
        reasons = temporal_reasons(SceneFacts(**scene_of[clip]), config)
        decided += bool(reasons)
        for reason in reasons:
            counts[reason] = counts.get(reason, 0) + 1
    detail = ", ".join(f"{r} {n}" for r, n in sorted(counts.items())) or "none"
    return (f"Scored val clips with a reason whose only cause lies in earlier frames (invisible in the "
            f"last one): {decided} of {len(ids)} ({detail}).")


def split_size(dataset: Path, split: str) -> int:

    return len(load_from_disk(str(dataset))[split])


def sizing(args: argparse.Namespace, runs: Mapping[str, list[dict]]) -> str:
    """What every run was: the recipe and its overrides, the clips it trained on, the val clips scored."""
    first = next(iter(runs.values()))[0]
    overrides = " ".join(args.train_args) or "none"
    scored = first["metrics"]["actions"].get("n_samples", args.max_eval_samples)
    dataset = Path(args.work) / "data" / settings(args.frames, args.strides)[0].name
    return (f"Every run: `{args.recipe}` with overrides `{overrides}`, from `{args.model}`, on "
            f"{first['train_clips']} train clips of `{args.root}`; {scored} val clips scored. "
            f"{temporal_share(args.root, dataset, args.max_eval_samples)} {args.sizing}".strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="BDD-OIA release root (synthetic world or real)")
    parser.add_argument("--frames-dir", default=None, help="clip frames, as `data_prep.prepare --frames-dir`")
    parser.add_argument("--videos-dir", default=None, help="clip videos, as `data_prep.prepare --videos-dir`")
    parser.add_argument("--model", required=True, help="the model SFT starts from (folder or hub id)")
    parser.add_argument("--frames", type=int, nargs="+", default=list(DEFAULT_FRAMES), help="values of M")
    parser.add_argument("--strides", type=int, nargs="+", default=list(DEFAULT_STRIDES))
    parser.add_argument("--stride-frames", type=int, nargs="+", default=None,
                        help="the M values that also run at the strides other than 1 (default: every M > 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the SFT recipe every setting trains with")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE, help="longest frame edge")
    parser.add_argument("--num-proc", type=int, default=2, help="data preparation processes")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="val clips scored (default all)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="per greedy answer")
    parser.add_argument("--watch", nargs="+", default=list(DEFAULT_WATCH), help="classes to show per-class F1 of")
    parser.add_argument("--title", default="How many frames")
    parser.add_argument("--sizing", default="", help="more words on the study's size, for the record")
    parser.add_argument("--work", default="work/frames-study", help="datasets, runs and evaluations go here")
    parser.add_argument("--out", default="records/frames_study.md")
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: recipe overrides for every run, e.g. -- --max_steps 120")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.train_args = [a for a in args.train_args if a != "--"]
    configure_logging()
    read_recipe(args.recipe)  # fail now on a missing recipe, not after the first preparation
    runs = run_study(args)
    setting_list = settings(args.frames, args.strides, args.stride_frames)
    rows = collect(runs, args.watch)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_file = out.with_suffix(".png")
    plot(setting_list, rows, plot_file, args.title, next(iter(runs.values()))[0]["metrics"].get("baseline"))
    command = "python -m evaluate.frames_study " + shlex.join(sys.argv[1:] if argv is None else argv)
    out.write_text(render(args.title, setting_list, rows, args.watch, args.seeds, plot_file.name, command,
                          sizing(args, runs), constant_floor(runs)))
    raw = {"root": args.root, "model": args.model, "recipe": args.recipe, "train_args": args.train_args,
           "seeds": args.seeds, "runs": {name: [{k: v for k, v in r.items() if k != "metrics"}
                                                 | {m: get(r["metrics"]) for m, get in F1_METRICS}
                                                 | {c: _class_f1(r["metrics"], c) for c in args.watch}
                                                 for r in per_seed] for name, per_seed in runs.items()}}
    out.with_suffix(".json").write_text(json.dumps(raw, indent=2))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
