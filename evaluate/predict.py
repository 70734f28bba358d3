"""Run a model over a video or a folder of frames with a sliding window of M frames (``make predict``).

    python -m evaluate.predict --model work/sft --input drive.mp4 --frames 4 --stride 1 --hop 1 \\
        --out predictions.jsonl
    python -m evaluate.predict --model work/sft --input frames_folder/ --fps 5 --out predictions.jsonl

Windows. Frame t closes a window of M frames taken every ``--stride`` frames back from t (the same
sampling as data_prep.frames, so the model sees clips as it was trained on them): frames
t - stride*(M-1), ..., t - stride, t. Windows close at t = span-1, span-1+hop, span-1+2*hop, ...
(span = stride*(M-1)+1), so consecutive windows overlap when ``--hop`` < span.

Input. A video is decoded with PyAV (``--sample-fps F`` first resamples it to F frames per
second using the frames' timestamps); a folder's images (.jpg/.jpeg/.png) are taken in natural
name order (frame_2 before frame_10). Frames are RGB, resized so the longest edge is
``--image-size`` (default: the processor's longest edge).

Too few frames. An input with fewer frames than the span gets one window, padded by repeating its
earliest frame (data_prep's "pad" short-clip policy), with ``--short-input pad`` (default); with
``--short-input error`` it is an error naming the file. A missing path, a corrupt video or image,
or a folder without images is an error naming the file.

Output: one JSON object per window, ``{"window", "time", "frame", "frames", "description",
"actions", "reasons", "justification", "raw", "latency_s"}``. ``time`` is the last frame's time in
seconds: its timestamp in a video, index/``--fps`` for a folder (null without ``--fps``). Latency is
the wall time of one window's model call (preprocessing, generation, parsing; windows run one at a
time, as a live system would). With ``--out`` the lines go to that file and the summary (latency
mean/p50/p90, then one JSON summary line) to stdout; without it the lines go to stdout and the
summary to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from data_prep.frames import (
    DEFAULT_SHORT_CLIP_POLICY,
    IMAGE_EXTENSIONS,
    SHORT_CLIP_POLICIES,
    VIDEO_EXTENSIONS,
    FrameError,
    FrameSpec,
    load_image,
    natural_key,
    resize_longest_edge,
    sample_positions,
)
from evaluate.generate import (
    DEFAULT_DECODING,
    DEFAULT_MAX_NEW_TOKENS,
    EvaluationError,
    add_model_loading_args,
    decoding_constraint,
    generate_batch,
    load_model_and_processor,
)
from taxonomy.answer import parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS

DEFAULT_FRAMES = 4  # as `make data FRAMES=4`: use the M the model was trained with
DEFAULT_STRIDE = 1
DEFAULT_HOP = 1
LATENCY_PERCENTILES = (50, 90)


@dataclass
class Frame:
    index: int  # position in the (resampled) input
    time: float | None  # seconds
    image: Image.Image


@dataclass
class Window:
    number: int
    frames: list[Frame]  # oldest first; the last closes the window

    @property
    def last(self) -> Frame:
        return self.frames[-1]


# ---------------------------------------------------------------------------------------------
# Reading frames


def iter_video_frames(path: Path, image_size: int, sample_fps: float | None = None) -> Iterator[Frame]:
    """Frames of a video, oldest first, resized; FrameError naming the file when it cannot be read."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else None
            next_tick, kept = 0.0, 0
            for decoded, frame in enumerate(container.decode(stream)):
                seconds = frame.time if frame.time is not None else (decoded / rate if rate else None)
                if sample_fps is not None:
                    if seconds is None:
                        raise FrameError(f"{path}: frames carry no timestamps, so --sample-fps cannot be used")
                    if seconds + 1e-6 < next_tick:
                        continue
                    next_tick += 1.0 / sample_fps
                    while next_tick <= seconds:  # a gap in the video: do not emit a burst later
                        next_tick += 1.0 / sample_fps
                image = resize_longest_edge(frame.to_image().convert("RGB"), image_size)
                yield Frame(kept, seconds, image)
                kept += 1
    except FrameError:
        raise
    except FileNotFoundError as err:
        raise FrameError(f"{path}: video file missing") from err
    except (av.FFmpegError, OSError, ValueError) as err:
        raise FrameError(f"{path}: corrupt or unreadable video ({err})") from err


def folder_frames(folder: Path) -> list[Path]:
    names = sorted(
        (p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key
    )
    if not names:
        raise FrameError(f"{folder}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [folder / name for name in names]


def iter_folder_frames(folder: Path, image_size: int, fps: float | None = None) -> Iterator[Frame]:
    paths = folder_frames(folder)  # listed now, so an empty folder fails before any model work

    def frames() -> Iterator[Frame]:
        for index, path in enumerate(paths):
            yield Frame(index, index / fps if fps else None, load_image(path, image_size))

    return frames()


def iter_input_frames(path: str | Path, image_size: int, fps: float | None = None,
                      sample_fps: float | None = None) -> Iterator[Frame]:
    """Frames of a video file or a folder of images."""
    path = Path(path)
    if not path.exists():
        raise FrameError(f"{path}: input not found (give a video file or a folder of frames)")
    if path.is_dir():
        return iter_folder_frames(path, image_size, fps)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise FrameError(f"{path}: not a video ({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames")
    return iter_video_frames(path, image_size, sample_fps)


def iter_windows(frames: Iterator[Frame], spec: FrameSpec, hop: int = DEFAULT_HOP, source: str = "input") -> Iterator[Window]:
    """Sliding windows of ``spec.frames`` frames every ``spec.stride``, one closing every ``hop``
    frames; the input is read once, keeping only the last span frames in memory."""
    if hop < 1:
        raise ValueError(f"hop must be >= 1, got {hop}")
    buffer: deque[Frame] = deque(maxlen=spec.span)
    number = 0
    seen = 0
    for frame in frames:
        buffer.append(frame)
        seen += 1
        t = seen - 1
        if t >= spec.span - 1 and (t - (spec.span - 1)) % hop == 0:
            yield Window(number, [buffer[p] for p in sample_positions(len(buffer), spec, clip=source)])
            number += 1
    if seen == 0:
        raise FrameError(f"{source}: holds no frames")
    if number == 0:  # fewer frames than the span: pad (one window) or refuse, by spec.short_clip
        yield Window(0, [buffer[p] for p in sample_positions(len(buffer), spec, clip=source)])


# ---------------------------------------------------------------------------------------------
# Running


def latency_summary(latencies: Sequence[float]) -> dict:
    if not latencies:
        return {"windows": 0}
    values = np.asarray(latencies)
    summary = {"windows": len(latencies), "latency_mean_s": float(values.mean())}
    for q in LATENCY_PERCENTILES:
        summary[f"latency_p{q}_s"] = float(np.percentile(values, q))
    return summary


def predict(model_dir: str, input_path: str, out: IO[str], frames: int = DEFAULT_FRAMES,
            stride: int = DEFAULT_STRIDE, hop: int = DEFAULT_HOP, fps: float | None = None,
            sample_fps: float | None = None, image_size: int | None = None,
            short_input: str = DEFAULT_SHORT_CLIP_POLICY, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
            image_splitting: bool | None = None, image_longest_edge: int | None = None,
            device: str | None = None, precision: str = "auto", progress: bool = True,
            decoding: str = DEFAULT_DECODING) -> dict:
    """Write one JSON line per window to ``out``; return the latency summary. ``decoding``: free or
    constrained (every answer schema-valid; evaluate/constrained.py)."""
    for name, value in (("fps", fps), ("sample_fps", sample_fps)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    # Check the input and the window settings before the (slow) model load.
    FrameSpec(frames=frames, stride=stride, image_size=image_size or 1, short_clip=short_input)
    iter_input_frames(input_path, image_size or 1, fps, sample_fps)
    model, processor = load_model_and_processor(model_dir, image_splitting, image_longest_edge, device, precision)
    constraint = decoding_constraint(decoding, model, processor)
    if image_size is None:
        image_size = int(processor.image_processor.size["longest_edge"])
    spec = FrameSpec(frames=frames, stride=stride, image_size=image_size, short_clip=short_input)
    source = str(input_path)
    windows = iter_windows(iter_input_frames(input_path, image_size, fps, sample_fps), spec, hop, source)
    latencies = []
    for window in tqdm(windows, desc="windows", unit="window", disable=not progress, file=sys.stderr):
        started = time.perf_counter()
        generated = generate_batch(model, processor, [[f.image for f in window.frames]], max_new_tokens, constraint)
        raw = generated.texts[0]
        parsed = parse_answer(raw)
        latency = time.perf_counter() - started
        latencies.append(latency)
        record = {
            "window": window.number,
            "time": window.last.time,
            "frame": window.last.index,
            "frames": [f.index for f in window.frames],
            "description": parsed.description,
            "actions": [k for k in ACTION_KEYS if k in parsed.actions],
            "reasons": [k for k in REASON_KEYS if k in parsed.reasons],
            "justification": parsed.justification,
            "raw": raw,
            "latency_s": latency,
        }
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    return latency_summary(latencies)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluate.predict",
        description="Answer for each sliding window of M frames of a video or a folder of frames (JSON lines).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model folder (save_pretrained output)")
    parser.add_argument("--input", required=True, help=f"a video ({', '.join(VIDEO_EXTENSIONS)}) or a folder of frames")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="M, frames per window (as trained)")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE, help="take every S-th frame inside a window")
    parser.add_argument("--hop", type=int, default=DEFAULT_HOP, help="frames between consecutive windows' last frames")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate of a frames folder (time = index/fps); videos use their timestamps")
    parser.add_argument("--sample-fps", type=float, default=None, help="resample a video to this many frames per second")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize frames to this longest edge in px; None: the processor's longest edge")
    parser.add_argument("--short-input", choices=SHORT_CLIP_POLICIES, default=DEFAULT_SHORT_CLIP_POLICY,
                        help="fewer frames than a window needs: pad (repeat the earliest frame) or error")
    parser.add_argument("--out", default=None, help="JSON-lines output file; None: stdout")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    add_model_loading_args(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_path = Path(args.out) if args.out else None
    handle = None
    try:
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(out_path, "w", encoding="utf-8")
        summary = predict(
            args.model, args.input, handle or sys.stdout, frames=args.frames, stride=args.stride, hop=args.hop,
            fps=args.fps, sample_fps=args.sample_fps, image_size=args.image_size, short_input=args.short_input,
            max_new_tokens=args.max_new_tokens, image_splitting=args.image_splitting,
            image_longest_edge=args.image_longest_edge, device=args.device, precision=args.precision,
            progress=not args.no_progress, decoding=args.decoding,
        )
    except (FrameError, EvaluationError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if handle is not None:
            handle.close()
    report = sys.stdout if out_path is not None else sys.stderr
    if summary["windows"]:
        print(
            f"latency per window over {summary['windows']} windows: mean {summary['latency_mean_s']:.3f} s, "
            f"p50 {summary['latency_p50_s']:.3f} s, p90 {summary['latency_p90_s']:.3f} s",
            file=report,
        )
    if out_path is not None:
        summary["out"] = str(out_path)
    print(json.dumps({"summary": summary}), file=report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
