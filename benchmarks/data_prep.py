"""Benchmark data preparation on a synthetic world of BDD-OIA's size: time and memory.

    python -m benchmarks.data_prep [--clips 22924 --frames 4 --num-proc 2]
    python -m benchmarks.data_prep --frame-size 1280x720   # BDD-OIA's real frame size

Generates (or reuses) synthetic worlds at two sizes (``--clips`` and a fraction of it), with frames
of ``--frame-size`` (default: the synthetic world's 256x144; BDD-OIA's frames are 1280x720), runs
``python -m data_prep.prepare`` on each in a child process while sampling the memory of the whole
process tree (the prepare process and its decoding workers), and records:
- prepare's wall time and clips/s; the whole-set time (BDD-OIA's 22,924 clips), projected from
  the larger run when it is smaller than that;
- peak memory of the tree: RSS (double-counts pages shared between forked workers), PSS (shared
  pages split between the processes sharing them) and anonymous PSS (Pss_Anon of
  /proc/<pid>/smaps_rollup: heap and buffers, what cannot be reclaimed; pages of memory-mapped
  Arrow files are file-backed and the kernel drops them under pressure, so they are left out);
- whether memory is flat: the ratio of peak anonymous PSS at the two sizes.
- the mean JPEG size of a frame, beside BDD-OIA's (decoding time follows the compressed size).
The figures go into a section of BENCHMARKS.md per frame size (replaced on each run), with the
machine, versions and command; a figure that misses its target is marked MISSED.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks import markdown
from data_prep.synth import WorldConfig, generate

BDDOIA_CLIPS = 22_924  # 16,082 train + 2,270 val + 4,572 test
DEFAULT_WORK = Path("work/bench")
DEFAULT_MARKDOWN = Path("BENCHMARKS.md")
DEFAULT_FRAMES = 4
DEFAULT_STRIDE = 1
DEFAULT_IMAGE_SIZE = 64  # the Makefile's `make data` default
DEFAULT_FRAME_SIZE = f"{WorldConfig.width}x{WorldConfig.height}"  # the synthetic world's own default
BDDOIA_FRAME_SIZE = "1280x720"
# BDD-OIA's `lastframe` release: 742 MB for its 22,924 JPEG frames (docs/bddoia.md)
BDDOIA_MEAN_FRAME_KB = 742e3 / BDDOIA_CLIPS
DEFAULT_SMALL_FRACTION = 0.25  # the second size, for the memory-growth check
# The smaller size must already fill datasets' write batches (up to 1,000 rows per batch in
# save_to_disk, whose buffers are the largest fixed cost): below that, memory still rises with size
# because the batches are not full yet, which is not growth with the set.
MIN_SMALL_CLIPS = 2000
TIME_TARGET_MINUTES = 10.0  # whole set on this 2-core machine, at any frame size
MEMORY_GROWTH_TOLERANCE = 1.3  # peak anonymous memory may grow at most this much with set size
SAMPLE_SECONDS = 0.1


def section_markers(frame_size: str) -> tuple[str, str]:
    """One BENCHMARKS.md section per frame size; the default size keeps the original markers."""
    owner = "benchmarks.data_prep"
    return markdown.section_markers(owner if frame_size == DEFAULT_FRAME_SIZE else f"{owner}@{frame_size}")


def parse_frame_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--frame-size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from None
    return width, height


@dataclass
class TreeMemory:
    rss: int = 0
    pss: int = 0
    anon: int = 0


def anonymous_pss(pid: int, fallback: int) -> int:
    """Pss_Anon in bytes from smaps_rollup (Linux >= 5.x); ``fallback`` where it is missing."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return fallback


class PeakMemory:
    """Samples a process and its descendants every ``interval`` seconds; keeps the peaks."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = TreeMemory()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = TreeMemory()
            try:
                processes = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                break
            for process in processes:
                try:
                    info = process.memory_full_info()
                except psutil.Error:
                    continue  # a worker that just exited
                total.rss += info.rss
                total.pss += info.pss
                total.anon += anonymous_pss(process.pid, fallback=info.uss)
            self.peak = TreeMemory(max(self.peak.rss, total.rss), max(self.peak.pss, total.pss),
                                   max(self.peak.anon, total.anon))
            self.samples += 1
            self._stop.wait(self.interval)


@dataclass
class Run:
    clips: int  # clips in the world (the prepared set drops the 'confuse' ones)
    seconds: float
    memory: TreeMemory
    load_average: float  # 1-minute load average when prepare ended: other jobs slow a shared machine

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds


def ensure_world(root: Path, clips: int, num_proc: int, config: WorldConfig, seed: int = 0) -> float:
    """Generate the synthetic world unless one of this size, frame size and seed is already there.
    Returns the generation time (0 when reused)."""
    config_file = root / "synth_config.json"
    if config_file.is_file():
        saved = json.loads(config_file.read_text())
        world = saved.get("config", {})
        if (saved.get("num_clips") == clips and saved.get("seed") == seed
                and (world.get("width"), world.get("height")) == (config.width, config.height)):
            print(f"reusing the synthetic world {root}", flush=True)
            return 0.0
    started = time.perf_counter()
    generate(root, clips, seed=seed, config=config, num_proc=num_proc, overwrite=True)
    return time.perf_counter() - started


def mean_frame_kb(root: Path) -> float:
    """Mean size in kB (1000 bytes) of the world's annotated frames (data/*.jpg, as in the release)."""
    sizes = [entry.stat().st_size for entry in os.scandir(root / "data") if entry.name.endswith(".jpg")]
    return sum(sizes) / len(sizes) / 1e3


def time_prepare(root: Path, out: Path, args: argparse.Namespace) -> Run:
    command = [
        sys.executable, "-m", "data_prep.prepare", "--root", str(root), "--out", str(out),
        "--frames", str(args.frames), "--stride", str(args.stride), "--image-size", str(args.image_size),
        "--num-proc", str(args.num_proc), "--overwrite",
    ]
    print("running: " + " ".join(command), flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(command)
    with PeakMemory(process.pid) as monitor:
        code = process.wait()
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"prepare failed with exit code {code}")
    clips = json.loads((root / "synth_config.json").read_text())["num_clips"]
    print(f"{clips} clips in {seconds:.1f} s; peak tree RSS {monitor.peak.rss / 2**20:.0f} MiB, "
          f"PSS {monitor.peak.pss / 2**20:.0f} MiB, anon PSS {monitor.peak.anon / 2**20:.0f} MiB "
          f"({monitor.samples} samples)", flush=True)
    return Run(clips, seconds, monitor.peak, os.getloadavg()[0])


def machine() -> dict:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import PIL
    import av
    import datasets
    import pyarrow

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gib": psutil.virtual_memory().total / 2**30,
        "load_average": os.getloadavg()[0],
        "versions": f"Python {platform.python_version()}, datasets {datasets.__version__}, "
        f"pyarrow {pyarrow.__version__}, Pillow {PIL.__version__}, PyAV {av.__version__}",
    }


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def render_section(runs: list[Run], info: dict, args: argparse.Namespace, command: str, frame_kb: float) -> str:
    section_start, section_end = section_markers(args.frame_size)
    largest, smallest = runs[-1], runs[0]
    whole_set_minutes = BDDOIA_CLIPS / largest.clips_per_second / 60
    projected = largest.clips < BDDOIA_CLIPS
    time_ok = whole_set_minutes < TIME_TARGET_MINUTES
    growth = largest.memory.anon / smallest.memory.anon if smallest.memory.anon else float("nan")
    memory_ok = growth <= MEMORY_GROWTH_TOLERANCE

    def mark(ok: bool) -> str:
        return "ok" if ok else "**MISSED**"

    lines = [
        section_start,
        f"## Data preparation at {args.frame_size} (`python -m benchmarks.data_prep`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {info['cpus']} CPUs ({info['cpu_model']}), "
        f"{info['ram_gib']:.1f} GiB RAM; load average {info['load_average']:.1f} at the start (the "
        "machine is shared with other jobs, so times are upper bounds). " + info["versions"] + ".",
        "",
        f"Command: `{command}`. Synthetic world: {args.frame_size} JPEG frames, 5 per clip, "
        f"{frame_kb:.0f} kB per frame on average (BDD-OIA's release: 1280x720, "
        f"{BDDOIA_MEAN_FRAME_KB:.0f} kB); prepare "
        f"`--frames {args.frames} --stride {args.stride} --image-size {args.image_size} "
        f"--num-proc {args.num_proc}` (JPEG-stored frames). Memory: the prepare process and its "
        "workers together, sampled every "
        f"{SAMPLE_SECONDS} s; anon PSS = anonymous memory with shared pages split (page cache of "
        "memory-mapped Arrow files excluded: the kernel reclaims it).",
        "",
        "| clips | prepare time | clips/s | load average at the end | peak RSS | peak PSS | peak anon PSS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.clips:,} | {run.seconds:.1f} s | {run.clips_per_second:.1f} | {run.load_average:.1f} "
            f"| {mib(run.memory.rss)} "
            f"| {mib(run.memory.pss)} | {mib(run.memory.anon)} |"
        )
    lines += [
        "",
        "| figure | value | target | |",
        "|---|---:|---:|---|",
        f"| whole set ({BDDOIA_CLIPS:,} clips) | {whole_set_minutes:.1f} min"
        f"{f' (projected from {largest.clips:,} clips)' if projected else ''} | "
        f"< {TIME_TARGET_MINUTES:.0f} min | {mark(time_ok)} |",
        f"| peak anon PSS, {smallest.clips:,} -> {largest.clips:,} clips | x{growth:.2f} | "
        f"<= x{MEMORY_GROWTH_TOLERANCE} (flat) | {mark(memory_ok)} |",
        section_end,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, frame_size: str) -> None:
    markdown.write_section(path, section, *section_markers(frame_size))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_prep", description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=BDDOIA_CLIPS, help="clips in the larger world")
    parser.add_argument("--small-fraction", type=float, default=DEFAULT_SMALL_FRACTION,
                        help="size of the smaller world, as a fraction of --clips")
    parser.add_argument("--min-small-clips", type=int, default=MIN_SMALL_CLIPS,
                        help="the smaller world has at least this many clips (default: datasets' write batch)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--frame-size", default=DEFAULT_FRAME_SIZE,
                        help=f"WIDTHxHEIGHT of the written frames (default {DEFAULT_FRAME_SIZE}; "
                        f"BDD-OIA: {BDDOIA_FRAME_SIZE})")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="where worlds and outputs go")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave BENCHMARKS.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        width, height = parse_frame_size(args.frame_size)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    args.frame_size = f"{width}x{height}"
    world_config = WorldConfig(width=width, height=height)
    info = machine()
    small = min(args.clips, max(args.min_small_clips, round(args.clips * args.small_fraction)))
    sizes = sorted({small, args.clips})
    runs = []
    for clips in sizes:
        suffix = "" if args.frame_size == DEFAULT_FRAME_SIZE else f"-{args.frame_size}"
        world = args.work / f"synth-{clips}{suffix}"
        generation = ensure_world(world, clips, args.num_proc, world_config)
        if generation:
            print(f"generated {clips} clips in {generation:.1f} s", flush=True)
        runs.append(time_prepare(world, args.work / f"prepared-{clips}{suffix}", args))
    command = "python -m benchmarks.data_prep " + " ".join(argv if argv is not None else sys.argv[1:])
    section = render_section(runs, info, args, command.strip(), mean_frame_kb(world))
    print(section)
    if not args.no_write:
        write_section(args.markdown, section, args.frame_size)
        print(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
