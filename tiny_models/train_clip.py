"""Train an open_clip model contrastively on a prepared dataset's (clip frames, description) pairs.

    python -m tiny_models.train_clip --dataset work/dataset --clip local-dir:work/models/tiny-clip \\
        --out work/models/tiny-clip-trained [--epochs E --batch-size B --lr LR --seed S]

A CLIP with random weights gives the stage-1 reward (R1, :mod:`rewards.clip_alignment`) random
values; this fits the offline tiny CLIP to the synthetic world before stage 1. Everything that
decides the reward's geometry is the reward's own:

- images go through the model's own evaluation transform (the ``preprocess`` that
  :func:`rewards.clip_model.load_clip` returns), so training sees the pixels the reward sees;
- the clip embedding is the reward's ``v``: the L2-normalised mean of the L2-normalised frame
  embeddings (:meth:`rewards.clip_alignment.ClipScorer.pool`), here kept differentiable;
- the loss is open_clip's own :class:`open_clip.loss.ClipLoss` (symmetric InfoNCE with the
  model's learned ``logit_scale``), with open_clip_train's AdamW parameter groups, cosine
  schedule (:func:`open_clip_train.scheduler.cosine_lr`) and ``logit_scale`` clamp.

ClipLoss takes row i's text as the only positive of row i's clip. The synthetic world repeats
descriptions (a few hundred distinct ones per thousand clips), so a batch holding two clips with
the same text would push a clip away from its own description. Batches are therefore drawn so
that no description text appears twice in a batch (:func:`distinct_description_batches`; a text
with more clips than an epoch has batches contributes a fresh random subset of them each epoch).

Frames are preprocessed to tensors once (a 64-px tiny CLIP makes that a few hundred MB at most
for thousands of clips), so an epoch is only forward/backward passes.

Retrieval (frame-to-text) on the val split, and on a sample of train clips, before and after
training, written to ``<out>/retrieval.json``; see :func:`retrieval_metrics` for the exact
definitions and the chance levels, which account for repeated descriptions.

The output folder is an ordinary open_clip ``local-dir`` model (``open_clip_config.json`` +
``open_clip_model.safetensors``, the layout :mod:`tiny_models.clip` writes), written to a temporary
folder beside ``--out`` and renamed into place, so ``load_clip("local-dir:<out>")`` never sees a
half-written model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from tiny_models.clip import LOCAL_DIR_SCHEMA, OPEN_CLIP_CONFIG_FILE, OPEN_CLIP_WEIGHTS_FILE, local_dir_name

RETRIEVAL_FILE = "retrieval.json"
FRAMES_COLUMN = "frames"
DESCRIPTION_COLUMN = "description"
ID_COLUMN = "id"
TOP_K = (1, 5)
# open_clip_train clamps the learned temperature so logits never exceed 100 (train.py).
MAX_LOGIT_SCALE = math.log(100)
MIN_BATCH = 2  # a contrastive batch needs a negative


def _knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainClipConfig:
    """Every setting of a training run. Defaults: 60 epochs of batches of 64 (1,020 steps on 1,045
    synthetic train clips of 4 frames, 64 px): 186 s with 2 threads on a quiet 2-core machine
    (retrieval.json records the time). Fewer epochs leave the CLIP unable to tell one detail of a
    description from another, which is all stage 1's reward is for: val frame-to-text top-1 0.04
    after 15 epochs, 0.47 after 30, 0.77 after 60 (seed 0, 2026-12-06)."""

    epochs: int = _knob(60, "passes over the train split")
    batch_size: int = _knob(64, "clips per batch (each with a distinct description)")
    lr: float = _knob(3e-3, "peak AdamW learning rate (cosine schedule after warmup)")
    weight_decay: float = _knob(0.1, "AdamW weight decay on weight matrices (none on gains, biases, "
                                     "logit_scale, as open_clip_train does)")
    warmup_fraction: float = _knob(0.05, "fraction of the steps with a linear learning-rate warmup")
    beta1: float = _knob(0.9, "AdamW beta1 (open_clip_train's default)")
    beta2: float = _knob(0.98, "AdamW beta2 (open_clip_train's default for ViTs)")
    eps: float = _knob(1e-6, "AdamW epsilon (open_clip_train's default for ViTs)")
    seed: int = _knob(0, "seeds batch order and any random op: same seed and thread count, same weights")
    train_split: str = _knob("train", "split trained on")
    eval_split: str = _knob("val", "split whose frame-to-text retrieval is reported")
    max_train_eval_clips: int = _knob(300, "train clips sampled for the train-split retrieval report "
                                           "(0: skip it)")
    pretrained: str | None = _knob(None, "open_clip pretrained tag or checkpoint for an architecture "
                                         "name (None for local-dir:/hf-hub: models)")
    device: str | None = _knob(None, "torch device (default: cuda when available, else cpu)")
    threads: int = _knob(0, "torch CPU threads while training (0: torch's default, one per core); on a "
                            "busy machine 1 is often faster for this small a model")
    encode_batch_size: int = _knob(256, "frames per forward pass when encoding for retrieval")
    max_pixel_gib: float = _knob(8.0, "refuse a split whose preprocessed frames exceed this many GiB "
                                      "(all are held in memory)")
    progress: bool = _knob(True, "tqdm progress bars")

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 0:
            problems.append(f"epochs={self.epochs} must be >= 0")
        if self.batch_size < MIN_BATCH:
            problems.append(f"batch_size={self.batch_size} must be >= {MIN_BATCH} (contrastive)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr={self.lr} must be a positive number")
        if self.weight_decay < 0:
            problems.append(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        if self.max_train_eval_clips < 0:
            problems.append(f"max_train_eval_clips={self.max_train_eval_clips} must be >= 0")
        if not self.max_pixel_gib > 0:
            problems.append(f"max_pixel_gib={self.max_pixel_gib} must be > 0")
        if self.threads < 0:
            problems.append(f"threads={self.threads} must be >= 0")
        if self.encode_batch_size < 1:
            problems.append(f"encode_batch_size={self.encode_batch_size} must be >= 1")
        if problems:
            raise ValueError("invalid TrainClipConfig: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Data: every frame preprocessed once


@dataclass
class EncodedSplit:
    """One split, ready for training: ``pixels`` holds every frame of every clip in clip order,
    clip i owning ``frame_counts[i]`` consecutive rows from ``frame_starts[i]``."""

    name: str
    ids: list[str]
    descriptions: list[str]
    pixels: torch.Tensor  # (total frames, 3, H, W), the model's evaluation transform applied
    frame_counts: list[int]
    frame_starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        starts, position = [], 0
        for count in self.frame_counts:
            starts.append(position)
            position += count
        self.frame_starts = starts

    def __len__(self) -> int:
        return len(self.ids)

    def clip_pixels(self, indices: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
        """The frames of the given clips, stacked, and each clip's frame count."""
        starts, counts = self.frame_starts, self.frame_counts
        rows = [r for i in indices for r in range(starts[i], starts[i] + counts[i])]
        return self.pixels[rows], [self.frame_counts[i] for i in indices]

    def subset(self, indices: Sequence[int], name: str) -> "EncodedSplit":
        pixels, counts = self.clip_pixels(indices)
        return EncodedSplit(name, [self.ids[i] for i in indices], [self.descriptions[i] for i in indices],
                            pixels, counts)


def load_split(dataset_path: str | Path, split: str):
    """The split of a prepared DatasetDict, with the columns this trainer reads checked."""
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(dataset_path))
    except FileNotFoundError as err:
        raise ValueError(f"{dataset_path}: not a prepared dataset (python -m data_prep.prepare): {err}") from err
    if split not in dataset:
        raise ValueError(f"{dataset_path}: no split {split!r} (splits: {sorted(dataset)})")
    part = dataset[split]
    missing = [c for c in (ID_COLUMN, FRAMES_COLUMN, DESCRIPTION_COLUMN) if c not in part.column_names]
    if missing:
        raise ValueError(f"{dataset_path} split {split!r}: missing columns {missing} (has {part.column_names})")
    # Only these columns are decoded: the others (answers, prompts) are not needed here.
    return part.select_columns([ID_COLUMN, FRAMES_COLUMN, DESCRIPTION_COLUMN])


def encode_split(part, preprocess, name: str, source: str = "", progress: bool = True,
                 max_gib: float | None = None) -> EncodedSplit:
    """Apply ``preprocess`` (the reward's image transform) to every frame once.

    Every frame is kept as float32: fine for a 64-px model (~50 KB a frame), not for a 224-px
    one on a full dataset; ``max_gib`` stops early, from the first clip's size, when the whole
    split would not fit.
    """
    ids, descriptions, tensors, counts = [], [], [], []
    for row in tqdm(part, desc=f"preprocessing {name} frames", unit="clip", disable=not progress):
        clip_id = row[ID_COLUMN]
        frames = row[FRAMES_COLUMN] or []
        description = row[DESCRIPTION_COLUMN]
        if not frames:
            raise ValueError(f"{source} split {name!r}, id={clip_id!r}: no frames")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"{source} split {name!r}, id={clip_id!r}: empty description")
        # Same call as rewards.clip_model.encode_images: preprocess(image.convert("RGB")).
        clip_tensors = [preprocess(frame.convert("RGB")) for frame in frames]
        if not tensors and max_gib is not None:
            clip_bytes = sum(t.numel() * t.element_size() for t in clip_tensors)
            needed_gib = clip_bytes * len(part) / 2**30
            if needed_gib > max_gib:
                raise ValueError(
                    f"{source} split {name!r}: preprocessed frames would take ~{needed_gib:.1f} GiB "
                    f"(> max_pixel_gib={max_gib}); this trainer holds every frame in memory, meant for "
                    "the tiny 64-px CLIP"
                )
        tensors.extend(clip_tensors)
        ids.append(clip_id)
        descriptions.append(description)
        counts.append(len(frames))
    pixels = torch.stack(tensors) if tensors else torch.empty(0)
    return EncodedSplit(name, ids, descriptions, pixels, counts)


# ---------------------------------------------------------------------------------------------
# Embeddings


def pool_frames(frame_embeddings: torch.Tensor, frame_counts: Sequence[int]) -> torch.Tensor:
    """(clips, D): per clip the L2-normalised mean of its L2-normalised frame embeddings.

    The reward's ``v`` (:meth:`rewards.clip_alignment.ClipScorer.pool`), differentiable.
    """
    frames = torch.nn.functional.normalize(frame_embeddings, dim=-1)
    means = torch.stack([chunk.mean(dim=0) for chunk in torch.split(frames, list(frame_counts))])
    return torch.nn.functional.normalize(means, dim=-1)


@torch.no_grad()
def clip_embeddings(model, split: EncodedSplit, batch_size: int, device) -> torch.Tensor:
    """(clips, D) pooled clip embeddings of a whole split, in eval mode."""
    out, clip_index = [], 0
    while clip_index < len(split):
        # Whole clips per forward pass, about batch_size frames.
        end, frames = clip_index, 0
        while end < len(split) and (frames == 0 or frames + split.frame_counts[end] <= batch_size):
            frames += split.frame_counts[end]
            end += 1
        pixels, counts = split.clip_pixels(range(clip_index, end))
        out.append(pool_frames(model.encode_image(pixels.to(device)).float(), counts).cpu())
        clip_index = end
    return torch.cat(out)


@torch.no_grad()
def text_embeddings(model, tokenizer, texts: Sequence[str], batch_size: int, device) -> torch.Tensor:
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size])).to(device)
        out.append(model.encode_text(tokens, normalize=True).float().cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Retrieval


def chance_hit_rate(descriptions: Sequence[str], k: int) -> float:
    """Expected top-k hit rate of a uniformly random ranking of all the split's descriptions.

    A clip whose text occurs c times among the N candidates (its own included) is hit unless
    none of the c copies lands in the top k: 1 - C(N-c, k) / C(N, k).
    """
    n = len(descriptions)
    counts: dict[str, int] = {}
    for text in descriptions:
        counts[text] = counts.get(text, 0) + 1
    k = min(k, n)
    total = 0.0
    for text in descriptions:
        c = counts[text]
        total += 1.0 - (math.comb(n - c, k) / math.comb(n, k))
    return total / n


def retrieval_metrics(clip_emb: torch.Tensor, descriptions: Sequence[str], text_emb_by_text: dict,
                      ks: Sequence[int] = TOP_K) -> dict:
    """Frame-to-text retrieval of each clip among ALL the split's descriptions.

    - ``top{k}``: for each clip, rank the N descriptions of the split (duplicates included) by
      cosine with the clip embedding; a hit when one of the first k has the clip's own text. Equal
      texts have equal embeddings; different texts scoring exactly the same as the own text are
      not counted as above it. ``chance_top{k}``: the same for a random ranking
      (:func:`chance_hit_rate`), which is well above 1/N when texts repeat.
    - ``distinct_top{k}``: ranking the distinct texts only (each once); chance k / distinct.
    - ``true_beats_other``: mean over clips of the fraction of the other distinct texts that score
      below the own text (0.5 by chance): how often R1 prefers the true description to a wrong one.
    - ``cosine_true`` / ``cosine_other``: mean cosine of (clip, own text) and of (clip, other
      distinct text) pairs; their difference is R1's average margin.
    """
    distinct = sorted(set(descriptions))
    position = {text: i for i, text in enumerate(distinct)}
    multiplicity = torch.zeros(len(distinct))
    for text in descriptions:
        multiplicity[position[text]] += 1
    texts = torch.stack([text_emb_by_text[t] for t in distinct])  # (U, D)
    scores = clip_emb @ texts.T  # (N, U)
    own = torch.tensor([position[t] for t in descriptions])
    own_score = scores.gather(1, own[:, None])  # (N, 1)
    above = scores > own_score  # (N, U): distinct texts ranked above the own one
    ranked_above_raw = (above.float() * multiplicity).sum(dim=1)  # raw-list entries above
    ranked_above_distinct = above.sum(dim=1).float()
    others = len(distinct) - 1
    not_own = torch.ones_like(scores, dtype=torch.bool)
    not_own[torch.arange(len(descriptions)), own] = False
    below = (scores < own_score) & not_own
    metrics: dict[str, Any] = {
        "clips": len(descriptions),
        "distinct_descriptions": len(distinct),
    }
    for k in ks:
        metrics[f"top{k}"] = float((ranked_above_raw < k).float().mean())
        metrics[f"chance_top{k}"] = chance_hit_rate(descriptions, k)
        metrics[f"distinct_top{k}"] = float((ranked_above_distinct < k).float().mean())
        metrics[f"chance_distinct_top{k}"] = min(k, len(distinct)) / len(distinct)
    metrics["true_beats_other"] = float(below.sum(dim=1).float().mean() / others) if others else None
    metrics["cosine_true"] = float(own_score.mean())
    metrics["cosine_other"] = float(scores[not_own].mean()) if others else None
    return metrics


def evaluate_retrieval(model, tokenizer, split: EncodedSplit, config: TrainClipConfig, device) -> dict | None:
    """:func:`retrieval_metrics` of the model on a split (None when it has under 2 clips)."""
    if len(split) < MIN_BATCH:
        return None
    was_training = model.training
    model.eval()
    try:
        clips = clip_embeddings(model, split, config.encode_batch_size, device)
        distinct = sorted(set(split.descriptions))
        texts = text_embeddings(model, tokenizer, distinct, config.encode_batch_size, device)
    finally:
        model.train(was_training)
    return retrieval_metrics(clips, split.descriptions, dict(zip(distinct, texts)))


# ---------------------------------------------------------------------------------------------
# Batches


def distinct_description_batches(descriptions: Sequence[str], batch_size: int,
                                 generator: torch.Generator) -> list[list[int]]:
    """One epoch of shuffled batches in which no description text occurs twice.

    With N clips there are ``ceil(N / batch_size)`` batches. Clips are grouped by text (groups and
    members in random order) and dealt round-robin into the batches, so a text's clips land in
    different batches. A text with more clips than there are batches contributes a random subset
    of that many clips to this epoch (a different subset each epoch): one clip per batch is the
    most a batch can take. Batches under 2 clips are dropped (a contrastive loss needs a negative).
    """
    groups: dict[str, list[int]] = {}
    for index, text in enumerate(descriptions):
        groups.setdefault(text, []).append(index)
    num_batches = max(1, math.ceil(len(descriptions) / batch_size))
    texts = list(groups)
    dealt: list[int] = []
    for g in torch.randperm(len(texts), generator=generator).tolist():
        members = groups[texts[g]]
        picked = torch.randperm(len(members), generator=generator)[:num_batches].tolist()
        dealt.extend(members[i] for i in picked)
    # Position p goes to batch p mod num_batches: a group's (at most num_batches) consecutive
    # positions all fall in different batches.
    batches = [dealt[b::num_batches] for b in range(num_batches)]
    batches = [b for b in batches if len(b) >= MIN_BATCH]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


# ---------------------------------------------------------------------------------------------
# Saving


def open_clip_folder_config(model, clip_name: str) -> dict:
    """``{"model_cfg", "preprocess_cfg"}`` for the trained model: the source's model config and the
    preprocessing the source model was loaded with (so the saved folder preprocesses the same)."""
    import open_clip

    if clip_name.startswith(LOCAL_DIR_SCHEMA):
        source = Path(clip_name[len(LOCAL_DIR_SCHEMA):]) / OPEN_CLIP_CONFIG_FILE
        config = json.loads(source.read_text())
        if "model_cfg" not in config:  # open_clip also accepts a bare model config there
            config = {"model_cfg": config}
    else:
        model_cfg = open_clip.get_model_config(clip_name)
        if model_cfg is None:
            raise ValueError(f"open_clip has no model config for {clip_name!r}; cannot save it as a folder")
        config = {"model_cfg": model_cfg}
    config["preprocess_cfg"] = dict(open_clip.get_model_preprocess_cfg(model))
    return config


def _is_open_clip_folder(path: Path) -> bool:
    return (path / OPEN_CLIP_CONFIG_FILE).is_file()


def check_output(out_dir: Path, clip_name: str) -> None:
    """Refuse an --out that would destroy something: the source model, or a non-model folder."""
    if clip_name.startswith(LOCAL_DIR_SCHEMA):
        source = Path(clip_name[len(LOCAL_DIR_SCHEMA):])
        if out_dir.exists() and source.exists() and out_dir.resolve() == source.resolve():
            raise ValueError(f"--out {out_dir} is the model being trained ({clip_name}); write elsewhere "
                             "so the untrained model stays")
    replaceable = out_dir.is_dir() and (_is_open_clip_folder(out_dir) or not any(out_dir.iterdir()))
    if out_dir.exists() and not replaceable:
        raise ValueError(f"--out {out_dir} exists and is not an open_clip model folder (no "
                         f"{OPEN_CLIP_CONFIG_FILE}); refusing to replace it")


def save_open_clip_folder(model, folder_config: dict, out_dir: str | Path, extra_files: dict[str, Any]) -> Path:
    """Write config + safetensors weights (+ extra JSON files) into a temporary folder beside
    ``out_dir``, then swap it in; an existing ``out_dir`` is removed only once the new one is there."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        (staging / OPEN_CLIP_CONFIG_FILE).write_text(json.dumps(folder_config, indent=2, default=list) + "\n")
        # safetensors refuses shared tensors; open_clip's CLIP has none, contiguous() guards views.
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / OPEN_CLIP_WEIGHTS_FILE))
        for name, payload in extra_files.items():
            (staging / name).write_text(json.dumps(payload, indent=1) + "\n")
        if out_dir.exists():
            out_dir.rename(old)
        try:
            staging.rename(out_dir)
        except OSError:
            if old.exists():
                old.rename(out_dir)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


# ---------------------------------------------------------------------------------------------
# Training


def _parameter_groups(model, weight_decay: float) -> list[dict]:
    """open_clip_train's AdamW groups: no decay on gains, biases, norms and the temperature."""
    def exclude(name: str, param: torch.nn.Parameter) -> bool:
        return param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if exclude(n, p)], "weight_decay": 0.0},
        {"params": [p for n, p in named if not exclude(n, p)], "weight_decay": weight_decay},
    ]


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_trainable(clip_name: str, pretrained: str | None, device: str):
    """A private copy of the model (load_clip caches its instance for the rewards: never train
    that one), its preprocess and tokenizer, through the rewards' own loader."""
    import copy

    from rewards.clip_model import load_clip

    model, preprocess, tokenizer = load_clip(clip_name, pretrained, device)
    return copy.deepcopy(model), preprocess, tokenizer


def _log(message: str, progress: bool) -> None:
    (tqdm.write if progress else print)(f"[train_clip] {message}", file=sys.stderr)


def _summary(metrics: dict | None) -> str:
    if not metrics:
        return "n/a"
    return (f"top1 {metrics['top1']:.3f} (chance {metrics['chance_top1']:.3f}), "
            f"top5 {metrics['top5']:.3f} (chance {metrics['chance_top5']:.3f}), "
            f"true>other {metrics['true_beats_other']:.3f}, "
            f"cos true/other {metrics['cosine_true']:.3f}/{metrics['cosine_other']:.3f}")


def train_clip(dataset_path: str | Path, clip_name: str, out_dir: str | Path,
               config: TrainClipConfig | None = None) -> dict:
    """Train ``clip_name`` on ``dataset_path``'s train split and save it to ``out_dir``.

    Returns the metrics also written to ``<out_dir>/retrieval.json``: ``before``/``after``, each
    ``{"val": retrieval_metrics | None, "train": ... | None}``, plus the loss per epoch, steps,
    and seconds spent training. ``rewards.clip_model.load_clip(local_dir_name(out_dir))`` loads
    the result.
    """
    config = config or TrainClipConfig()
    out_dir = Path(out_dir)
    check_output(out_dir, clip_name)
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(dataset_path, clip_name, out_dir, config)
    finally:
        torch.set_num_threads(previous_threads)


def _train(dataset_path: str | Path, clip_name: str, out_dir: Path, config: TrainClipConfig) -> dict:
    from open_clip.loss import ClipLoss
    from open_clip_train.scheduler import cosine_lr

    device = torch.device(config.device or _default_device())
    progress = config.progress

    model, preprocess, tokenizer = _load_trainable(clip_name, config.pretrained, str(device))
    train = encode_split(load_split(dataset_path, config.train_split), preprocess, config.train_split,
                         str(dataset_path), progress, config.max_pixel_gib)
    if len(set(train.descriptions)) < MIN_BATCH:
        raise ValueError(f"{dataset_path} split {config.train_split!r}: {len(train)} clips with "
                         f"{len(set(train.descriptions))} distinct descriptions; need at least {MIN_BATCH}")
    evaluation = encode_split(load_split(dataset_path, config.eval_split), preprocess, config.eval_split,
                              str(dataset_path), progress, config.max_pixel_gib)
    generator = torch.Generator().manual_seed(config.seed)
    sample_size = min(config.max_train_eval_clips, len(train))
    sample = sorted(torch.randperm(len(train), generator=generator)[:sample_size].tolist())
    train_sample = train.subset(sample, f"{config.train_split} (sample)")

    def evaluate_all() -> dict:
        return {
            "val": evaluate_retrieval(model, tokenizer, evaluation, config, device),
            "train": evaluate_retrieval(model, tokenizer, train_sample, config, device),
        }

    before = evaluate_all()
    _log(f"before: {config.eval_split}: {_summary(before['val'])}", progress)

    # Descriptions are tokenized once; a batch's texts are distinct, so row i's text is clip i's.
    tokens = tokenizer(train.descriptions)
    # Every epoch's batches drawn up front (cheap), so the schedule knows the exact step count.
    batch_generator = torch.Generator().manual_seed(config.seed)
    epochs = [distinct_description_batches(train.descriptions, config.batch_size, batch_generator)
              for _ in range(config.epochs)]
    total_steps = sum(len(batches) for batches in epochs)
    optimizer = torch.optim.AdamW(_parameter_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2), eps=config.eps)
    warmup_steps = int(config.warmup_fraction * total_steps)
    schedule = cosine_lr(optimizer, config.lr, warmup_steps, max(total_steps, 1))
    loss_fn = ClipLoss()

    epoch_losses: list[float] = []
    step = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    model.train()
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
        torch.manual_seed(config.seed)
        bar = tqdm(total=total_steps, desc="training CLIP", unit="step", disable=not progress)
        for epoch, batches in enumerate(epochs):
            losses = []
            for batch in batches:
                schedule(step)
                pixels, counts = train.clip_pixels(batch)
                image_features = pool_frames(model.encode_image(pixels.to(device)), counts)
                text_features = model.encode_text(tokens[batch].to(device), normalize=True)
                loss = loss_fn(image_features, text_features, model.logit_scale.exp())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                losses.append(loss.item())
                step += 1
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}")
            if losses:
                epoch_losses.append(sum(losses) / len(losses))
        bar.close()
    train_seconds = time.perf_counter() - started
    # CPU seconds of all threads: on a shared machine wall time says little about the cost.
    train_cpu_seconds = time.process_time() - cpu_started
    model.eval()

    after = evaluate_all()
    _log(f"after:  {config.eval_split}: {_summary(after['val'])}", progress)
    _log(f"trained {step} steps ({config.epochs} epochs, {len(train)} clips) in {train_seconds:.1f} s "
         f"({train_cpu_seconds:.1f} CPU s on {torch.get_num_threads()} threads)", progress)
    metrics = {
        "clip_model": clip_name,
        "dataset": str(dataset_path),
        "out": str(out_dir),
        "config": asdict(config),
        "train_clips": len(train),
        "train_distinct_descriptions": len(set(train.descriptions)),
        "eval_split": config.eval_split,
        "before": before,
        "after": after,
        "epoch_losses": epoch_losses,
        "steps": step,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "torch_threads": torch.get_num_threads(),
        "logit_scale": model.logit_scale.exp().item(),
    }
    save_open_clip_folder(model, open_clip_folder_config(model, clip_name), out_dir, {RETRIEVAL_FILE: metrics})
    _log(f"saved {out_dir}; load: rewards.clip_model.load_clip({local_dir_name(out_dir)!r})", progress)
    return metrics


# ---------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tiny_models.train_clip",
        description="Train an open_clip model (e.g. the tiny offline one) contrastively on a prepared "
        "dataset's frames/descriptions with open_clip's ClipLoss; report frame-to-text retrieval "
        "before and after; save it as an open_clip local-dir folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, type=Path, help="prepared DatasetDict (data_prep.prepare)")
    parser.add_argument("--clip", required=True,
                        help="open_clip model to start from, as load_clip takes it (local-dir:PATH, or an "
                        "architecture with --pretrained)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output model folder (replaced atomically if it holds an open_clip model)")
    defaults = TrainClipConfig()
    for f in fields(TrainClipConfig):
        if f.name == "progress":
            continue
        default = getattr(defaults, f.name)
        kind = str if f.name in ("pretrained", "device") else type(default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=default,
                            help=f.metadata.get("help", ""))
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(TrainClipConfig) if f.name != "progress"}
    try:
        config = TrainClipConfig(progress=not args.no_progress, **values)
        metrics = train_clip(args.dataset, args.clip, args.out, config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for when in ("before", "after"):
        for split, result in metrics[when].items():
            print(f"{when:6s} {split:5s}: {_summary(result)}")
    print(f"trained in {metrics['train_seconds']:.1f} s; retrieval -> {args.out / RETRIEVAL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
