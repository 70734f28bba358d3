"""Benchmark one stage-1 RL step: the actor-critic trainer against plain GRPO, same model and batch.

    python -m benchmarks.rl_step [--steps 8 --warmup 2 --repeats 2 --completion-length 16 --misaligned]

Builds the tiny SmolVLM (and tiny CLIP) offline unless ``--model``/``--clip-model`` name existing
ones, then times whole optimizer steps (generation, rewards, forward, backward, optimizer: from
``on_step_begin`` to ``on_step_end``) for:
- ``grpo``: TRL's GRPOTrainer with a cheap sequence reward;
- ``actor_critic``: the same plus the value head, GAE and the value loss, with a cheap dense
  reward (+1 per even token id), so the ratio to ``grpo`` is the trainer's own overhead
  (target <= 1.25x);
- ``actor_critic + CLIP word/token``: dense R1 increments from the CLIP scorer (one CLIP text
  encoding per word or per token); with the tiny CLIP this shows the call pattern's cost only
  (a ViT-B-32 costs ~70 ms per text on CPU: BENCHMARKS.md, ``benchmarks.rewards``).
With ``--misaligned`` each trainer also runs with steps_per_generation=2 (TRL keeps pi_old; the
actor-critic reads V_old from that same pass). Completions are forced to exactly
``--completion-length`` tokens so every variant does the same work. Variants run interleaved in
``--repeats`` rounds; the mean step time over whole generation cycles is reported, on CPU time
(this process's, all threads: other jobs on a shared machine inflate wall time) and wall time.
Figures go to stdout (markdown) and into BENCHMARKS.md's ``benchmarks.rl_step`` section (replaced on
each run, other sections kept; ``--no-write`` leaves the file).
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
from pathlib import Path

import numpy as np
import torch

from benchmarks import markdown

DEFAULT_STEPS = 6
DEFAULT_WARMUP = 2
DEFAULT_REPEATS = 2
DEFAULT_NUM_GENERATIONS = 4
DEFAULT_PROMPTS_PER_STEP = 2
DEFAULT_COMPLETION_LENGTH = 16
DEFAULT_FRAMES = 2
DEFAULT_FRAME_SIZE = 64
# The tiny model's matrices are too small for intra-op threads to pay, and on a shared machine
# spinning threads make steps many times slower (measured: ~0.12 s/step on 1 thread vs 1-4 s on 2).
DEFAULT_THREADS = 1
TARGET_RATIO = 1.25  # actor_critic / grpo, the trainer's own overhead
DEFAULT_MARKDOWN = Path("BENCHMARKS.md")
SECTION_START, SECTION_END = markdown.section_markers("benchmarks.rl_step")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rl_step", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="SmolVLM-shaped model folder (default: build tiny)")
    parser.add_argument("--clip-model", default=None, help="open_clip name for the CLIP rows (default: build tiny)")
    parser.add_argument("--no-clip", action="store_true", help="skip the CLIP dense-reward rows")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="interleaved rounds over variants")
    parser.add_argument("--num-generations", type=int, default=DEFAULT_NUM_GENERATIONS)
    parser.add_argument("--prompts-per-step", type=int, default=DEFAULT_PROMPTS_PER_STEP)
    parser.add_argument("--completion-length", type=int, default=DEFAULT_COMPLETION_LENGTH)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per clip")
    parser.add_argument("--frame-size", type=int, default=DEFAULT_FRAME_SIZE, help="frame side in pixels")
    parser.add_argument("--misaligned", action="store_true", help="also time steps_per_generation=2")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.misaligned and (args.steps % 2 or args.warmup % 2):
        parser.error("--misaligned generates every 2 steps: give even --steps and --warmup (whole cycles)")
    return args


def build_models(args, work: Path) -> tuple[Path, str | None]:
    model = args.model
    if model is None:
        from tiny_models import VLM_DIR_NAME
        from tiny_models.vlm import TinyVLMConfig, build_tiny_vlm, save_tiny_vlm

        vlm, processor = build_tiny_vlm(TinyVLMConfig(seed=args.seed))
        model = save_tiny_vlm(vlm, processor, work / VLM_DIR_NAME)
    clip_name = args.clip_model
    if clip_name is None and not args.no_clip:
        from tiny_models import CLIP_DIR_NAME
        from tiny_models.clip import TinyClipConfig, build_tiny_clip, local_dir_name, save_tiny_clip

        cfg = TinyClipConfig(seed=args.seed)
        clip_name = local_dir_name(save_tiny_clip(build_tiny_clip(cfg), cfg, work / CLIP_DIR_NAME))
    return Path(model), (None if args.no_clip else clip_name)


def make_dataset(args):
    from datasets import Dataset
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    size = (args.frame_size * 3 // 4, args.frame_size, 3)  # landscape frames, like dashcam video
    rows = [
        {
            "id": f"bench-{i}",
            "prompt": [{"role": "user", "content": [{"type": "image"}] * args.frames}],
            "images": [Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)) for _ in range(args.frames)],
        }
        for i in range(args.prompts_per_step * (args.steps + args.warmup))
    ]
    return Dataset.from_list(rows)


def sequence_reward(completions, **kwargs):
    return [float(len(str(c))) / 100.0 for c in completions]


def even_token_reward(texts, completion_ids, inputs):
    return [[1.0 if t % 2 == 0 else 0.0 for t in ids] for ids in completion_ids]


class StepTimer:
    """Wall and CPU time of each optimizer step (generation included), after ``warmup`` steps.

    CPU time (this process, all threads) is what the ratio uses: on a machine shared with other
    jobs, wall time also counts the time the scheduler gave to them.
    """

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        timer = self
        self.warmup, self.wall, self.cpu, self._start = warmup, [], [], (0.0, 0.0)

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer._start = (time.perf_counter(), time.process_time())

            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step > timer.warmup:
                    timer.wall.append(time.perf_counter() - timer._start[0])
                    timer.cpu.append(time.process_time() - timer._start[1])

        self.callback = Callback()


def run(variant: str, misaligned: bool, args, model_path: Path, clip_name: str | None, dataset, out: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor, PrinterCallback
    from trl import GRPOConfig

    from recipes.actor_critic import ActorCriticConfig, build_rl_trainer

    batch = args.num_generations * args.prompts_per_step
    config_cls = GRPOConfig if variant == "grpo" else ActorCriticConfig
    granularity = {"actor_critic + CLIP word": "word", "actor_critic + CLIP token": "token"}.get(variant)
    extra = {"token_reward_granularity": granularity} if granularity else {}
    split = {"steps_per_generation": 2, "per_device_train_batch_size": batch // 2} if misaligned else {
        "per_device_train_batch_size": batch}
    config = config_cls(
        output_dir=str(out), num_generations=args.num_generations, max_completion_length=args.completion_length,
        generation_kwargs={"min_new_tokens": args.completion_length}, max_steps=args.steps + args.warmup,
        learning_rate=1e-5, report_to="none", bf16=False, gradient_checkpointing=False, use_cpu=True,
        save_strategy="no", logging_steps=10**6, disable_tqdm=True, seed=args.seed, **split, **extra,
    )
    processor = AutoProcessor.from_pretrained(model_path)
    model = AutoModelForImageTextToText.from_pretrained(model_path)
    kwargs = {}
    if variant == "actor_critic":
        kwargs["token_reward_fn"] = even_token_reward
    elif granularity:
        kwargs["clip_token_reward_params"] = {"model_name": clip_name, "pretrained": None, "device": "cpu"}
    trainer = build_rl_trainer(
        "grpo" if variant == "grpo" else "actor_critic", model=model, args=config, reward_funcs=sequence_reward,
        train_dataset=dataset, processing_class=processor, **kwargs,
    )
    timer = StepTimer(args.warmup)
    trainer.add_callback(timer.callback)
    trainer.remove_callback(PrinterCallback)  # stdout carries the figures only
    trainer.train()
    return timer


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    variants = ["grpo", "actor_critic"]
    with tempfile.TemporaryDirectory(prefix="rl_step_") as tmp:
        work = Path(tmp)
        model_path, clip_name = build_models(args, work)
        if clip_name is not None:
            variants += ["actor_critic + CLIP word", "actor_critic + CLIP token"]
        regimes = [False, True] if args.misaligned else [False]
        dataset = make_dataset(args)
        times = {(v, m): {"wall": [], "cpu": []} for m in regimes for v in variants}
        for round_index in range(args.repeats):
            order = variants if round_index % 2 == 0 else variants[::-1]  # interleave against drift
            for misaligned in regimes:
                for variant in order:
                    timer = run(variant, misaligned, args, model_path, clip_name, dataset, work / "out")
                    times[(variant, misaligned)]["wall"] += timer.wall
                    times[(variant, misaligned)]["cpu"] += timer.cpu
    command = "python -m benchmarks.rl_step " + " ".join(argv if argv is not None else sys.argv[1:])
    section = report(args, times, regimes, variants, command.strip())
    print(section)
    if not args.no_write:
        markdown.write_section(args.markdown, section, SECTION_START, SECTION_END)
        print(f"updated {args.markdown}")
    return 0


def report(args, times, regimes, variants, command: str) -> str:
    """The BENCHMARKS.md section (markers included) with the figures."""
    import transformers
    import trl

    lines = [
        SECTION_START,
        "## Stage-1 RL step: actor-critic vs GRPO (`python -m benchmarks.rl_step`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, Python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, trl {trl.__version__}; fp32 on CPU. Command: `{command}`.",
        "",
        f"Batch: {args.prompts_per_step} clips x {args.num_generations} completions of exactly "
        f"{args.completion_length} tokens, {args.frames} frames of {args.frame_size} px per clip; "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.repeats} interleaved rounds; "
        "means over whole optimizer steps (generation included); the ratio is on CPU time "
        "(this process's, all threads), which other jobs on a shared machine inflate less than wall time.",
        "",
        "| regime | variant | CPU s/step | wall s/step | CPU vs grpo |",
        "|---|---|---|---|---|",
    ]
    for misaligned in regimes:
        regime = "steps_per_generation=2 (pi_old, V_old kept)" if misaligned else "aligned (default)"
        base = statistics.mean(times[("grpo", misaligned)]["cpu"])
        for variant in variants:
            cpu = statistics.mean(times[(variant, misaligned)]["cpu"])
            wall = statistics.mean(times[(variant, misaligned)]["wall"])
            ratio = cpu / base
            mark = ""
            if variant == "actor_critic":
                mark = " (target <= %.2fx: %s)" % (TARGET_RATIO, "ok" if ratio <= TARGET_RATIO else "**MISSED**")
            lines.append(f"| {regime} | {variant} | {cpu:.3f} | {wall:.3f} | {ratio:.2f}x{mark} |")
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    raise SystemExit(main())
