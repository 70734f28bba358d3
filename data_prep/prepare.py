"""Build the training DatasetDict (train/val/test) from a BDD-OIA release or the synthetic world.

    python -m data_prep.prepare --root R --out O --frames 4 --stride 1 --image-size 512 --num-proc 2

Steps, in this order:
1. read and validate every annotation record (data_prep.bddoia) and find every sample's clip
   frames (data_prep.frames): all problems are reported BEFORE anything is written;
2. fingerprint the inputs (annotation and description files' hashes, size and mtime of every
   frame file read, all options): if OUT already holds a dataset with that fingerprint, print
   "up to date" and stop;
3. decode frames in ``num_proc`` worker processes with Dataset.from_generator over sharded
   sample lists, which write Arrow shards as they go (memory stays flat however large the set);
4. save_to_disk into a temporary folder beside OUT and rename it to OUT at the end: a failed
   run leaves no half-written dataset and an existing OUT untouched.

The columns are the team contract (see /tmp/team/BRIEF.md): id, frames (Sequence(Image())),
actions, reasons (canonical order), description, prompt (M image placeholders, no text),
completion, answer_json, answer_text.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from core.logs import configure_logging
from taxonomy.answer import format_answer, format_text_answer
from taxonomy.labels import DEFAULT_REASON_ORDER, actions_from_vector, reasons_from_vector

from data_prep.bddoia import (
    DATA_DIR_NAME,
    SPLITS,
    AnnotationError,
    BddOia,
    Problem,
    Record,
    format_problems,
    load_json,
    read_bddoia,
    template_description,
)
from data_prep.frames import (
    DEFAULT_SHORT_CLIP_POLICY,
    FLAT_FRAME_NAME,
    IMAGE_EXTENSIONS,
    SHORT_CLIP_POLICIES,
    ClipIndex,
    ClipSource,
    FrameError,
    FrameSpec,
    load_frame_files,
    load_frames,
    selected_paths,
)

# Bump when the written columns or their content change, so old outputs are rebuilt.
FORMAT_VERSION = 1
FINGERPRINT_FILE = "prepare_fingerprint.json"
SKIPPED_FILE = "skipped.json"
PARTIAL_MARK = ".partial-"  # build folders beside OUT: .<OUT name>.partial-<pid>-<random>
CLIPS_DIR_NAME = "clips"
VIDEOS_DIR_NAME = "videos"
DESCRIPTIONS_FILE = "descriptions.json"

DEFAULT_FRAMES = 4
DEFAULT_STRIDE = 1
# SmolVLM-256M/500M tile edge: with image splitting off one frame is then one 64-token tile.
DEFAULT_IMAGE_SIZE = 512
DEFAULT_NUM_PROC = 1
IMAGE_FORMATS = ("jpeg", "png")
DEFAULT_IMAGE_FORMAT = "jpeg"  # the sources are JPEG; PNG of resized frames is several times larger
DEFAULT_JPEG_QUALITY = 90
DEFAULT_MAX_PROBLEMS_SHOWN = 20
# Samples per generator shard: small enough to balance workers, large enough to amortise overhead.
DEFAULT_SAMPLES_PER_SHARD = 256
HASH_CHUNK_BYTES = 1 << 20

logger = logging.getLogger(__name__)


class PrepareError(RuntimeError):
    """prepare cannot go on (OUT in the way, a frame that cannot be decoded, ...)."""


@dataclass
class PrepareResult:
    out: Path
    reused: bool  # True when OUT was already up to date and nothing was rebuilt
    fingerprint: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    def load(self):
        from datasets import load_from_disk

        return load_from_disk(str(self.out))


# ---------------------------------------------------------------------------------------------
# Columns


def dataset_features():
    """The contract's columns and types."""
    from datasets import Features, Image, List, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "frames": Sequence(Image()),
            "actions": Sequence(Value("int64")),
            "reasons": Sequence(Value("int64")),
            "description": Value("string"),
            "prompt": List(
                {"role": Value("string"), "content": List({"type": Value("string")})}
            ),
            "completion": List(
                {
                    "role": Value("string"),
                    "content": List({"type": Value("string"), "text": Value("string")}),
                }
            ),
            "answer_json": Value("string"),
            "answer_text": Value("string"),
        }
    )


def conversation_columns(num_frames: int, answer_json: str) -> dict:
    """prompt: M image placeholders and no text at all; completion: the JSON answer."""
    return {
        "prompt": [{"role": "user", "content": [{"type": "image"} for _ in range(num_frames)]}],
        "completion": [
            {"role": "assistant", "content": [{"type": "text", "text": answer_json}]}
        ],
    }


def _encode(image, image_format: str, jpeg_quality: int) -> dict:
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _append_jsonl(path: str, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def generate_examples(shards: list[dict], settings: dict) -> Iterator[dict]:
    """Dataset.from_generator's generator: decodes one sample at a time (runs in workers).

    Frame errors under skip_bad are appended to a per-shard JSONL file that the main process
    merges into skipped.json; otherwise the message is kept in a file too (exceptions lose their
    text crossing the worker pool) and the error is raised, failing the whole build.
    """
    spec = FrameSpec(**settings["spec"])
    for shard in shards:
        with open(shard["path"], encoding="utf-8") as handle:
            samples = [json.loads(line) for line in handle]
        for sample in samples:
            try:
                if sample["kind"] == "video":
                    frames = load_frames(ClipSource(sample["id"], "video", tuple(sample["paths"])), spec)
                else:  # the M frame files were chosen while planning
                    frames = load_frame_files(sample["paths"], spec.image_size, sample["id"])
                annotated = sample.get("annotated")
                if annotated and annotated not in sample["paths"]:
                    # The labelled frame is the clip's reason to exist: a corrupt one is a bad sample
                    # even when the clip's frames come from elsewhere.
                    load_frame_files([annotated], spec.image_size, sample["id"])
            except FrameError as err:
                entry = {
                    "file": err.path or sample["paths"][0],
                    "record": f"id={sample['id']!r}",
                    "message": str(err),
                    "split": shard["split"],
                }
                if settings["skip_bad"]:
                    _append_jsonl(os.path.join(settings["skipped_dir"], f"{shard['name']}.jsonl"), entry)
                    continue
                _append_jsonl(os.path.join(settings["errors_dir"], f"{shard['name']}.jsonl"), entry)
                raise
            actions = actions_from_vector(sample["actions"])
            reasons = reasons_from_vector(sample["reasons"])
            answer_json = format_answer(sample["description"], actions, reasons)
            yield {
                "id": sample["id"],
                "frames": [
                    _encode(f, settings["image_format"], settings["jpeg_quality"]) for f in frames
                ],
                "actions": sample["actions"],
                "reasons": sample["reasons"],
                "description": sample["description"],
                **conversation_columns(len(frames), answer_json),
                "answer_json": answer_json,
                "answer_text": format_text_answer(sample["description"], actions, reasons),
            }


# ---------------------------------------------------------------------------------------------
# Planning (validation before any writing)


@dataclass
class Plan:
    samples: dict[str, list[dict]]  # split -> sample payloads (small: paths and labels only)
    problems: list[Problem]  # skipped (only with skip_bad)
    files_digest: str  # hash of path, size and mtime of every frame file the build will read
    descriptions_file: Path | None
    templated: int  # samples whose description is the label template


def load_descriptions(root: Path) -> tuple[dict[str, str], Path | None]:
    path = root / DESCRIPTIONS_FILE
    if not path.is_file():
        return {}, None
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected an object mapping sample id to description")
    return data, path


def has_flat_clip_frames(folder: Path) -> bool:
    """Whether ``folder`` holds clip frames ``<id>_<k>.jpg`` beside an annotated ``<id>.jpg`` (a
    layout public BDD-OIA derivatives use)."""
    if not folder.is_dir():
        return False
    stems, flat_ids = set(), set()
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            stems.add(stem)
            match = FLAT_FRAME_NAME.match(stem)
            if match:
                flat_ids.add(match["id"])
    return bool(flat_ids & stems)


def resolve_clip_dirs(
    root: Path, frames_dir: Path | str | None, videos_dir: Path | str | None
) -> tuple[Path | None, Path | None]:
    """Explicit folders win; otherwise <root>/clips and <root>/videos when they exist, else
    <root>/data itself when it holds ``<id>_<k>.jpg`` clip frames beside the annotated ``<id>.jpg``."""
    if frames_dir is None and (root / CLIPS_DIR_NAME).is_dir():
        frames_dir = root / CLIPS_DIR_NAME
    if frames_dir is None and has_flat_clip_frames(root / DATA_DIR_NAME):
        frames_dir = root / DATA_DIR_NAME
    if videos_dir is None and (root / VIDEOS_DIR_NAME).is_dir():
        videos_dir = root / VIDEOS_DIR_NAME
    return (Path(frames_dir) if frames_dir else None, Path(videos_dir) if videos_dir else None)


def plan_samples(
    data: BddOia,
    index: ClipIndex,
    spec: FrameSpec,
    descriptions: dict[str, str],
    descriptions_file: Path | None,
) -> Plan:
    """Each record's frame source and description; a Problem per sample that cannot be built."""
    from tqdm.auto import tqdm

    if spec.frames > 1 and not index.has_clips and data.records:
        raise FrameError(
            f"--frames {spec.frames} needs clip frames, but no clip frames were found: looked in "
            f"{index.looked_in()}. Only the annotated last frames under {data.root / 'data'} exist, "
            "which serve --frames 1 only; pass --frames-dir or --videos-dir"
        )
    samples: dict[str, list[dict]] = {split: [] for split in {r.split for r in data.records}}
    problems: list[Problem] = []
    files = hashlib.sha256()
    templated = 0
    for record in tqdm(data.records, desc="finding clip frames", unit="clip", mininterval=1.0):
        try:
            source = index.source(record.id, record.image_path, spec.frames)
            # Frame files are chosen now (a short clip under the "error" policy fails here, before
            # anything is written); a video's length is known only once it is decoded.
            paths = list(source.paths) if source.is_video else selected_paths(source, spec)
        except FrameError as err:
            problems.append(Problem(str(index.frames_dir or record.image_path), f"id={record.id!r}",
                                    str(err), record.split))
            continue
        description = descriptions.get(record.id)
        if description is not None and (not isinstance(description, str) or not description.strip()):
            problems.append(Problem(str(descriptions_file), f"id={record.id!r}",
                                    "description is not a non-empty string", record.split))
            continue
        if description is None:
            description = template_description(record.actions, record.reasons)
            templated += 1
        for path in dict.fromkeys(paths):
            stat = os.stat(path)
            files.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        samples[record.split].append(_payload(record, source.kind, paths, description, record.image_path))
    return Plan(samples, problems, files.hexdigest(), descriptions_file, templated)


def skipped_samples(problems: list[dict]) -> list[dict]:
    """One entry per skipped sample (what ``skipped.json`` counts), each with all its reasons:
    ``{"record", "split", "problems": [{"file", "message"}, ...]}``, in the order first seen."""
    samples: dict[tuple[str, str], dict] = {}
    for problem in problems:
        key = (problem.get("split", ""), problem["record"])
        entry = samples.setdefault(key, {"record": problem["record"], "split": key[0], "problems": []})
        entry["problems"].append({"file": problem["file"], "message": problem["message"]})
    return list(samples.values())


def _emptied_split_error(split: str, failures: list[dict]) -> FrameError:
    shown = "; ".join(f"{e['file']}: {e['message']}" for e in failures[:3])
    return FrameError(
        f"--skip-bad would leave split {split!r} empty: none of its samples could be decoded (nothing was "
        f"written). First failures: {shown}"
    )


def _payload(record: Record, kind: str, paths: list[str], description: str, annotated: Path | str) -> dict:
    return {
        "id": record.id,
        "kind": "video" if kind == "video" else "frames",
        "paths": paths,
        "annotated": str(annotated),
        "actions": list(record.actions),
        "reasons": list(record.reasons),
        "description": description,
    }


# ---------------------------------------------------------------------------------------------
# Fingerprint


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def input_fingerprint(data: BddOia, plan: Plan, options: dict) -> str:
    """Changes when any annotation, description, frame file read, or option changes."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format_version": FORMAT_VERSION, "options": options},
                             sort_keys=True).encode())
    hashed = dict(data.annotation_files)
    if plan.descriptions_file is not None:
        hashed["descriptions"] = plan.descriptions_file
    for name in sorted(hashed):
        digest.update(f"{name}={file_sha256(Path(hashed[name]))}\n".encode())
    digest.update(f"frame files={plan.files_digest}\n".encode())
    return digest.hexdigest()


def read_fingerprint(out: Path) -> dict | None:
    path = out / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _versions() -> dict[str, str]:
    import PIL
    import datasets

    found = {"python": sys.version.split()[0], "datasets": datasets.__version__, "pillow": PIL.__version__}
    try:
        import av

        found["av"] = av.__version__
    except ImportError:
        pass
    return found


# ---------------------------------------------------------------------------------------------
# Build


def write_shards(split: str, samples: list[dict], folder: Path, num_proc: int,
                 samples_per_shard: int) -> list[dict]:
    """Write a split's sample payloads as JSONL shard files; return the shard descriptors.

    At least one shard per worker (datasets runs one process per shard at most), otherwise about
    ``samples_per_shard`` samples each; contiguous, so the output keeps the input order. The
    payloads then leave the main process's memory before the workers are forked.
    """
    if not samples:
        return []
    num_shards = min(len(samples), max(num_proc, math.ceil(len(samples) / samples_per_shard)))
    bounds = [round(i * len(samples) / num_shards) for i in range(num_shards + 1)]
    shards = []
    for i in range(num_shards):
        name = f"{split}-{i:05d}"
        path = folder / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for sample in samples[bounds[i]:bounds[i + 1]]:
                handle.write(json.dumps(sample) + "\n")
        shards.append({"name": name, "split": split, "path": str(path)})
    return shards


def _build_split(split: str, shards: list[dict], settings: dict, num_proc: int, cache_dir: Path,
                 fingerprint: str):
    from datasets import Dataset

    features = dataset_features()
    if not shards:
        return Dataset.from_dict({name: [] for name in features}, features=features, split=split)
    # Only "shards" is a list: from_generator splits list-valued gen_kwargs between workers.
    return Dataset.from_generator(
        generate_examples,
        features=features,
        gen_kwargs={"shards": shards, "settings": settings},
        num_proc=num_proc if num_proc > 1 else None,
        cache_dir=str(cache_dir),
        split=split,
        fingerprint=f"{fingerprint}-{split}",
    )


def _read_jsonl_dir(folder: Path) -> list[dict]:
    entries = []
    for path in sorted(folder.glob("*.jsonl")):
        entries.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return entries


def _is_prepared_dataset(folder: Path) -> bool:
    return (folder / FINGERPRINT_FILE).is_file() or (folder / "dataset_dict.json").is_file()


def prepare(
    root: Path | str,
    out: Path | str,
    frames: int = DEFAULT_FRAMES,
    stride: int = DEFAULT_STRIDE,
    image_size: int = DEFAULT_IMAGE_SIZE,
    frames_dir: Path | str | None = None,
    videos_dir: Path | str | None = None,
    reason_order: str | Path = DEFAULT_REASON_ORDER,
    num_proc: int = DEFAULT_NUM_PROC,
    skip_bad: bool = False,
    overwrite: bool = False,
    short_clip: str = DEFAULT_SHORT_CLIP_POLICY,
    image_format: str = DEFAULT_IMAGE_FORMAT,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    splits: Sequence[str] = SPLITS,
    max_problems_shown: int = DEFAULT_MAX_PROBLEMS_SHOWN,
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
) -> PrepareResult:
    """Prepare ``out`` from the release at ``root``; see the module doc for the steps.

    ``overwrite`` rebuilds even when OUT is up to date and replaces an OUT prepared from other
    inputs (only a folder that holds a prepared dataset is ever replaced). Without it, an OUT
    from other inputs is an error. Returns where the dataset is and whether it was reused.
    """
    started = time.monotonic()
    # Absolute paths: the fingerprint then does not depend on the working directory.
    root, out = Path(root).resolve(), Path(out).resolve()
    spec = FrameSpec(frames=frames, stride=stride, image_size=image_size, short_clip=short_clip)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if num_proc < 1:
        raise ValueError(f"num_proc must be >= 1, got {num_proc}")
    frames_dir, videos_dir = resolve_clip_dirs(root, frames_dir, videos_dir)
    frames_dir = frames_dir.resolve() if frames_dir else None
    videos_dir = videos_dir.resolve() if videos_dir else None

    # 1. Validation, before anything is written.
    logger.info(f"reading annotations under {root}")
    data = read_bddoia(root, reason_order=reason_order, splits=splits, skip_bad=skip_bad,
                       max_problems_shown=max_problems_shown)
    descriptions, descriptions_file = load_descriptions(root)
    index = ClipIndex(frames_dir, videos_dir)
    plan = plan_samples(data, index, spec, descriptions, descriptions_file)
    problems = data.skipped + plan.problems
    if plan.problems and not skip_bad:
        raise FrameError(format_problems(plan.problems, max_problems_shown))
    counts = {split: len(plan.samples.get(split, [])) for split in splits}
    had_input = {p.split for p in problems} | {r.split for r in data.records}
    emptied = [split for split in splits if split in had_input and not counts[split]]
    if emptied:
        raise FrameError(
            f"--skip-bad would leave split(s) {emptied} empty: every sample there is bad. "
            + format_problems(problems, max_problems_shown)
        )
    logger.info(
        f"{sum(counts.values())} samples ({', '.join(f'{s} {n}' for s, n in counts.items())}); "
        f"dropped as 'confuse': {sum(data.dropped_confuse.values())}; skipped as bad: {len(problems)}; "
        f"frames from {frames_dir or '-'} / videos from {videos_dir or '-'}; "
        f"template descriptions: {plan.templated}"
    )

    # 2. Reuse an up-to-date OUT.
    options = {
        "frames": frames, "stride": stride, "image_size": image_size, "short_clip": short_clip,
        "reason_order": list(data.reason_order), "splits": list(splits), "skip_bad": skip_bad,
        "image_format": image_format, "jpeg_quality": jpeg_quality,
        "frames_dir": str(frames_dir) if frames_dir else None,
        "videos_dir": str(videos_dir) if videos_dir else None,
    }
    fingerprint = input_fingerprint(data, plan, options)
    data.records = []  # the plan holds what the build needs; keep memory to the minimum
    if out.exists():
        previous = read_fingerprint(out)
        if previous and previous.get("fingerprint") == fingerprint and not overwrite:
            logger.info(f"up to date: {out} was prepared from these inputs and options; nothing to do")
            return PrepareResult(out, True, fingerprint, previous.get("counts", counts),
                                 previous.get("skipped", []))
        if not overwrite:
            raise PrepareError(
                f"{out} already exists and was not prepared from these inputs and options; "
                "pass --overwrite to replace it (or choose another --out)"
            )
        if not out.is_dir() or not _is_prepared_dataset(out):
            raise PrepareError(
                f"{out} exists but does not hold a prepared dataset; refusing to replace it even "
                "with --overwrite"
            )

    # 3.-4. Build beside OUT, then swap it in.
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    work = out.parent / f".{out.name}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        skipped_dir, errors_dir = work / "skipped", work / "errors"
        skipped_dir.mkdir()
        errors_dir.mkdir()
        settings = {
            "spec": {"frames": frames, "stride": stride, "image_size": image_size,
                     "short_clip": short_clip},
            "skip_bad": skip_bad,
            "image_format": image_format,
            "jpeg_quality": jpeg_quality,
            "skipped_dir": str(skipped_dir),
            "errors_dir": str(errors_dir),
        }
        from datasets import DatasetDict

        shards_dir = work / "shards"
        shards_dir.mkdir()
        shards = {split: write_shards(split, plan.samples.get(split, []), shards_dir, num_proc,
                                      samples_per_shard) for split in splits}
        # Forked workers share the main process's memory copy-on-write; Python's garbage
        # collector would touch (and so copy) every object in each worker. Drop the per-sample
        # metadata and freeze what is left, so memory does not grow with the set times workers.
        plan.samples.clear()
        del descriptions, index
        gc.collect()
        gc.freeze()
        built = {}
        try:
            for split in splits:
                logger.info(f"decoding {split}: {counts[split]} clips x {frames} frames, num_proc={num_proc}")
                try:
                    built[split] = _build_split(split, shards[split], settings, num_proc,
                                                work / "cache", fingerprint)
                except Exception as err:
                    errors = _read_jsonl_dir(errors_dir)
                    if errors:  # the worker's own message, naming the file and sample
                        raise FrameError(
                            f"{errors[0]['message']} (nothing was written; --skip-bad leaves such "
                            "samples out)"
                        ) from err
                    failed = [e for e in _read_jsonl_dir(skipped_dir) if e["split"] == split]
                    if skip_bad and counts[split] and len(failed) >= counts[split]:
                        raise _emptied_split_error(split, failed) from None
                    raise
        finally:
            gc.unfreeze()
        decode_skipped = _read_jsonl_dir(skipped_dir)
        all_skipped = skipped_samples([p.to_dict() for p in problems] + decode_skipped)
        final_counts = {split: len(built[split]) for split in splits}
        for split in splits:  # every sample of a split failed to decode: an empty split is not a dataset
            if counts[split] and not final_counts[split]:
                raise _emptied_split_error(split, [e for e in decode_skipped if e["split"] == split])
        staged = work / "dataset"
        # datasets writes an empty split as zero shards and then cannot load it: ask for one.
        empty = {split: 1 for split in splits if final_counts[split] == 0}
        DatasetDict(built).save_to_disk(str(staged), num_shards=empty or None)
        if skip_bad:
            (staged / SKIPPED_FILE).write_text(json.dumps(all_skipped, indent=1))
        manifest = {
            "fingerprint": fingerprint,
            "format_version": FORMAT_VERSION,
            "root": str(root.resolve()),
            "options": options,
            "counts": final_counts,
            "dropped_confuse": data.dropped_confuse,
            "skipped": all_skipped,
            "template_descriptions": plan.templated,
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staged / FINGERPRINT_FILE).write_text(json.dumps(manifest, indent=1))
        _swap_in(staged, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info(
        f"wrote {out}: {', '.join(f'{s} {n}' for s, n in final_counts.items())}"
        f"{f'; skipped {len(all_skipped)} samples (see {out / SKIPPED_FILE})' if skip_bad else ''}"
        f" in {time.monotonic() - started:.1f}s"
    )
    return PrepareResult(out, False, fingerprint, final_counts, all_skipped)


def remove_stale_partials(out: Path) -> None:
    """Remove build folders beside OUT left by runs that were killed (their process is gone)."""
    prefix = f".{out.name}{PARTIAL_MARK}"
    for folder in out.parent.glob(f"{prefix}*"):
        pid_text = folder.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # still running (another prepare into the same OUT)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        logger.info(f"removing {folder}, left by an interrupted run")
        shutil.rmtree(folder, ignore_errors=True)


def _swap_in(staged: Path, out: Path, work: Path) -> None:
    """Rename the finished dataset to OUT; an old OUT is moved aside first and restored if the
    rename fails (both renames stay on one filesystem: work sits beside OUT)."""
    backup = work / "previous"
    if out.exists():
        os.rename(out, backup)
    try:
        os.rename(staged, out)
    except OSError:
        if backup.exists():
            os.rename(backup, out)
        raise


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.prepare",
        description="Prepare a train/val/test DatasetDict of M-frame clips from a BDD-OIA release "
        "(or the synthetic world in the same layout).",
    )
    parser.add_argument("--root", required=True, type=Path,
                        help="folder holding data/ and the six annotation files")
    parser.add_argument("--out", required=True, type=Path, help="where to save the DatasetDict")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help="frames per sample, ending at the annotated frame (M)")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                        help="take every STRIDE-th frame going back from the annotated one")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="longest edge of the stored frames, in pixels")
    parser.add_argument("--frames-dir", type=Path, default=None,
                        help="clip frames: <dir>/<id>/*.jpg or <dir>/<id>_<k>.jpg "
                        f"(default: <root>/{CLIPS_DIR_NAME} if present)")
    parser.add_argument("--videos-dir", type=Path, default=None,
                        help=f"clip videos <dir>/<id>.mp4|.mov|.avi (default: <root>/{VIDEOS_DIR_NAME} "
                        "if present)")
    parser.add_argument("--reason-order", default=DEFAULT_REASON_ORDER,
                        help="file-position order of the reason vectors: a known name or a JSON file "
                        "of 21 reason keys (check with python -m data_prep.audit)")
    parser.add_argument("--num-proc", type=int, default=DEFAULT_NUM_PROC,
                        help="decoding worker processes")
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave bad records out (listed in OUT/skipped.json) instead of failing")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild even if up to date; replace an OUT prepared from other inputs")
    parser.add_argument("--short-clip", choices=SHORT_CLIP_POLICIES, default=DEFAULT_SHORT_CLIP_POLICY,
                        help="clips shorter than (M-1)*stride+1 frames: 'pad' repeats the earliest "
                        "frame, 'error' refuses")
    parser.add_argument("--image-format", choices=IMAGE_FORMATS, default=DEFAULT_IMAGE_FORMAT,
                        help="how frames are stored in the dataset")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY)
    parser.add_argument("--samples-per-shard", type=int, default=DEFAULT_SAMPLES_PER_SHARD,
                        help="samples per generator shard (the unit of work handed to a worker)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        prepare(
            root=args.root, out=args.out, frames=args.frames, stride=args.stride,
            image_size=args.image_size, frames_dir=args.frames_dir, videos_dir=args.videos_dir,
            reason_order=args.reason_order, num_proc=args.num_proc, skip_bad=args.skip_bad,
            overwrite=args.overwrite, short_clip=args.short_clip, image_format=args.image_format,
            jpeg_quality=args.jpeg_quality, samples_per_shard=args.samples_per_shard,
        )
    except (AnnotationError, FrameError, PrepareError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
