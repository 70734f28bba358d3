"""Generate answers with a saved model folder, the way a user would: no text prompt, M frames.

A model folder is whatever ``from_pretrained`` loads: the untrained SmolVLM (or the tiny stand-in),
a stage's output with LoRA merged, or a LoRA adapter folder (``adapter_config.json`` naming its
base; transformers loads it through peft). The processor comes from the same folder, so the image
budget a recipe saved with it (``do_image_splitting``, ``size.longest_edge``) is used as is, unless
``image_splitting`` / ``image_longest_edge`` override it (the same knobs as the recipes'
``RecipeArguments``).

Generation is batched with LEFT padding (decoder-only models continue from the right end of the
prompt), greedy (or sampled as an RL stage samples its groups: :class:`Sampling`) and bounded by
``max_new_tokens``. SmolVLM's generation prompt ends with "Assistant:" and no space, so answers
start with a space: it is stripped here; the answer is read only by
:func:`taxonomy.answer.parse_answer`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm
from transformers import AutoModelForImageTextToText, AutoProcessor

from core.image_budget import configure_image_budget
from core.model_source import ModelSourceError, check_model_source
from core.precision import resolve_precision, torch_dtype
from core.prompt import answer_turn, image_prompt
from evaluate.constrained import DECODING_MODES, DEFAULT_DECODING

DEFAULT_BATCH_SIZE = 8
# The canonical JSON answer of a busy scene is ~100-200 tokens with the tiny tokenizer and up to
# ~250 with SmolVLM's; the bound stops runaway generations from a model that never says EOS.
DEFAULT_MAX_NEW_TOKENS = 256


class EvaluationError(ValueError):
    """The model folder, dataset or split cannot be used; the message names it and says why."""


# ---------------------------------------------------------------------------------------------
# Model and processor


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """fp32 on CPU (right on every CPU; bf16 is fast only on some, docs/smolvlm.md), bf16 on GPUs that support it."""
    try:
        return torch_dtype(resolve_precision(precision, device))
    except ValueError as err:
        raise EvaluationError(str(err)) from None


def processor_folder(folder: Path) -> Path:
    """Where the processor is: the folder itself, or for an adapter folder saved without one, the
    base model named in adapter_config.json."""
    if (folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file():
        return folder
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        try:
            base = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        except json.JSONDecodeError as err:
            raise EvaluationError(f"{adapter_config}: not valid JSON ({err})") from err
        if base:
            return Path(base)
    return folder


def check_model_folder(folder: Path) -> None:
    """A folder ``from_pretrained`` can load: a config (or adapter config) and weights."""
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise EvaluationError(
            f"{folder}: neither config.json nor adapter_config.json: not a model folder saved with "
            "save_pretrained (train one with a recipe, or `make tiny-models`)"
        )
    if not (any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))):
        raise EvaluationError(f"{folder}: no weights (*.safetensors or *.bin) in the folder")


def load_model_and_processor(model_dir: str | Path, image_splitting: bool | None = None,
                             image_longest_edge: int | None = None, device: str | None = None,
                             precision: str = "auto"):
    """``(model, processor)`` from one folder, model in eval mode on ``device``; processor set for
    batched generation (left padding) with the requested image budget."""
    folder = Path(model_dir)
    if folder.is_dir():
        check_model_folder(folder)
    else:  # a hub id ("HuggingFaceTB/SmolVLM-Instruct"): only from the local cache when offline
        if str(model_dir).count("/") != 1 or folder.is_absolute() or str(model_dir).startswith("."):
            raise EvaluationError(f"model folder not found: {folder}")
        try:
            check_model_source(str(model_dir))
        except ModelSourceError as err:
            raise EvaluationError(str(err)) from err
    torch_device = pick_device(device)
    dtype = pick_dtype(torch_device, precision)
    try:
        processor = AutoProcessor.from_pretrained(str(processor_folder(folder)))
        model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=dtype)
    except (OSError, ValueError, KeyError) as err:
        raise EvaluationError(f"{folder}: cannot load the model or its processor ({err})") from err
    model.to(torch_device).eval()
    processor.tokenizer.padding_side = "left"
    configure_image_budget(processor, image_splitting, image_longest_edge)
    return model, processor


# ---------------------------------------------------------------------------------------------
# Data


def load_eval_split(dataset_dir: str | Path, split: str, max_samples: int | None = None):
    """One split of a prepared dataset (``make data``), optionally its first ``max_samples`` rows."""
    from datasets import load_from_disk

    path = Path(dataset_dir)
    if not path.exists():
        raise EvaluationError(f"dataset not found: {path} (prepare one with `make data` or `make demo`)")
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise EvaluationError(f"{path}: not a dataset saved with save_to_disk ({err})") from err
    if split not in dataset:
        raise EvaluationError(f"{path} has no split {split!r}; it has {sorted(dataset)}")
    data = dataset[split]
    missing = [c for c in ("id", "frames", "actions", "reasons") if c not in data.column_names]
    if missing:
        raise EvaluationError(f"{path}[{split}] lacks column(s) {missing}; re-run `make data`")
    if len(data) == 0:
        raise EvaluationError(f"{path}[{split}] is empty")
    if max_samples is not None:
        if max_samples < 1:
            raise EvaluationError(f"max_samples must be >= 1, got {max_samples}")
        data = data.select(range(min(max_samples, len(data))))
    return data


# ---------------------------------------------------------------------------------------------
# Generation


@dataclass
class Generated:
    """Answers in sample order, with how many tokens each took (up to, not counting, the EOS)
    and whether it stopped at ``max_new_tokens`` without saying EOS (a runaway generation)."""

    texts: list[str] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)
    hit_limit: list[bool] = field(default_factory=list)

    def extend(self, other: "Generated") -> None:
        self.texts += other.texts
        self.token_counts += other.token_counts
        self.hit_limit += other.hit_limit


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding, as an RL stage samples its groups (TRL's GRPOConfig fields of one name)."""

    samples: int  # num_generations: answers drawn per sample
    temperature: float
    top_p: float
    top_k: int  # 0: no top-k cut

    def __post_init__(self) -> None:
        if self.samples < 1 or self.temperature <= 0:
            raise EvaluationError(f"sampling needs samples >= 1 and temperature > 0, got {self}")

    def generate_kwargs(self) -> dict:
        return {"do_sample": True, "num_return_sequences": self.samples, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k}


def forced_prompt(processor: Any, num_frames: int, answer_start: str) -> str:
    """The prompt text that ends ``answer_start`` words into the assistant's answer, cut from the
    chat template of the whole conversation so that the text between the generation prompt and
    the answer (SmolVLM's space) is exactly what training saw."""
    conversation = processor.apply_chat_template(image_prompt(num_frames) + answer_turn(answer_start))
    return conversation[: conversation.rindex(answer_start) + len(answer_start)]


@torch.no_grad()
def generate_batch(model: Any, processor: Any, frame_lists: Sequence[Sequence[Any]],
                   max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, constraint: Any = None,
                   sampling: Sampling | None = None, answer_starts: Sequence[str] | None = None) -> Generated:
    """Answers (stripped) for one batch: each entry of ``frame_lists`` is one sample's M frames.

    ``constraint``: an :class:`evaluate.constrained.ConstrainedDecoder` for grammar-constrained
    decoding (every answer schema-valid, closed before the cap); None decodes freely.
    ``sampling``: draw ``sampling.samples`` answers per sample (consecutive in the result) as an RL
    stage does; None decodes greedily.
    ``answer_starts``: per sample, text its answer is forced to begin with (the model continues
    it; the returned text includes it); None lets the model say everything."""
    if answer_starts is None:
        prompts = [processor.apply_chat_template(image_prompt(len(frames)), add_generation_prompt=True)
                   for frames in frame_lists]
    else:
        if len(answer_starts) != len(frame_lists):
            raise EvaluationError(f"{len(answer_starts)} answer starts for {len(frame_lists)} samples")
        if constraint is not None:  # the grammar would read the forced text as the answer's first tokens
            raise EvaluationError("forced answer starts and constrained decoding do not combine")
        prompts = [forced_prompt(processor, len(frames), start) for frames, start in zip(frame_lists, answer_starts)]
    images = [[frame.convert("RGB") for frame in frames] for frames in frame_lists]
    inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    inputs = {
        k: (v.to(device, dtype) if k == "pixel_values" else v.to(device)) for k, v in inputs.items()
    }
    tokenizer = processor.tokenizer
    eos_id = tokenizer.eos_token_id
    prompt_length = inputs["input_ids"].shape[1]
    output = model.generate(
        **inputs,
        logits_processor=constraint.processors(prompt_length, max_new_tokens) if constraint else None,
        max_new_tokens=max_new_tokens,
        **(sampling.generate_kwargs() if sampling else {"do_sample": False}),
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id,
    )
    new_tokens = output[:, prompt_length:].cpu()
    result = Generated()
    starts = [""] * len(frame_lists) if answer_starts is None else list(answer_starts)
    samples = sampling.samples if sampling else 1
    for index, row in enumerate(new_tokens):
        eos_positions = (row == eos_id).nonzero()
        stopped = len(eos_positions) > 0
        count = int(eos_positions[0]) if stopped else len(row)
        said = tokenizer.decode(row[:count], skip_special_tokens=True)
        result.texts.append((starts[index // samples] + said).strip())
        result.token_counts.append(count)
        result.hit_limit.append(not stopped)
    return result


def generate_answers(model: Any, processor: Any, frame_lists: Sequence[Sequence[Any]],
                     batch_size: int = DEFAULT_BATCH_SIZE, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                     progress: bool = True, desc: str = "generating", constraint: Any = None,
                     sampling: Sampling | None = None, answer_starts: Sequence[str] | None = None) -> Generated:
    """Answers for many samples, ``batch_size`` at a time, with a progress bar (``.texts``; with
    ``sampling``, each sample's answers consecutive; ``answer_starts`` as :func:`generate_batch`)."""
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    if max_new_tokens < 1:
        raise EvaluationError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    result = Generated()
    with tqdm(total=len(frame_lists), desc=desc, unit="sample", disable=not progress) as bar:
        for start in range(0, len(frame_lists), batch_size):
            batch = frame_lists[start : start + batch_size]
            forced = None if answer_starts is None else answer_starts[start : start + batch_size]
            result.extend(generate_batch(model, processor, batch, max_new_tokens, constraint, sampling, forced))
            bar.update(len(batch))
    return result


class _FrameColumn:
    """A split's ``frames`` column read lazily one slice at a time, so memory does not grow with
    the split (``data["frames"]`` would decode every frame at once)."""

    def __init__(self, data: Any):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, window: slice) -> list:
        return self.data[window]["frames"]


def generate_for_split(model: Any, processor: Any, data: Any, batch_size: int = DEFAULT_BATCH_SIZE,
                       max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: bool = True,
                       constraint: Any = None, sampling: Sampling | None = None,
                       answer_starts: Sequence[str] | None = None, desc: str = "generating") -> Generated:
    """Answers for every row of a prepared split (its ``frames`` column), in row order
    (``answer_starts`` as :func:`generate_batch`)."""
    return generate_answers(model, processor, _FrameColumn(data), batch_size, max_new_tokens, progress, desc,
                            constraint=constraint, sampling=sampling, answer_starts=answer_starts)


def add_model_loading_args(parser) -> None:
    """The command-line flags of :func:`load_model_and_processor` (eval and predict share them)."""
    parser.add_argument("--image-splitting", action=argparse.BooleanOptionalAction, default=None,
                        help="override the processor's image splitting; None: as saved with the model")
    parser.add_argument("--image-longest-edge", type=int, default=None,
                        help="override the processor's longest edge in px; None: as saved with the model")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...; None: cuda when available")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--decoding", default=DEFAULT_DECODING, choices=DECODING_MODES,
                        help="free: as the model says it; constrained: only tokens that keep the answer valid under "
                             "taxonomy/answer.schema.json, closed before --max-new-tokens (evaluate/constrained.py)")


def decoding_constraint(decoding: str, model: Any, processor: Any) -> Any:
    """The constraint ``generate_batch`` takes for a decoding mode: None for free decoding."""
    if decoding not in DECODING_MODES:
        raise EvaluationError(f"decoding must be one of {DECODING_MODES}, got {decoding!r}")
    if decoding == "free":
        return None
    from evaluate.constrained import ConstrainedDecoder

    return ConstrainedDecoder.for_model(model, processor)
