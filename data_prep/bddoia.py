"""Read a BDD-OIA release (or the synthetic world, which uses the same layout) into validated records.

Layout (docs/bddoia.md, "Release layout"): ``<root>/data/<file_name>`` holds every image; six annotation files
``{split}_25k_images_{actions,reasons}.json`` sit beside ``data/`` or inside it (both are accepted).

Joins:
- actions file: ``annotations[k]["id"]`` joins ``images[j]["id"]`` by VALUE. The official loader
  indexes by list position, which is only right when positions equal ids; we never rely on that.
- reasons file: joins the image by ``file_name``.

Validation collects every problem (file, record, message) before anything is returned. By default
one :class:`AnnotationError` lists them (the first ``max_problems_shown``); with ``skip_bad=True``
the bad records are left out and returned as :class:`Problem` entries instead. File-level problems
(a missing or malformed annotation file) always raise: there is no record to skip.

Samples whose 5th action entry ("confuse") is 1 are dropped, as the official loader does, and
counted per split.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from taxonomy.labels import (
    ACTIONS,
    DEFAULT_REASON_ORDER,
    NUM_ACTIONS,
    NUM_REASONS,
    REASON_KEYS,
    REASONS,
    actions_from_vector,
    load_reason_order,
    reasons_from_vector,
    reasons_to_vector,
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
DATA_DIR_NAME = "data"
ACTIONS_FILE_PATTERN = "{split}_25k_images_actions.json"
REASONS_FILE_PATTERN = "{split}_25k_images_reasons.json"
# An actions vector is [F, S, L, R] or [F, S, L, R, confuse].
CONFUSE_INDEX = NUM_ACTIONS
ALLOWED_ACTION_LENGTHS = (NUM_ACTIONS, NUM_ACTIONS + 1)
DEFAULT_MAX_PROBLEMS_SHOWN = 20


class AnnotationError(ValueError):
    """Bad annotations. ``problems`` lists every record-level problem found (may be empty for a
    file-level error such as malformed JSON)."""

    def __init__(self, message: str, problems: Sequence["Problem"] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Problem:
    """One bad record: which file, which record (file_name and/or id) and what is wrong."""

    file: str
    record: str
    message: str
    split: str = ""

    def __str__(self) -> str:
        return f"{self.file}: {self.record}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Record:
    """One validated sample. ``reasons`` is in CANONICAL order (taxonomy.labels.REASON_KEYS)."""

    id: str  # the image file's stem, e.g. "synth-000123" or a BDD100K video id
    split: str
    image_path: Path  # the annotated (last) frame, data/<file_name>
    actions: tuple[int, ...]  # [F, S, L, R]
    reasons: tuple[int, ...]  # 21 entries, canonical order
    image_id: int = -1  # the actions file's integer image id (kept for error messages)
    file_name: str = ""

    @property
    def action_keys(self) -> list[str]:
        return actions_from_vector(self.actions)

    @property
    def reason_keys(self) -> list[str]:
        return reasons_from_vector(self.reasons)


@dataclass
class BddOia:
    """What :func:`read_bddoia` found."""

    root: Path
    records: list[Record]
    skipped: list[Problem] = field(default_factory=list)  # only with skip_bad=True
    dropped_confuse: dict[str, int] = field(default_factory=dict)
    annotation_files: dict[str, Path] = field(default_factory=dict)  # "train/actions" -> path
    reason_order: tuple[str, ...] = REASON_KEYS

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]

    def counts(self) -> dict[str, int]:
        counter = Counter(r.split for r in self.records)
        return {s: counter.get(s, 0) for s in SPLITS if s in counter or s in self.dropped_confuse}


# ---------------------------------------------------------------------------------------------
# Locating files


def data_dir(root: Path | str) -> Path:
    return Path(root) / DATA_DIR_NAME


def locate_annotation_file(root: Path | str, name: str) -> Path:
    """``name`` beside ``data/`` or inside it. Both present with different content is ambiguous."""
    root = Path(root)
    candidates = [p for p in (root / name, data_dir(root) / name) if p.is_file()]
    if not candidates:
        raise AnnotationError(
            f"annotation file {name} not found: looked in {root} and {data_dir(root)}"
        )
    if len(candidates) == 2 and candidates[0].read_bytes() != candidates[1].read_bytes():
        raise AnnotationError(
            f"annotation file {name} exists twice with different content: {candidates[0]} and "
            f"{candidates[1]}; remove one"
        )
    return candidates[0]


def annotation_files(root: Path | str, splits: Iterable[str] = SPLITS) -> dict[str, Path]:
    """``{"train/actions": path, "train/reasons": path, ...}``; raises naming every missing file."""
    found, missing = {}, []
    for split in splits:
        for kind, pattern in (("actions", ACTIONS_FILE_PATTERN), ("reasons", REASONS_FILE_PATTERN)):
            try:
                found[f"{split}/{kind}"] = locate_annotation_file(root, pattern.format(split=split))
            except AnnotationError as err:
                missing.append(str(err))
    if missing:
        raise AnnotationError("; ".join(missing))
    return found


def load_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise AnnotationError(f"{path}: cannot read ({err})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: malformed JSON ({err})") from err


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _is_int(value: object) -> bool:
    # JSON true/false decode to bool, a subclass of int: accept them only as 0/1 flags below.
    return isinstance(value, int)


def _binary_vector_problem(vector: object, lengths: Sequence[int], what: str) -> str | None:
    if not isinstance(vector, list):
        return f"{what} is {type(vector).__name__}, expected a list of 0/1"
    if len(vector) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        return f"{what} has {len(vector)} entries, expected {expected}"
    bad = [(i, v) for i, v in enumerate(vector) if not (_is_int(v) and v in (0, 1))]
    if bad:
        shown = ", ".join(f"[{i}]={v!r}" for i, v in bad[:5])
        return f"{what} holds values other than 0/1: {shown}"
    return None


def _describe(file_name: object = None, image_id: object = None, position: int | None = None) -> str:
    parts = []
    if file_name is not None:
        parts.append(f"file_name={file_name!r}")
    if image_id is not None:
        parts.append(f"id={image_id!r}")
    if not parts and position is not None:
        parts.append(f"entry #{position}")
    return " ".join(parts) or "record"


@dataclass
class _Joined:
    split: str
    file_name: str
    image_id: int
    actions: list[int] | None = None  # 4 or 5 entries
    reasons: list[int] | None = None  # file order
    bad: bool = False


def _read_split(
    split: str,
    actions_path: Path,
    reasons_path: Path,
    problems: list[Problem],
) -> list[_Joined]:
    """Join one split's two files; append every record problem to ``problems``."""

    def problem(path: Path, record: str, message: str) -> None:
        problems.append(Problem(str(path), record, message, split))

    actions_doc = load_json(actions_path)
    if not isinstance(actions_doc, dict) or not isinstance(actions_doc.get("images"), list) or not (
        isinstance(actions_doc.get("annotations"), list)
    ):
        raise AnnotationError(
            f"{actions_path}: expected an object with lists 'images' and 'annotations'"
        )
    reasons_doc = load_json(reasons_path)
    if not isinstance(reasons_doc, list):
        raise AnnotationError(f"{reasons_path}: expected a list of {{'file_name', 'reason'}} objects")

    # images: id -> joined sample
    by_id: dict[int, _Joined] = {}
    by_name: dict[str, _Joined] = {}
    for pos, image in enumerate(actions_doc["images"]):
        if not isinstance(image, dict):
            problem(actions_path, _describe(position=pos), "image entry is not an object")
            continue
        name, image_id = image.get("file_name"), image.get("id")
        where = _describe(name, image_id, pos)
        if not isinstance(name, str) or not name:
            problem(actions_path, where, "image entry has no string 'file_name'")
            continue
        if not _is_int(image_id) or isinstance(image_id, bool):
            problem(actions_path, where, "image entry has no integer 'id'")
            continue
        if image_id in by_id:
            problem(actions_path, where, f"duplicate image id (also {by_id[image_id].file_name!r})")
            by_id[image_id].bad = True
            continue
        if name in by_name:
            problem(actions_path, where, f"duplicate image file_name (also id={by_name[name].image_id})")
            by_name[name].bad = True
            continue
        joined = _Joined(split, name, image_id)
        by_id[image_id] = by_name[name] = joined

    seen_annotation_ids: set[int] = set()
    for pos, ann in enumerate(actions_doc["annotations"]):
        if not isinstance(ann, dict):
            problem(actions_path, _describe(position=pos), "annotation entry is not an object")
            continue
        image_id = ann.get("id")
        target = by_id.get(image_id) if _is_int(image_id) else None
        where = _describe(target.file_name if target else None, image_id, pos)
        if not _is_int(image_id) or isinstance(image_id, bool):
            problem(actions_path, where, "annotation has no integer 'id'")
            continue
        if image_id in seen_annotation_ids:
            problem(actions_path, where, "duplicate annotation for this image id")
            if target:
                target.bad = True
            continue
        seen_annotation_ids.add(image_id)
        if target is None:
            problem(actions_path, where, "annotation for an image id that has no image entry")
            continue
        message = _binary_vector_problem(ann.get("category"), ALLOWED_ACTION_LENGTHS, "category")
        if message:
            problem(actions_path, where, message)
            target.bad = True
            continue
        target.actions = list(ann["category"])

    seen_reason_names: set[str] = set()
    for pos, entry in enumerate(reasons_doc):
        if not isinstance(entry, dict):
            problem(reasons_path, _describe(position=pos), "reason entry is not an object")
            continue
        name = entry.get("file_name")
        target = by_name.get(name) if isinstance(name, str) else None
        where = _describe(name, target.image_id if target else None, pos)
        if not isinstance(name, str) or not name:
            problem(reasons_path, where, "reason entry has no string 'file_name'")
            continue
        if name in seen_reason_names:
            problem(reasons_path, where, "duplicate reasons entry for this file_name")
            if target:
                target.bad = True
            continue
        seen_reason_names.add(name)
        if target is None:
            problem(
                reasons_path, where, f"reasons without actions: no image entry in {actions_path.name}"
            )
            continue
        message = _binary_vector_problem(entry.get("reason"), (NUM_REASONS,), "reason")
        if message:
            problem(reasons_path, where, message)
            target.bad = True
            continue
        target.reasons = list(entry["reason"])

    joined_all = list(by_name.values())
    for joined in joined_all:
        where = _describe(joined.file_name, joined.image_id)
        if joined.actions is None and not joined.bad:
            problem(actions_path, where, "image entry has no actions annotation")
            joined.bad = True
        if joined.reasons is None and not joined.bad:
            problem(reasons_path, where, f"actions without reasons: no entry in {reasons_path.name}")
            joined.bad = True
    return joined_all


def read_bddoia(
    root: Path | str,
    reason_order: str | Path | None = DEFAULT_REASON_ORDER,
    splits: Iterable[str] = SPLITS,
    skip_bad: bool = False,
    check_images: bool = True,
    max_problems_shown: int = DEFAULT_MAX_PROBLEMS_SHOWN,
) -> BddOia:
    """Read, join and validate a BDD-OIA release.

    ``reason_order``: the file-position order of reason vectors, a name in
    taxonomy.labels.REASON_ORDERS or a JSON file (taxonomy.labels.load_reason_order); records get
    reasons in canonical order. ``None`` keeps the file order untouched (the audit uses this).
    ``check_images``: require data/<file_name> to exist (the audit, which needs only labels, turns
    it off).
    """
    root = Path(root)
    splits = tuple(splits)
    order = tuple(load_reason_order(reason_order)) if reason_order is not None else None
    files = annotation_files(root, splits)
    images_dir = data_dir(root)
    if check_images and not images_dir.is_dir():
        raise AnnotationError(f"image folder {images_dir} not found (expected <root>/data/)")

    problems: list[Problem] = []
    joined_by_split = {
        split: _read_split(split, files[f"{split}/actions"], files[f"{split}/reasons"], problems)
        for split in splits
    }

    # The same image in two splits would leak between train and test.
    splits_of_name: dict[str, list[str]] = defaultdict(list)
    for split, joined in joined_by_split.items():
        for j in joined:
            splits_of_name[j.file_name].append(split)
    for split, joined in joined_by_split.items():
        for j in joined:
            other = [s for s in splits_of_name[j.file_name] if s != split]
            if other and not j.bad:
                problems.append(
                    Problem(
                        str(files[f"{split}/actions"]),
                        _describe(j.file_name, j.image_id),
                        f"image also listed in split(s) {', '.join(other)}",
                        split,
                    )
                )
                j.bad = True

    records: list[Record] = []
    dropped_confuse = {split: 0 for split in splits}
    for split, joined in joined_by_split.items():
        for j in joined:
            if j.bad:
                continue
            if len(j.actions) > CONFUSE_INDEX and j.actions[CONFUSE_INDEX] == 1:
                dropped_confuse[split] += 1  # the official loader drops "confuse" samples
                continue
            image_path = images_dir / j.file_name
            if check_images and not image_path.is_file():
                problems.append(
                    Problem(
                        str(image_path),
                        _describe(j.file_name, j.image_id),
                        f"image file missing (listed in {files[f'{split}/actions'].name})",
                        split,
                    )
                )
                continue
            reasons = j.reasons
            if order is not None:
                reasons = reasons_to_vector(reasons_from_vector(j.reasons, order))
            records.append(
                Record(
                    id=Path(j.file_name).stem,
                    split=split,
                    image_path=image_path,
                    actions=tuple(j.actions[:NUM_ACTIONS]),
                    reasons=tuple(reasons),
                    image_id=j.image_id,
                    file_name=j.file_name,
                )
            )

    duplicates = [k for k, n in Counter(r.id for r in records).items() if n > 1]
    if duplicates:  # two file names with one stem (a.jpg, a.png): ids must be unique
        bad_ids = set(duplicates)
        for r in records:
            if r.id in bad_ids:
                problems.append(
                    Problem(str(r.image_path), _describe(r.file_name, r.image_id),
                            f"sample id {r.id!r} is not unique", r.split)
                )
        records = [r for r in records if r.id not in bad_ids]

    if problems and not skip_bad:
        raise AnnotationError(format_problems(problems, max_problems_shown), problems)
    return BddOia(
        root=root,
        records=records,
        skipped=problems,
        dropped_confuse=dropped_confuse,
        annotation_files=files,
        reason_order=order or tuple(REASON_KEYS),
    )


def format_problems(problems: Sequence[Problem], max_shown: int = DEFAULT_MAX_PROBLEMS_SHOWN) -> str:
    lines = [f"{len(problems)} bad annotation record(s) (nothing was written; --skip-bad leaves them out):"]
    lines += [f"  {p}" for p in problems[:max_shown]]
    if len(problems) > max_shown:
        lines.append(f"  ... and {len(problems) - max_shown} more")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Template descriptions (for sources without reference descriptions)


def template_description(actions: Sequence[int], reasons: Sequence[int]) -> str:
    """A short scene sentence built from the labels (canonical reason order); never empty.

    Used when the source has no reference description (real BDD-OIA), so the answer's
    description field still says something true about the scene: the reason phrases as seen,
    then what the car can do.
    """
    reason_keys = set(reasons_from_vector(reasons))
    action_keys = set(actions_from_vector(actions))
    seen = [r.phrase for r in REASONS if r.key in reason_keys]
    possible = [a.phrase for a in ACTIONS if a.key in action_keys]
    sentence = "A road scene: " + "; ".join(seen) + "." if seen else "A road scene."
    if possible:
        sentence += f" The car can {' or '.join(possible)}."
    return sentence
