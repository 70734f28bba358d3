"""Benchmark the rewards: R1 with cached frame embeddings against re-encoding, and the rewards' share
of an RL step.

    python -m benchmarks.rewards [--clips 32 --completions-per-clip 8 --frames 4 --clip-model tiny]
    python -m benchmarks.rewards --clip-model tiny --clip-model ViT-B-32 --random-weights

Measures, per CLIP model (``tiny``: the offline tiny CLIP, built into a temporary folder; or an
open_clip name such as ``local-dir:PATH``, or a bare architecture like ``ViT-B-32`` with
``--random-weights`` to time a real-size model without its weights):
- R1 (``clip_alignment``) per completion, called as GRPO calls it (one call per clip with its
  ``--completions-per-clip`` completions): with the scorer's frame cache warm (frames encoded once
  per clip, as in training) and with the frames re-encoded on every call (cache cleared before
  each call); the ratio re-encoded / cached. Caching must be faster: a ratio <= 1 is MISSED.
- R1, R2 (``action_reasoning``) and R3 (``structure``) on one realistic RL batch
  (``--batch-clips`` clips x ``--completions-per-clip`` completions of ~100-token answers made with
  :func:`taxonomy.answer.format_answer`), against one GRPO step on the tiny SmolVLM with the same
  batch shape (timed with :mod:`benchmarks.rl_step`'s trainer run, whose own reward is negligible):
  the rewards' share of the step. There is no numeric target for the share.
Times are CPU times of this process (all threads; on a shared machine other jobs inflate wall time
more), with wall times beside them. The figures go to stdout and into BENCHMARKS.md's
``benchmarks.rewards`` section (replaced on each run, other sections kept).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks import markdown

DEFAULT_CLIPS = 32
DEFAULT_COMPLETIONS_PER_CLIP = 8  # GRPO's num_generations in the stage recipes
DEFAULT_FRAMES = 4
DEFAULT_FRAME_SIZE = 512  # data_prep.prepare's default image size (longest edge)
DEFAULT_REPEATS = 3  # timed passes over all clips with the cache warm
DEFAULT_BATCH_CLIPS = 2  # 2 clips x 8 completions = the 16 completions of one RL batch
DEFAULT_DESCRIPTION_WORDS = 40  # with the JSON fields around it, an answer of ~100 tokens
DEFAULT_SHARE_REPEATS = 5
DEFAULT_RL_STEPS = 2
DEFAULT_RL_WARMUP = 1
DEFAULT_COMPLETION_TOKENS = 100
# As in benchmarks.rl_step: a shared 2-core machine makes extra intra-op threads slower, not faster.
DEFAULT_THREADS = 1
TINY = "tiny"
DEFAULT_MARKDOWN = Path("BENCHMARKS.md")
SECTION_START, SECTION_END = markdown.section_markers("benchmarks.rewards")

# Words a dashcam description uses: the descriptions are drawn from them (content does not change
# the cost; length does).
WORDS = (
    "the ego car drives on a wet two lane road at dusk with a red light ahead and a white van "
    "parked on the right shoulder while a pedestrian crosses near the intersection and traffic "
    "in the left lane slows behind a bus under heavy rain and glare from oncoming headlights"
).split()


@dataclass
class Timing:
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def add(self, cpu: float, wall: float) -> None:
        self.cpu.append(cpu)
        self.wall.append(wall)

    @property
    def mean_cpu(self) -> float:
        return statistics.mean(self.cpu)

    @property
    def mean_wall(self) -> float:
        return statistics.mean(self.wall)


def timed(fn, timing: Timing):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    timing.add(time.process_time() - cpu, time.perf_counter() - wall)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rewards", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--clip-model", action="append", default=None,
                        help=f"open_clip name, or {TINY!r} (build the tiny CLIP); repeat for several "
                        f"(default: {TINY})")
    parser.add_argument("--random-weights", action="store_true",
                        help="allow bare architecture names (e.g. ViT-B-32) with random weights: timing only")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="clips in the R1 cache comparison")
    parser.add_argument("--completions-per-clip", type=int, default=DEFAULT_COMPLETIONS_PER_CLIP)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per clip")
    parser.add_argument("--frame-size", type=int, default=DEFAULT_FRAME_SIZE, help="frame width in pixels")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed warm-cache passes")
    parser.add_argument("--batch-clips", type=int, default=DEFAULT_BATCH_CLIPS, help="clips in the RL batch")
    parser.add_argument("--description-words", type=int, default=DEFAULT_DESCRIPTION_WORDS)
    parser.add_argument("--share-repeats", type=int, default=DEFAULT_SHARE_REPEATS,
                        help="timed reward calls on the RL batch")
    parser.add_argument("--rl-steps", type=int, default=DEFAULT_RL_STEPS, help="timed GRPO steps")
    parser.add_argument("--rl-warmup", type=int, default=DEFAULT_RL_WARMUP, help="untimed GRPO steps first")
    parser.add_argument("--completion-tokens", type=int, default=DEFAULT_COMPLETION_TOKENS,
                        help="tokens per completion in the GRPO step")
    parser.add_argument("--no-rl-step", action="store_true", help="skip the GRPO step (no share figure)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.clip_model = args.clip_model or [TINY]
    for name in ("clips", "completions_per_clip", "frames", "frame_size", "repeats", "batch_clips",
                 "description_words", "share_repeats", "rl_steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.batch_clips > args.clips:
        parser.error("--batch-clips must be <= --clips")
    return args


# -- inputs ------------------------------------------------------------------------------------


def make_clips(args, rng: np.random.Generator) -> tuple[list[str], list[list]]:
    from PIL import Image

    size = (args.frame_size * 9 // 16, args.frame_size, 3)  # 16:9 dashcam frames
    ids = [f"bench-{i:04d}" for i in range(args.clips)]
    frames = [[Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)) for _ in range(args.frames)]
              for _ in ids]
    return ids, frames


def make_answer(args, rng: np.random.Generator) -> tuple[str, list[int], list[int]]:
    """A JSON answer (format_answer) with a random description, actions and reasons, and the
    truth vectors the R2 reward reads."""
    from taxonomy.answer import format_answer
    from taxonomy.labels import ACTION_KEYS, REASON_KEYS

    description = " ".join(rng.choice(WORDS, args.description_words)).capitalize() + "."
    actions = [int(v) for v in rng.integers(0, 2, len(ACTION_KEYS))]
    reasons = [int(v) for v in rng.random(len(REASON_KEYS)) < 0.15]
    answer = format_answer(
        description,
        [k for k, v in zip(ACTION_KEYS, actions) if v],
        [k for k, v in zip(REASON_KEYS, reasons) if v],
    )
    return answer, actions, reasons


# -- models ------------------------------------------------------------------------------------


def resolve_clip_models(args, work: Path) -> list[tuple[str, str]]:
    """(label, open_clip name) per requested model; the tiny one is built into ``work``."""
    models = []
    for name in args.clip_model:
        if name == TINY:
            from tiny_models import CLIP_DIR_NAME
            from tiny_models.clip import TinyClipConfig, build_tiny_clip, local_dir_name, save_tiny_clip

            cfg = TinyClipConfig(seed=args.seed)
            folder = save_tiny_clip(build_tiny_clip(cfg), cfg, work / CLIP_DIR_NAME)
            models.append((f"tiny CLIP ({cfg.image_size} px, {cfg.embed_dim}-d)", local_dir_name(folder)))
        else:
            label = f"{name} (random weights)" if args.random_weights and ":" not in name else name
            models.append((label, name))
    return models


def prepare_scorer(name: str, args):
    """The reward's process-wide scorer for ``name``. A bare architecture with --random-weights is
    refused by the reward's loader (it would score with random weights), so for timing the model
    is loaded here with random weights allowed and registered as the reward's scorer."""
    from rewards import clip_alignment, clip_model

    if args.random_weights and ":" not in name:
        key = (name, None, "cpu")
        if key not in clip_alignment._SCORERS:
            scorer = clip_alignment.ClipScorer.__new__(clip_alignment.ClipScorer)  # skips the refusing loader
            scorer.model_name, scorer.pretrained, scorer.device = key
            scorer.model, scorer.preprocess, scorer.tokenizer = clip_model.load_clip(
                name, None, "cpu", allow_random_weights=True)
            scorer.cache_size, scorer.cache = clip_alignment.DEFAULT_CACHE_SIZE, OrderedDict()
            scorer.encoded_clips = 0
            clip_alignment._SCORERS[key] = scorer
    return clip_alignment.get_scorer(name, None, "cpu")


# -- measurements ------------------------------------------------------------------------------


@dataclass
class R1Result:
    label: str
    load_seconds: float
    cached: Timing  # per call of completions_per_clip completions
    reencoded: Timing
    first_pass: Timing  # the untimed-in-training-sense cache fill: one call per clip, cache cold
    batch: dict[str, Timing] = field(default_factory=dict)  # reward -> per RL-batch call

    def per_completion(self, timing: Timing, args, cpu: bool = True) -> float:
        return (timing.mean_cpu if cpu else timing.mean_wall) / args.completions_per_clip


def r1_call(name: str, ids, frames, completions):
    from rewards.clip_alignment import clip_alignment_reward

    return clip_alignment_reward(completions, model_name=name, pretrained=None, device="cpu",
                                 id=ids, images=frames)


def measure_r1(label: str, name: str, args, ids, frames, answers, bar) -> R1Result:
    per_clip = args.completions_per_clip
    start = time.perf_counter()
    scorer = prepare_scorer(name, args)
    load_seconds = time.perf_counter() - start
    scorer.cache.clear()

    def call(i: int):
        group = answers[i * per_clip:(i + 1) * per_clip]
        return r1_call(name, [ids[i]] * per_clip, [frames[i]] * per_clip, [a for a, _, _ in group])

    first_pass, cached, reencoded = Timing(), Timing(), Timing()
    for i in range(len(ids)):  # fills the cache: each clip's frames encoded once
        timed(lambda: call(i), first_pass)
        bar.update()
    for _ in range(args.repeats):
        for i in range(len(ids)):
            timed(lambda: call(i), cached)
            bar.update()
    for i in range(len(ids)):
        scorer.cache.clear()  # as if no cache: this call encodes the clip's frames again
        timed(lambda: call(i), reencoded)
        bar.update()
    return R1Result(label, load_seconds, cached, reencoded, first_pass)


def measure_batch(result: R1Result, name: str, args, ids, frames, answers, bar) -> None:
    """R1 (cached and encoding the frames), R2 and R3 on one RL batch of 16 completions."""
    from rewards.action_reasoning import action_reasoning_reward
    from rewards.clip_alignment import get_scorer
    from rewards.structure import structure_reward

    per_clip = args.completions_per_clip
    n = args.batch_clips * per_clip
    batch_ids = [ids[i // per_clip] for i in range(n)]
    batch_frames = [frames[i // per_clip] for i in range(n)]
    completions = [a for a, _, _ in answers[:n]]
    actions = [a for _, a, _ in answers[:n]]
    reasons = [r for _, _, r in answers[:n]]
    scorer = get_scorer(name, None, "cpu")
    calls = {
        "R1 clip_alignment, frames cached": lambda: r1_call(name, batch_ids, batch_frames, completions),
        "R1 clip_alignment, frames encoded": lambda: (scorer.cache.clear(),
                                                      r1_call(name, batch_ids, batch_frames, completions)),
        "R2 action_reasoning": lambda: action_reasoning_reward(completions, actions=actions, reasons=reasons,
                                                               id=batch_ids),
        "R3 structure": lambda: structure_reward(completions),
    }
    r1_call(name, batch_ids, batch_frames, completions)  # warm the cache for the cached row
    for what, fn in calls.items():
        timing = result.batch.setdefault(what, Timing())
        for _ in range(args.share_repeats):
            timed(fn, timing)
            bar.update()
        if what.endswith("encoded"):
            r1_call(name, batch_ids, batch_frames, completions)  # leave the cache warm


def measure_rl_step(args, work: Path) -> Timing:
    """One GRPO step on the tiny SmolVLM with the RL batch's shape (benchmarks.rl_step's run)."""
    from benchmarks import rl_step

    rl_args = rl_step.parse_args([
        "--no-clip", "--steps", str(args.rl_steps), "--warmup", str(args.rl_warmup),
        "--num-generations", str(args.completions_per_clip), "--prompts-per-step", str(args.batch_clips),
        "--completion-length", str(args.completion_tokens), "--frames", str(args.frames),
        "--threads", str(args.threads), "--seed", str(args.seed),
    ])
    model_path, _ = rl_step.build_models(rl_args, work)
    timer = rl_step.run("grpo", False, rl_args, model_path, None, rl_step.make_dataset(rl_args), work / "rl-out")
    timing = Timing()
    for cpu, wall in zip(timer.cpu, timer.wall):
        timing.add(cpu, wall)
    return timing


# -- report ------------------------------------------------------------------------------------


def render_section(args, results: list[R1Result], step: Timing | None, answer_chars: float, command: str) -> str:
    import open_clip
    import transformers
    import trl

    per_clip = args.completions_per_clip
    n = args.batch_clips * per_clip
    lines = [
        SECTION_START,
        "## Rewards: R1 frame cache, and the rewards' share of an RL step (`python -m benchmarks.rewards`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()} ({_cpu_model()}), "
        f"{torch.get_num_threads()} torch thread(s), load average {_load():.1f} at the end (the machine is "
        f"shared, so times are upper bounds); Python {platform.python_version()}, torch {torch.__version__}, "
        f"open_clip {open_clip.__version__}, transformers {transformers.__version__}, trl {trl.__version__}; "
        "fp32 on CPU.",
        "",
        f"Command: `{command}`. {args.clips} clips of {args.frames} random {args.frame_size}x"
        f"{args.frame_size * 9 // 16} frames; answers from `taxonomy.answer.format_answer` with "
        f"{args.description_words}-word descriptions ({answer_chars:.0f} characters on average, ~100 "
        "tokens). Times are CPU seconds of this process (all threads), wall seconds beside them.",
        "",
        f"### R1 per completion, GRPO's call pattern (one call per clip with its {per_clip} completions)",
        "",
        "Cached: the scorer's frame cache holds the clip (frames encoded once per clip, as in training "
        f"from the second time a clip is seen; {args.repeats} passes over the clips); re-encoded: the "
        "cache is cleared before every call, so each call encodes the clip's frames again. Caching must "
        "be faster (ratio > 1).",
        "",
        "| CLIP model | load s | cached ms/completion (CPU / wall) | re-encoded ms/completion (CPU / wall) "
        "| re-encoded / cached | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        cached, reencoded = r.per_completion(r.cached, args), r.per_completion(r.reencoded, args)
        ratio = reencoded / cached
        lines.append(
            f"| {r.label} | {r.load_seconds:.1f} | {cached * 1e3:.2f} / {r.per_completion(r.cached, args, False) * 1e3:.2f} "
            f"| {reencoded * 1e3:.2f} / {r.per_completion(r.reencoded, args, False) * 1e3:.2f} | {ratio:.1f}x "
            f"| {'ok (caching faster)' if ratio > 1 else '**MISSED** (caching not faster)'} |"
        )
    lines += [
        "",
        f"### Rewards on one RL batch ({args.batch_clips} clips x {per_clip} completions = {n})",
        "",
    ]
    if step is not None:
        lines.append(
            f"RL step: one GRPO optimizer step on the tiny SmolVLM (`benchmarks.rl_step`'s trainer run, "
            f"its own reward negligible) with the same batch: {args.batch_clips} clips x {per_clip} "
            f"completions of exactly {args.completion_tokens} tokens, {args.frames} frames per clip; mean of "
            f"{len(step.cpu)} step(s) after {args.rl_warmup} warm-up: **{step.mean_cpu:.2f} s CPU** "
            f"({step.mean_wall:.2f} s wall). Share = rewards / (step + rewards). The tiny model's step is "
            "far shorter than a real SmolVLM's (see benchmarks.gpu), so on the tiny model the share is an "
            "upper bound; no numeric target.")
    else:
        lines.append("RL step: not measured (`--no-rl-step`), no share figure.")
    lines += ["", "| CLIP model | reward | ms per batch (CPU / wall) | share of step (CPU) |", "|---|---|---:|---:|"]
    for r in results:
        for what, timing in r.batch.items():
            share = f"{timing.mean_cpu / (step.mean_cpu + timing.mean_cpu):.1%}" if step else "–"
            lines.append(f"| {r.label} | {what} | {timing.mean_cpu * 1e3:.1f} / {timing.mean_wall * 1e3:.1f} | {share} |")
        total = sum(t.mean_cpu for w, t in r.batch.items() if not w.endswith("encoded"))
        total_cold = sum(t.mean_cpu for w, t in r.batch.items() if not w.endswith("cached"))
        if step:
            lines.append(
                f"| {r.label} | **R1 + R2 + R3** (frames cached / encoded) | {total * 1e3:.1f} / "
                f"{total_cold * 1e3:.1f} (CPU) | {total / (step.mean_cpu + total):.1%} / "
                f"{total_cold / (step.mean_cpu + total_cold):.1%} |")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> float:
    try:
        import os

        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv=None) -> int:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    rng = np.random.default_rng(args.seed)
    ids, frames = make_clips(args, rng)
    answers = [make_answer(args, rng) for _ in range(args.clips * args.completions_per_clip)]
    answer_chars = statistics.mean(len(a) for a, _, _ in answers)
    with tempfile.TemporaryDirectory(prefix="rewards_bench_") as tmp:
        work = Path(tmp)
        models = resolve_clip_models(args, work)
        calls_per_model = args.clips * (args.repeats + 2) + 4 * args.share_repeats
        results = []
        with tqdm(total=calls_per_model * len(models), desc="reward calls", file=sys.stderr) as bar:
            for label, name in models:
                result = measure_r1(label, name, args, ids, frames, answers, bar)
                measure_batch(result, name, args, ids, frames, answers, bar)
                results.append(result)
        step = None if args.no_rl_step else measure_rl_step(args, work)
    command = "python -m benchmarks.rewards " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render_section(args, results, step, answer_chars, command.strip())
    print(section)
    if not args.no_write:
        markdown.write_section(args.markdown, section, SECTION_START, SECTION_END)
        print(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
