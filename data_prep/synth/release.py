"""The release writer: a world written to disk in the exact layout of a BDD-OIA release.

Layout written under ``<root>`` (see the team brief, "Synthetic world on disk")::

    data/<id>.jpg                             the last frame of each clip
    {train,val,test}_25k_images_actions.json  {"images": [...], "annotations": [...]}
    {train,val,test}_25k_images_reasons.json  [{"file_name", "reason"}]
    clips/<id>/000.jpg ... NNN.jpg            clip frames in time order
    descriptions.json                         {"<id>": "reference description"}
    videos/<id>.mp4                           with --videos
    truth.json                                the generator's own labels (for tests)
    synth_config.json                         the seed and WorldConfig used

Splits, annotation-file quirks (shuffled ids, confuse entries, reason order B), staging beside the
root and publishing by rename live here.
"""

from __future__ import annotations

import functools
import io
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from data_prep.synth.render import make_clip
from data_prep.synth.world import (
    SALT_FILES,
    SALT_SPLIT,
    WorldConfig,
    as_written,
    describe,
    scene_labels,
)
from taxonomy.labels import (
    ACTION_KEYS,
    DEFAULT_REASON_ORDER,
    REASON_KEYS,
    actions_to_vector,
    inconsistent_reasons,
    load_reason_order,
    reasons_to_vector,
)

SPLITS = ("train", "val", "test")
ID_PREFIX = "synth-"
ID_DIGITS = 6  # "synth-000123"; more digits are used automatically past a million clips
ACTIONS_FILE = "{split}_25k_images_actions.json"
REASONS_FILE = "{split}_25k_images_reasons.json"
TRUTH_FILE = "truth.json"
DESCRIPTIONS_FILE = "descriptions.json"
CONFIG_FILE = "synth_config.json"


@dataclass
class ClipTruth:
    """The generator's labels for one clip (what a reader should recover from the files)."""

    id: str
    split: str
    actions: list[int]  # [F, S, L, R]
    reasons: list[int]  # 21 ints, canonical order (taxonomy.labels.REASON_KEYS)
    description: str
    confuse: bool
    annotation_id: int = -1  # the int "id" joining images and annotations in the actions file
    scene: dict = field(default_factory=dict)  # SceneFacts as a dict

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Writing


def clip_id(index: int) -> str:
    return f"{ID_PREFIX}{index:0{ID_DIGITS}d}"


def _jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_video(path: Path, frames: Sequence[Image.Image], config: WorldConfig) -> None:
    import av  # only needed with --videos

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(config.video_codec, rate=config.video_fps)
        stream.width, stream.height = config.width, config.height
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1  # workers already use every core
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_clip(task: tuple[int, str, bool], root: Path, seed: int, config: WorldConfig,
                videos: bool) -> dict:
    """Render clip `index` and write its frames; return its truth record."""
    index, split, confuse = task
    cid = clip_id(index)
    facts, frames = make_clip(seed, index, config)
    actions, reasons = scene_labels(facts)
    frame_dir = root / "clips" / cid
    frame_dir.mkdir(parents=True, exist_ok=True)
    data = b""
    for i, image in enumerate(frames):
        data = _jpeg_bytes(image, config.jpeg_quality)
        (frame_dir / f"{i:03d}.jpg").write_bytes(data)
    (root / "data" / f"{cid}.jpg").write_bytes(data)  # the annotated last frame, same bytes
    if videos:
        _write_video(root / "videos" / f"{cid}.mp4", frames, config)
    return ClipTruth(
        id=cid,
        split=split,
        actions=actions_to_vector(actions),
        reasons=reasons_to_vector(reasons),
        description=describe(facts),
        confuse=confuse,
        scene=as_written(facts),
    ).to_dict()


def _assign_splits(num_clips: int, seed: int, config: WorldConfig) -> tuple[list[str], list[bool]]:
    rng = np.random.default_rng([seed, SALT_SPLIT])
    n_train = round(num_clips * config.train_fraction)
    n_val = min(round(num_clips * config.val_fraction), num_clips - n_train)
    order = rng.permutation(num_clips)
    split_of = [""] * num_clips
    for rank, index in enumerate(order):
        split_of[int(index)] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    n_confuse = round(num_clips * config.confuse_fraction)
    if config.confuse_fraction > 0:
        n_confuse = max(1, n_confuse)  # so the readers' drop path is always exercised
    confuse = [False] * num_clips
    for index in rng.choice(num_clips, size=min(n_confuse, num_clips), replace=False):
        confuse[int(index)] = True
    return split_of, confuse


def _write_annotations(root: Path, truths: list[ClipTruth], seed: int, config: WorldConfig) -> None:
    """The six BDD-OIA annotation files; fills in each truth's annotation_id."""
    order_b = load_reason_order(DEFAULT_REASON_ORDER)
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, SALT_FILES, split_index])
        members = [t for t in truths if t.split == split]
        ids = config.annotation_id_offset + rng.permutation(len(members))
        images, annotations, reasons = [], [], []
        for truth, ann_id in zip(members, ids):
            truth.annotation_id = int(ann_id)
            images.append({"file_name": f"{truth.id}.jpg", "id": int(ann_id),
                           "height": config.height, "width": config.width})
            category = list(truth.actions)
            if truth.confuse:
                category.append(1)
            elif rng.random() < config.explicit_zero_confuse_fraction:
                category.append(0)
            annotations.append({"id": int(ann_id), "category": category})
            # Reasons are stored in file order B, which maps canonical keys to positions.
            keys = [REASON_KEYS[i] for i, v in enumerate(truth.reasons) if v]
            reasons.append({"file_name": f"{truth.id}.jpg", "reason": reasons_to_vector(keys, order_b)})
        annotations = [annotations[int(i)] for i in rng.permutation(len(annotations))]
        reasons = [reasons[int(i)] for i in rng.permutation(len(reasons))]
        _write_json(root / ACTIONS_FILE.format(split=split), {"images": images,
                                                              "annotations": annotations})
        _write_json(root / REASONS_FILE.format(split=split), reasons)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False) + "\n")


def _check_consistent(truth: ClipTruth) -> None:
    actions = [k for k, v in zip(ACTION_KEYS, truth.actions) if v]
    reasons = [k for k, v in zip(REASON_KEYS, truth.reasons) if v]
    bad = inconsistent_reasons(actions, reasons)
    if bad:  # a bug in scene_labels, never a property of the data
        raise AssertionError(f"clip {truth.id}: reasons {bad} contradict actions {actions}")


def _prepare_output(root: Path, overwrite: bool) -> Path:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{root} exists and is not empty; refusing to overwrite it (pass --overwrite, or "
            "overwrite=True, to replace it once the new world is complete)"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    for sub in ("data", "clips"):
        (staging / sub).mkdir(parents=True)
    return staging


def _publish(staging: Path, root: Path) -> None:
    """Move the finished world into place; an old one is removed only after the new one is in."""
    old = None
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        root.rename(old)
    staging.rename(root)
    if old is not None:
        shutil.rmtree(old)


def generate(
    root: str | Path,
    num_clips: int,
    seed: int = 0,
    config: WorldConfig = WorldConfig(),
    num_proc: int = 1,
    videos: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> list[ClipTruth]:
    """Write a synthetic BDD-OIA release of `num_clips` clips under `root`; return the truth.

    Deterministic in (num_clips, seed, config): the same arguments give byte-identical annotation
    files and frames whatever `num_proc`. The world is written into a staging folder beside `root`
    and renamed into place at the end, so an interrupted run leaves `root` as it was.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips={num_clips} must be >= 1")
    root = Path(root)
    staging = _prepare_output(root, overwrite)
    try:
        if videos:
            if config.width % 2 or config.height % 2:
                raise ValueError(f"--videos needs an even frame size, got {config.width}x{config.height}")
            (staging / "videos").mkdir()
        split_of, confuse = _assign_splits(num_clips, seed, config)
        tasks = [(i, split_of[i], confuse[i]) for i in range(num_clips)]
        worker = functools.partial(_write_clip, root=staging, seed=seed, config=config, videos=videos)
        bar = tqdm(total=num_clips, desc="synth clips", unit="clip", disable=not progress)
        records = []
        if num_proc > 1:
            chunk = max(1, min(64, num_clips // (num_proc * 8)))
            with multiprocessing.Pool(num_proc) as pool:
                for record in pool.imap(worker, tasks, chunksize=chunk):
                    records.append(record)
                    bar.update()
        else:
            for task in tasks:
                records.append(worker(task))
                bar.update()
        bar.close()
        truths = [ClipTruth(**r) for r in records]
        for truth in truths:
            _check_consistent(truth)
        _write_annotations(staging, truths, seed, config)
        _write_json(staging / DESCRIPTIONS_FILE, {t.id: t.description for t in truths})
        _write_json(staging / TRUTH_FILE, [t.to_dict() for t in truths])
        _write_json(staging / CONFIG_FILE, {"seed": seed, "num_clips": num_clips,
                                            "config": as_written(config)})
        _publish(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return truths


def load_truth(root: str | Path) -> list[ClipTruth]:
    """The generator's truth records written beside a synthetic world."""
    path = Path(root) / TRUTH_FILE
    return [ClipTruth(**r) for r in json.loads(path.read_text())]


def label_rates(truths: Sequence[ClipTruth]) -> dict[str, float]:
    """Fraction of clips with each action and reason set."""
    n = max(len(truths), 1)
    rates = {k: sum(t.actions[i] for t in truths) / n for i, k in enumerate(ACTION_KEYS)}
    rates.update({k: sum(t.reasons[i] for t in truths) / n for i, k in enumerate(REASON_KEYS)})
    return rates
