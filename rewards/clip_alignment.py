"""R1 (stage 1): does the description match the clip, as an open_clip model sees it?

For a clip with M frames and a completion::

    v  = normalise( mean_m normalise(E_image(frame_m)) )     (one vector per clip, cached by id)
    t  = normalise( E_text(description) )                    (CLIP truncates at 77 tokens)
    c  = v . t                                               (cosine in [-1, 1])
    R1 = (max(c, floor) - shift) / scale

The description is the answer's description span, read with :func:`taxonomy.answer.parse_answer`
(the JSON ``description`` field; for a text answer its "Scene:" line, else the whole text), cut
to ``max_description_chars`` characters (CLIP reads 77 tokens, a few hundred characters; the cut
only bounds tokenizer work on runaway text). Only this span is scored: CLIP on the whole JSON would
reward keyword lists in other fields.

Defaults: ``floor = 0.0, shift = 0.0, scale = 1.0``, so R1 = max(c, 0) is in [0, 1]. The empty
description (nothing said, or no description field) gets the minimum, ``(floor - shift) / scale``
(0 by default; with ``floor=None`` the floor is the cosine's own minimum -1). CLIP cosines of real
models sit around 0.2-0.35 while F1 rewards span 0-1: set ``shift``/``scale`` (e.g. the mean and
standard deviation from :func:`calibrate_normalisation`, a z-normalisation) before mixing R1
with R2/R3 in one weighted sum.

Frame embeddings are computed once per clip: a :class:`ClipScorer` (one per model, cached) keeps
an LRU dict ``clip id -> v`` of bounded size, and encodes the frames of all the uncached clips of
a batch in one call. GRPO's ``num_generations`` completions of a clip therefore share one image
encoding. A precomputed column ``frame_embedding`` (per row a D vector, or an (M, D) array of frame
embeddings) is used instead when present.

:func:`incremental_rewards` splits a description into prefixes T_1..T_K (words by default, or
caller-given character ends, e.g. the policy tokens' offsets) and returns
``r_k = R1(I, T_k) - R1(I, T_{k-1})`` with T_0 the empty text, as the seed defines them: R1(I, "")
is CLIP's own score of the empty text against the clip (CLIP encodes "" as start and end tokens),
not the floor, so the first word is paid what it adds over saying nothing, and the rewards sum
telescopically to ``R1(I, T) - R1(I, "")``: per-step rewards an actor-critic trainer places on the
completion tokens ending at the returned offsets. (The sequence reward of an empty description
stays the minimum: nothing said must never score above something said.)

The open_clip model is named as :func:`rewards.clip_model.load_clip` takes it: an architecture and
a pretrained tag (default ``"ViT-B-32"`` + ``"laion2b_s34b_b79k"``), or ``"local-dir:PATH"`` with
``pretrained=None`` (the tiny offline model the demo builds).
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from rewards.registry import as_completion_list, column, completion_text, log_means, register_reward
from rewards.registry import clip as clip_value
from taxonomy.answer import parse_answer
from taxonomy.spans import locate_description

if TYPE_CHECKING:  # torch and open_clip load lazily: importing the rewards stays cheap
    import torch

logger = logging.getLogger(__name__)

NAME = "clip_alignment"
DEFAULT_MODEL_NAME = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_FLOOR = 0.0
DEFAULT_SHIFT = 0.0
DEFAULT_SCALE = 1.0
# Clips whose frame embedding stays cached (ViT-B-32: 512 floats = 2 KiB each, so ~16 MiB).
DEFAULT_CACHE_SIZE = 8192
# CLIP reads 77 tokens, a few hundred characters of English; this bounds tokenizer work only.
DEFAULT_MAX_DESCRIPTION_CHARS = 1000
# Column names: TRL recipes rename the dataset's "frames" to "images".
FRAME_COLUMNS = ("images", "frames")
EMBEDDING_COLUMN = "frame_embedding"
ID_COLUMN = "id"
COSINE_MIN = -1.0


def _clip_model():
    from rewards import clip_model  # lazy: imports torch

    return clip_model


def _torch():
    import torch

    return torch


def default_device() -> str:
    """The reward model's device from the hardware: the first GPU when there is one."""
    return "cuda" if _torch().cuda.is_available() else "cpu"


def description_of(completion: Any, max_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS) -> str:
    """The description span of a completion (string or conversational), cut and stripped."""
    return parse_answer(completion_text(completion)).description[:max_chars].strip()


class ClipScorer:
    """An open_clip model plus an LRU cache of per-clip frame embeddings (``clip id -> v``).

    ``encoded_clips`` counts the clips whose frames were encoded (cache misses), for tests and logs.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL_NAME,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be a positive int, got {cache_size!r}")
        self.model_name, self.pretrained = model_name, pretrained
        self.device = device or default_device()
        loaded = _clip_model().load_clip(model_name, pretrained, self.device)
        self.model, self.preprocess, self.tokenizer = loaded
        self.cache_size = cache_size
        self.cache: OrderedDict[Any, torch.Tensor] = OrderedDict()
        self.encoded_clips = 0
        self._empty_text: torch.Tensor | None = None  # t(""), encoded once

    # -- frames --------------------------------------------------------------------------------

    def pool(self, frame_embeddings: torch.Tensor) -> torch.Tensor:
        """v: the L2-normalised mean of L2-normalised frame embeddings ((M, D) or (D,) -> (D,))."""
        torch = _torch()
        emb = torch.as_tensor(frame_embeddings, dtype=torch.float32).cpu()
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise ValueError(f"a frame embedding must be (D,) or (M, D), got shape {tuple(emb.shape)}")
        emb = torch.nn.functional.normalize(emb, dim=-1)
        return torch.nn.functional.normalize(emb.mean(dim=0), dim=-1)

    def _remember(self, key: Any, value: torch.Tensor) -> None:
        self.cache[key] = value
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def video_embeddings(self, ids: Sequence[Any], frames: Sequence[Sequence[Any]]) -> torch.Tensor:
        """(B, D) clip embeddings v for a batch; frames are encoded only for clips not cached.

        The frames of every uncached clip of the batch go through the image encoder in one call
        (each clip once, however often its id repeats in the batch).
        """
        torch = _torch()
        missing: dict[Any, list] = {}
        for clip_id, clip_frames in zip(ids, frames):
            if clip_id in self.cache or clip_id in missing:
                continue
            clip_frames = list(clip_frames or [])
            if not clip_frames:
                raise ValueError(f"clip {clip_id!r}: no frames to embed (column {FRAME_COLUMNS})")
            missing[clip_id] = clip_frames
        if missing:
            flat = [frame for clip_frames in missing.values() for frame in clip_frames]
            encoded = _clip_model().encode_images(self.model, self.preprocess, flat)
            start = 0
            for clip_id, clip_frames in missing.items():
                self._remember(clip_id, self.pool(encoded[start : start + len(clip_frames)]))
                start += len(clip_frames)
            self.encoded_clips += len(missing)
        rows = []
        for clip_id in ids:
            self.cache.move_to_end(clip_id)
            rows.append(self.cache[clip_id])
        return torch.stack(rows)

    # -- texts ---------------------------------------------------------------------------------

    def text_embeddings(self, texts: Sequence[str]) -> list[torch.Tensor | None]:
        """t per text (None for an empty text or one the tokenizer cannot read), in one batch."""
        clip_model = _clip_model()
        out: list[torch.Tensor | None] = [None] * len(texts)
        wanted = [i for i, text in enumerate(texts) if text]
        if not wanted:
            return out
        try:
            encoded = clip_model.encode_texts(self.model, self.tokenizer, [texts[i] for i in wanted])
            for row, i in enumerate(wanted):
                out[i] = encoded[row]
        except Exception:  # noqa: BLE001 - one unreadable model output must not sink the batch
            logger.warning("batch text encoding failed; encoding texts one by one", exc_info=True)
            for i in wanted:
                try:
                    out[i] = clip_model.encode_texts(self.model, self.tokenizer, [texts[i]])[0]
                except Exception:  # noqa: BLE001
                    logger.warning("text %d cannot be encoded; it scores the minimum", i, exc_info=True)
        return out

    def empty_text_cosines(self, videos: torch.Tensor) -> list[float]:
        """v . t("") per row of ``videos`` (B, D): CLIP's score of saying nothing, R1(I, T_0)."""
        if self._empty_text is None:
            self._empty_text = _clip_model().encode_texts(self.model, self.tokenizer, [""])[0]
        return [float((row * self._empty_text).sum().clamp(COSINE_MIN, 1.0)) for row in videos]

    def cosines(self, videos: torch.Tensor, texts: Sequence[str]) -> list[float | None]:
        """v . t for matching rows of ``videos`` (B, D) and ``texts``; None for an empty text."""
        embeddings = self.text_embeddings(texts)
        return [
            None if t is None else float((videos[i] * t).sum().clamp(COSINE_MIN, 1.0))
            for i, t in enumerate(embeddings)
        ]


_SCORERS: dict[tuple, ClipScorer] = {}


def get_scorer(
    model_name: str = DEFAULT_MODEL_NAME,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str | None = None,
    cache_size: int = DEFAULT_CACHE_SIZE,
) -> ClipScorer:
    """The process-wide scorer for a model (created once; its cache is shared by every call)."""
    key = (model_name, pretrained, device or default_device())
    scorer = _SCORERS.get(key)
    if scorer is None:
        # Building the model draws random initial weights before the checkpoint replaces them. The
        # global RNG is the policy's sampling RNG: a reward model loaded lazily (first reward call)
        # must not move it, or a run resumed from a checkpoint samples differently from one never
        # interrupted.
        with _torch().random.fork_rng():
            scorer = _SCORERS[key] = ClipScorer(model_name, pretrained, key[2], cache_size)
    scorer.cache_size = cache_size
    return scorer


# ---------------------------------------------------------------------------------------------
# Normalisation


@dataclass(frozen=True)
class Normalisation:
    """R1 = (max(c, floor) - shift) / scale; ``floor=None`` keeps the cosine's own range."""

    floor: float | None = DEFAULT_FLOOR
    shift: float = DEFAULT_SHIFT
    scale: float = DEFAULT_SCALE

    def __post_init__(self):
        for name in ("shift", "scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"reward {NAME!r}: {name} must be a finite number, got {value!r}")
        if self.scale <= 0:
            raise ValueError(f"reward {NAME!r}: scale must be > 0, got {self.scale!r}")
        if self.floor is not None and not (
            isinstance(self.floor, (int, float)) and COSINE_MIN <= self.floor <= 1.0
        ):
            raise ValueError(f"reward {NAME!r}: floor must be None or in [-1, 1], got {self.floor!r}")

    @property
    def lowest_cosine(self) -> float:
        return COSINE_MIN if self.floor is None else float(self.floor)

    @property
    def minimum(self) -> float:
        """R1 of the empty description, the lowest value R1 takes."""
        return (self.lowest_cosine - self.shift) / self.scale

    @property
    def maximum(self) -> float:
        return (1.0 - self.shift) / self.scale

    def __call__(self, cosine: float | None) -> float:
        if cosine is None or not math.isfinite(cosine):
            return self.minimum
        value = (max(cosine, self.lowest_cosine) - self.shift) / self.scale
        return clip_value(value, self.minimum, self.maximum)


# ---------------------------------------------------------------------------------------------
# The reward


def batch_video_embeddings(
    scorer: ClipScorer, kwargs: Mapping[str, Any], size: int, frames_column: str | None = None
) -> torch.Tensor:
    """(B, D) clip embeddings from the precomputed column, or the frames (cached by clip id)."""
    torch = _torch()
    if kwargs.get(EMBEDDING_COLUMN) is not None:
        rows = column(kwargs, EMBEDDING_COLUMN, size, NAME)
        return torch.stack([scorer.pool(torch.as_tensor(row, dtype=torch.float32)) for row in rows])
    names = (frames_column,) if frames_column else FRAME_COLUMNS
    name = next((n for n in names if kwargs.get(n) is not None), None)
    if name is None:
        raise ValueError(
            f"reward {NAME!r} needs the clip frames (a column {' or '.join(map(repr, names))}) or a "
            f"precomputed {EMBEDDING_COLUMN!r} column; columns received: "
            f"{sorted(k for k in kwargs if k not in ('trainer_state', 'log_extra', 'log_metric'))}"
        )
    frames = column(kwargs, name, size, NAME)
    ids = column(kwargs, ID_COLUMN, size, NAME)
    return scorer.video_embeddings(ids, frames)


@register_reward(NAME, span="description")
def clip_alignment_reward(
    completions: Any = None,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str | None = None,
    floor: float | None = DEFAULT_FLOOR,
    shift: float = DEFAULT_SHIFT,
    scale: float = DEFAULT_SCALE,
    cache_size: int = DEFAULT_CACHE_SIZE,
    frames_column: str | None = None,
    max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS,
    **kwargs: Any,
) -> list[float]:
    """R1 per completion (see the module docstring). Columns: ``id`` + ``images``/``frames``, or
    ``frame_embedding``."""
    normalise = Normalisation(floor, shift, scale)
    completions = as_completion_list(completions)
    if not completions:
        return []
    scorer = get_scorer(model_name, pretrained, device, cache_size)
    videos = batch_video_embeddings(scorer, kwargs, len(completions), frames_column)
    descriptions = []
    for completion in completions:
        try:
            descriptions.append(description_of(completion, max_description_chars))
        except Exception:  # noqa: BLE001 - model output never raises
            descriptions.append("")
    cosines = scorer.cosines(videos, descriptions)
    log_means(kwargs, NAME, {"cosine": [c for c in cosines if c is not None]})
    return [normalise(c) for c in cosines]


# ---------------------------------------------------------------------------------------------
# Incremental rewards (for an actor-critic trainer)

_WORD = re.compile(r"\S+")


@dataclass
class IncrementalRewards:
    """Per-step rewards over prefixes T_1..T_K of a description.

    ``rewards[k] = values[k] - values[k-1]`` with ``values[-1]`` read as ``initial`` = R1(I, T_0),
    CLIP's score of the empty text against the clip. ``ends[k]`` is the end character offset of T_k in ``description``;
    ``completion_ends[k]`` the same offset in the completion text when the description appears
    there verbatim (None otherwise, e.g. when JSON escapes changed it).
    """

    rewards: list[float]
    ends: list[int]
    values: list[float]
    initial: float
    description: str
    completion_ends: list[int] | None

    @property
    def total(self) -> float:
        """R1(I, full description) - R1(I, ""): what the rewards sum to."""
        return (self.values[-1] if self.values else self.initial) - self.initial


def prefix_ends(description: str, unit: str = "word", max_steps: int | None = None) -> list[int]:
    """End offsets of the prefixes scored: after each word (``unit="word"``) or each character
    (``unit="char"``). At most ``max_steps`` prefixes; the last one always ends the description,
    so that it scores exactly what the reward scores."""
    if not description:
        return []
    if unit == "word":
        ends = [m.end() for m in _WORD.finditer(description)]
    elif unit == "char":
        ends = list(range(1, len(description) + 1))
    else:
        raise ValueError(f"unit must be 'word' or 'char' (or pass ends=), got {unit!r}")
    if max_steps is not None and len(ends) > max_steps:
        ends = ends[: max(max_steps - 1, 0)]
    if not ends or ends[-1] != len(description):
        ends.append(len(description))
    return ends


def incremental_rewards(
    frames_embedding: Any,
    completions: Sequence[Any],
    scorer: ClipScorer,
    *,
    unit: str = "word",
    ends: Sequence[Sequence[int]] | None = None,
    max_steps: int | None = None,
    normalisation: Normalisation | None = None,
    max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS,
) -> list[IncrementalRewards]:
    """Per-step R1 rewards over the description prefixes of each completion, in one text batch.

    ``frames_embedding``: (B, D) clip embeddings (``scorer.video_embeddings`` or a precomputed
    column), or one (D,) vector shared by every completion. ``ends`` optionally gives, per
    completion, the character end offsets of the steps inside its description (e.g. from the
    policy tokenizer's offsets): "per token" then means the policy's tokens. ``max_steps``
    defaults to the CLIP context length (CLIP reads no further). An empty description gives no
    step (total 0). Never raises on model output.
    """
    torch = _torch()
    normalise = normalisation or Normalisation()
    completions = list(completions)
    videos = torch.as_tensor(frames_embedding, dtype=torch.float32)
    if videos.ndim == 1:
        videos = videos[None].expand(len(completions), -1)
    if videos.shape[0] != len(completions):
        raise ValueError(f"{videos.shape[0]} clip embeddings for {len(completions)} completions")
    if ends is not None and len(ends) != len(completions):
        raise ValueError(f"ends has {len(ends)} entries for {len(completions)} completions")
    if max_steps is None:
        max_steps = getattr(scorer.tokenizer, "context_length", None)
    steps, texts, rows = [], [], []
    for i, completion in enumerate(completions):
        text = completion_text(completion)
        description = description_of(text, max_description_chars)
        if ends is not None:
            own = sorted({int(e) for e in ends[i] if 0 < int(e) <= len(description)})
            if description and (not own or own[-1] != len(description)):
                own.append(len(description))
        else:
            own = prefix_ends(description, unit, max_steps)
        steps.append((text, description, own))
        texts.extend(description[:end] for end in own)
        rows.extend([i] * len(own))
    cosines = scorer.cosines(videos[rows], texts) if texts else []
    initial = [normalise(c) for c in scorer.empty_text_cosines(videos)]  # R1(I, T_0), T_0 = ""
    out, position = [], 0
    for i, (text, description, own) in enumerate(steps):
        values = [normalise(c) for c in cosines[position : position + len(own)]]
        position += len(own)
        previous = [initial[i]] + values[:-1]
        start = locate_description(text, description)
        out.append(
            IncrementalRewards(
                rewards=[v - p for v, p in zip(values, previous)],
                ends=own,
                values=values,
                initial=initial[i],
                description=description,
                completion_ends=[start + e for e in own] if start >= 0 else None,
            )
        )
    return out


def calibrate_normalisation(cosines: Sequence[float]) -> dict[str, float]:
    """shift/scale for a z-normalisation from reference cosines (e.g. R1 of the reference
    descriptions of a few hundred training clips with ``floor=None``): ``{"shift": mean,
    "scale": std}``, ready to put in the stage's YAML."""
    values = [float(c) for c in cosines if c is not None and math.isfinite(c)]
    if len(values) < 2:
        raise ValueError("calibrate_normalisation needs at least two finite cosines")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    if std == 0:
        raise ValueError("calibrate_normalisation: the cosines are all equal, no scale to learn")
    return {"shift": mean, "scale": std}
