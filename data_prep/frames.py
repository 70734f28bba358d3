"""Clip frames per sample: M frames ending at the annotated (last) frame, every ``stride``-th one.

Where a clip's frames come from, in this order of preference for a sample id:
1. a folder of frames ``<frames_dir>/<id>/*.jpg`` (time order = natural sort of the names,
   e.g. 000.jpg, 001.jpg, ... or frame_2 before frame_10);
2. flat frames ``<frames_dir>/<id>_0.jpg ... <id>_K.jpg`` (sorted by the number after the last "_");
3. a video ``<videos_dir>/<id>.mp4|.mov|.avi``, decoded with PyAV;
4. only the annotated frame ``data/<id>.jpg``: enough for M=1; M>1 is an error saying where it looked.
In 1-3 the LAST frame of the clip is the annotated one.

Sampling: with N frames (0..N-1) the frames taken are N-1 - stride*(M-1-j), j = 0..M-1, oldest
first. A clip shorter than the span (M-1)*stride+1 is handled by the ``short_clip`` policy:
``"pad"`` (default) repeats the EARLIEST available frame (frame 0) for every position before the
clip's start, so the model still sees M frames with the real ones last; ``"error"`` refuses.

Frames are RGB and resized so the longest edge equals ``image_size`` (aspect kept).
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".avi")  # preference order for one id
SHORT_CLIP_POLICIES: tuple[str, ...] = ("pad", "error")
DEFAULT_SHORT_CLIP_POLICY = "pad"
RESAMPLE = Image.Resampling.BICUBIC

_NUMBER_RUN = re.compile(r"(\d+)")
FLAT_FRAME_NAME = re.compile(r"^(?P<id>.+)_(?P<index>\d+)$")


class FrameError(ValueError):
    """A clip's frames cannot be read; the message names the file or folder and the sample.
    ``path`` is the offending file or folder when there is one."""

    def __init__(self, message: str, path: Path | str | None = None):
        super().__init__(message)
        self.path = str(path) if path is not None else None

    def __reduce__(self):  # keep ``path`` when the error crosses a process boundary
        return (type(self), (str(self), self.path))


@dataclass(frozen=True)
class FrameSpec:
    frames: int = 4  # M
    stride: int = 1
    image_size: int = 512  # longest edge after resizing
    short_clip: str = DEFAULT_SHORT_CLIP_POLICY

    def __post_init__(self) -> None:
        for name in ("frames", "stride", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.short_clip not in SHORT_CLIP_POLICIES:
            raise ValueError(
                f"short_clip must be one of {SHORT_CLIP_POLICIES}, got {self.short_clip!r}"
            )

    @property
    def span(self) -> int:
        """Frames a clip needs to fill M strided positions without padding."""
        return (self.frames - 1) * self.stride + 1


@dataclass(frozen=True)
class ClipSource:
    """Where one sample's frames are. ``paths``: frame files in time order, or (video,)."""

    id: str
    kind: str  # "folder" | "flat" | "video" | "last_frame"
    paths: tuple[str, ...]

    @property
    def is_video(self) -> bool:
        return self.kind == "video"


def natural_key(name: str) -> tuple:
    """Sort key putting frame_2 before frame_10."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in _NUMBER_RUN.split(name) if t)


def sample_positions(available: int, spec: FrameSpec, clip: str = "clip") -> list[int]:
    """Indices into a clip of ``available`` frames (last = annotated), oldest first.

    Positions before the clip's start become 0 under the "pad" policy (see module doc).
    """
    if available < 1:
        raise FrameError(f"{clip}: holds no frames", clip)
    if available < spec.span and spec.short_clip == "error":
        raise FrameError(
            f"{clip}: has {available} frame(s), fewer than the {spec.span} that --frames "
            f"{spec.frames} --stride {spec.stride} need (use the 'pad' short-clip policy to "
            "repeat the earliest frame)"
        )
    last = available - 1
    return [max(0, last - spec.stride * (spec.frames - 1 - j)) for j in range(spec.frames)]


class ClipIndex:
    """Finds each sample's clip frames. Scans ``frames_dir`` and ``videos_dir`` once, so a flat
    folder of 100k frames is listed once rather than globbed per sample."""

    def __init__(self, frames_dir: Path | str | None = None, videos_dir: Path | str | None = None):
        self.frames_dir = Path(frames_dir) if frames_dir else None
        self.videos_dir = Path(videos_dir) if videos_dir else None
        self._folders: set[str] = set()
        self._flat: dict[str, list[tuple[int, str]]] = {}
        self._videos: dict[str, str] = {}
        for name, folder in (("frames", self.frames_dir), ("videos", self.videos_dir)):
            if folder is not None and not folder.is_dir():
                raise FrameError(f"{name} folder {folder} does not exist")
        if self.frames_dir is not None:
            with os.scandir(self.frames_dir) as entries:
                for entry in entries:
                    if entry.is_dir():
                        self._folders.add(entry.name)
                        continue
                    stem, ext = os.path.splitext(entry.name)
                    match = FLAT_FRAME_NAME.match(stem)
                    if ext.lower() in IMAGE_EXTENSIONS and match:
                        self._flat.setdefault(match["id"], []).append(
                            (int(match["index"]), entry.path)
                        )
        if self.videos_dir is not None:
            found: dict[str, list[str]] = {}
            with os.scandir(self.videos_dir) as entries:
                for entry in entries:
                    stem, ext = os.path.splitext(entry.name)
                    if ext.lower() in VIDEO_EXTENSIONS and entry.is_file():
                        found.setdefault(stem, []).append(entry.path)
            rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
            for stem, paths in found.items():
                self._videos[stem] = min(paths, key=lambda p: rank[os.path.splitext(p)[1].lower()])

    @property
    def has_clips(self) -> bool:
        return bool(self._folders or self._flat or self._videos)

    def looked_in(self, sample_id: str = "<id>") -> str:
        places = []
        if self.frames_dir is not None:
            places.append(f"{self.frames_dir / sample_id}/*.jpg")
            places.append(f"{self.frames_dir / sample_id}_<k>.jpg")
        if self.videos_dir is not None:
            places.append(f"{self.videos_dir / sample_id}{{{','.join(VIDEO_EXTENSIONS)}}}")
        if not places:
            return "nowhere: no frames folder or videos folder was given or found under the root"
        return ", ".join(places)

    def source(self, sample_id: str, last_frame: Path | str, frames: int) -> ClipSource:
        """The sample's frame source; raises :class:`FrameError` when M>1 and it has no clip."""
        if sample_id in self._folders:
            folder = self.frames_dir / sample_id
            names = sorted(
                (n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS),
                key=natural_key,
            )
            if not names:
                raise FrameError(f"clip folder {folder} (sample {sample_id}) holds no frames", folder)
            return ClipSource(sample_id, "folder", tuple(str(folder / n) for n in names))
        if sample_id in self._flat:
            ordered = sorted(self._flat[sample_id])
            return ClipSource(sample_id, "flat", tuple(p for _, p in ordered))
        if sample_id in self._videos:
            return ClipSource(sample_id, "video", (self._videos[sample_id],))
        if frames > 1:
            raise FrameError(
                f"sample {sample_id}: no clip frames found for --frames {frames} (looked in "
                f"{self.looked_in(sample_id)}); only the annotated last frame {last_frame} is "
                "known, which serves --frames 1 only"
            )
        return ClipSource(sample_id, "last_frame", (str(last_frame),))


def resize_longest_edge(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, RESAMPLE)


def load_image(path: Path | str, image_size: int, sample_id: str = "") -> Image.Image:
    """An RGB frame resized to ``image_size`` on its longest edge; FrameError naming the file."""
    who = f" (sample {sample_id})" if sample_id else ""
    try:
        with Image.open(path) as image:
            # JPEG can decode straight to 1/2, 1/4 or 1/8 scale; draft keeps both edges >= the
            # requested size, so the final resize still only shrinks. Much faster on 1280x720.
            image.draft("RGB", (image_size, image_size))
            image.load()
            rgb = image.convert("RGB")
    except FileNotFoundError as err:
        raise FrameError(f"{path}: frame file missing{who}", path) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise FrameError(f"{path}: corrupt or unreadable image{who} ({err})", path) from err
    return resize_longest_edge(rgb, image_size)


def read_video_tail(path: Path | str, count: int, sample_id: str = "") -> list[Image.Image]:
    """The last ``count`` frames of a video (fewer if it is shorter), oldest first, as RGB.

    Decodes the whole stream (the clip's end is the annotated frame) but keeps only ``count``
    frames, so memory does not grow with the video's length.
    """
    import av  # imported here: only video sources need PyAV

    who = f" (sample {sample_id})" if sample_id else ""
    tail: deque = deque(maxlen=count)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream{who}", path)
            for frame in container.decode(video=0):
                tail.append(frame)
            images = [frame.to_image() for frame in tail]
    except FrameError:
        raise
    except FileNotFoundError as err:
        raise FrameError(f"{path}: video file missing{who}", path) from err
    except (av.FFmpegError, OSError, ValueError) as err:
        raise FrameError(f"{path}: corrupt or unreadable video{who} ({err})", path) from err
    if not images:
        raise FrameError(f"{path}: video holds no decodable frames{who}", path)
    return [image.convert("RGB") for image in images]


def selected_paths(source: ClipSource, spec: FrameSpec) -> list[str]:
    """The M frame files of an image source, oldest first (padding repeats the earliest)."""
    if source.is_video:
        raise ValueError("selected_paths is for frame files; a video's frames are chosen on decode")
    where = str(Path(source.paths[0]).parent) if source.kind == "folder" else source.paths[0]
    positions = sample_positions(len(source.paths), spec, clip=f"{where} (sample {source.id})")
    return [source.paths[p] for p in positions]


def load_frame_files(paths: Sequence[str], image_size: int, sample_id: str = "") -> list[Image.Image]:
    """Load already selected frame files; a file repeated by padding is decoded once."""
    loaded: dict[str, Image.Image] = {}
    for path in paths:
        if path not in loaded:
            loaded[path] = load_image(path, image_size, sample_id)
    return [loaded[p] for p in paths]


def load_frames(source: ClipSource, spec: FrameSpec) -> list[Image.Image]:
    """The M frames of a clip (oldest first, last = annotated), RGB, resized."""
    if source.is_video:
        video = source.paths[0]
        tail = read_video_tail(video, spec.span, source.id)
        # A video's frame count is only known after decoding: "available" is the tail's length,
        # which is the whole clip whenever the clip is shorter than the span.
        positions = sample_positions(len(tail), spec, clip=f"{video} (sample {source.id})")
        resized = {pos: resize_longest_edge(tail[pos], spec.image_size) for pos in set(positions)}
        return [resized[p] for p in positions]
    return load_frame_files(selected_paths(source, spec), spec.image_size, source.id)
