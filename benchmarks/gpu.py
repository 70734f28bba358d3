"""GPU benchmark of the recipes on the three published SmolVLM architectures (random weights).

    python -m benchmarks.gpu [--models 256M,500M,2.2B] [--modes full,lora,qlora] [--steps 5] [--warmup 2]
                             [--rl-algorithms grpo,actor_critic] [--rl-modes lora] [--frames 4]
                             [--markdown BENCHMARKS.md | --no-write]

For each size (``tiny_models.vlm.real_size_config``: the exact architecture, random bf16 weights,
saved to a temporary folder and loaded back the way the recipes load a model) and each mode, one
run of the real SFT recipe (``recipes/sft/sft.yaml`` through ``recipes.sft.sft.main``, the recipe's
own settings: batch 4, activation checkpointing, LoRA r=8 on the text model; full fine-tuning
freezes the vision tower as the README's command does), then RL steps of the real stage scripts:
GRPO (``recipes.stage2.stage2``, reward R2) and the actor-critic (``recipes.stage1.stage1``, dense
rewards from a tiny CLIP built here: a real ViT-B-32 adds its own cost), 8 completions of exactly
``--max-new-tokens`` tokens per clip. Frames: ``--frames`` per clip at the recipes' default image
budget (splitting off: one tile per frame; ``--image-splitting`` for the published budget).

Measured per run, over ``--steps`` optimizer steps after ``--warmup`` untimed ones: step time,
samples/s, tokens/s (non-padding tokens the text model reads, image tokens included), model FLOPs
utilisation (SFT; formula in the section and :func:`train_flops`), peak GPU memory (allocated), and
for RL the generation time and generated tokens/s. Nothing is saved (the stage folder write is
skipped).

Without CUDA the same code path runs on the tiny model (``tiny_models``), so the command is
exercised; the section then says that the GPU figures are missing. A CPU run never overwrites GPU
figures already in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib
import json
import logging
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import torch
import transformers
import trl
from transformers import (
    AutoConfig,
    GenerationConfig,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessor,
    Idefics3Processor,
    TrainerCallback,
)

from benchmarks.markdown import read_section, section_markers, write_section
from data_prep.prepare import prepare
from data_prep import synth
from recipes.cli import USER_ERRORS
from core.prompt import tokens_per_sample
from tiny_models import clip as tiny_clip
from tiny_models.clip import TinyClipConfig, local_dir_name, save_tiny_clip
from tiny_models.vlm import (
    IMAGE_TOKEN,
    SMOLVLM_CHAT_TEMPLATE,
    TinyVLMConfig,
    build_tiny_vlm,
    image_tokens_per_tile,
    real_size_config,
    real_size_image_processor_kwargs,
    save_tiny_vlm,
)

OWNER = "benchmarks.gpu"
SECTION_START, SECTION_END = section_markers(OWNER)
CUDA_MARK = "<!-- device: cuda -->"  # a section holding GPU figures carries this line
REPO = Path(__file__).resolve().parents[1]
DEFAULT_MARKDOWN = REPO / "BENCHMARKS.md"

SIZES = {"256M": "SmolVLM-256M-Instruct", "500M": "SmolVLM-500M-Instruct", "2.2B": "SmolVLM-Instruct"}
MODES = ("full", "lora", "qlora")
ALGORITHMS = ("grpo", "actor_critic")
# Recipe overrides per mode, as README "Using the real SmolVLM" gives them (sft.yaml is QLoRA).
MODE_OVERRIDES = {
    "full": ["--load_in_4bit", "false", "--use_peft", "false", "--vision_tower", "frozen"],
    "lora": ["--load_in_4bit", "false", "--use_peft", "true"],
    "qlora": ["--load_in_4bit", "true", "--use_peft", "true"],
}
DEFAULT_STEPS = 5
DEFAULT_WARMUP = 2
DEFAULT_FRAMES = 4
DEFAULT_BATCH = 4  # sft.yaml's per_device_train_batch_size
DEFAULT_NUM_GENERATIONS = 8
DEFAULT_MAX_NEW_TOKENS = 128
DEFAULT_GPU_FRAME_SIZE = 512  # README: `make data IMAGE_SIZE=512` for the real models
DEFAULT_CPU_FRAME_SIZE = 64  # the tiny model's tile
SYNTH_FRAMES_PER_CLIP = 5  # the synthetic world's clip length (M <= this)
MIN_CLIPS = 64  # synthetic clips generated when no --dataset is given (70% land in train)
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched on
# torch.cuda.get_device_name(); first match wins. Others: --peak-tflops.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
)
GIB = 2**30
MAX_REASON_CHARS = 80  # a skipped run's reason, as a table cell


# --------------------------------------------------------------------------------------------
# FLOPs


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the FLOPs formula needs of an Idefics3 config (counted on the meta device)."""

    n_text: int  # text model matmul weights: decoder layers + lm_head (not the embedding lookup)
    n_vision: int  # vision tower weights but its position-embedding lookup (the patch conv is a matmul)
    n_connector: int
    text_layers: int
    text_attention_width: int  # heads x head_dim
    vision_layers: int
    vision_width: int
    patches_per_tile: int
    image_seq_len: int  # <image> tokens per tile after the pixel shuffle
    total_params: int


def model_shape(config) -> ModelShape:
    with torch.device("meta"):
        model = Idefics3ForConditionalGeneration(config)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    text, vision = model.model.text_model, model.model.vision_model
    text_cfg, vision_cfg = config.text_config, config.vision_config
    head_dim = getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // text_cfg.num_attention_heads
    return ModelShape(
        n_text=count(text) - count(text.embed_tokens) + count(model.lm_head),
        n_vision=count(vision) - count(vision.embeddings.position_embedding),
        n_connector=count(model.model.connector),
        text_layers=text_cfg.num_hidden_layers,
        text_attention_width=text_cfg.num_attention_heads * head_dim,
        vision_layers=vision_cfg.num_hidden_layers,
        vision_width=vision_cfg.hidden_size,
        patches_per_tile=(vision_cfg.image_size // vision_cfg.patch_size) ** 2,
        image_seq_len=image_tokens_per_tile(config),
        total_params=count(model),
    )


# Passes per forward-pass FLOP: 3 = forward + gradients of inputs + gradients of weights (a trained
# module whose input needs gradients); 2 = forward + one of them (a trained module whose input needs
# none: the connector after a frozen tower; or a frozen module gradients flow through: the text
# model under LoRA); 1 = forward only (a frozen module nothing upstream needs gradients from).
PASSES = {
    "full": {"text": 3, "connector": 2, "vision": 1},  # vision tower frozen (README's full fine-tuning)
    "lora": {"text": 2, "connector": 1, "vision": 1},
    "qlora": {"text": 2, "connector": 1, "vision": 1},
}
FLOPS_FORMULA = (
    "forward FLOPs per step = text 2·N_text·T + 4·L_t·A_t·Σ T_i²  +  vision tiles·(2·N_vis·P + 4·L_v·d_v·P²)  "
    "+  connector 2·N_conn·I, with T the non-padding tokens of the step (T_i per sample, image tokens included), "
    "P patches per tile, I image tokens, N the matmul weights (embedding lookups excluded), A_t = heads·head_dim; "
    "each term times its passes (full: text 3, connector 2, frozen vision 1; LoRA/QLoRA: text 2, connector 1, "
    "vision 1; LoRA's own weights and activation-checkpointing recomputation not counted). "
    "MFU = FLOPs per step / step time / the GPU's dense bf16 peak"
)


def train_flops(shape: ModelShape, mode: str, tokens: float, samples: int, tiles: float) -> float:
    """Model FLOPs of one optimizer step (see FLOPS_FORMULA): ``tokens`` non-padding tokens over
    ``samples`` sequences (equal lengths assumed for the attention term), ``tiles`` vision tiles."""
    passes = PASSES[mode]
    mean_length = tokens / samples
    text = 2 * shape.n_text * tokens + 4 * shape.text_layers * shape.text_attention_width * mean_length**2 * samples
    vision = tiles * (2 * shape.n_vision * shape.patches_per_tile
                      + 4 * shape.vision_layers * shape.vision_width * shape.patches_per_tile**2)
    connector = 2 * shape.n_connector * tiles * shape.image_seq_len
    return passes["text"] * text + passes["vision"] * vision + passes["connector"] * connector


def peak_tflops(override: float | None) -> tuple[float | None, str]:
    if override is not None:
        return override, "given with --peak-tflops"
    if not torch.cuda.is_available():
        return None, "no GPU"
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"{name}: dense bf16 data-sheet peak"
    return None, f"{name}: peak unknown (give --peak-tflops)"


# --------------------------------------------------------------------------------------------
# Models and data


def build_real_size_model(name: str, out: Path, seed: int) -> Path:
    """A folder ``from_pretrained`` loads: the published architecture with random weights, SmolVLM's
    processor settings (image budget of the checkpoint) and the tiny tokenizer (text content does
    not matter for speed; the embedding keeps the real vocabulary size)."""

    _, tiny_processor = build_tiny_vlm(TinyVLMConfig(seed=seed))
    tokenizer = tiny_processor.tokenizer
    config = real_size_config(name)
    tokenizer.model_max_length = config.text_config.max_position_embeddings
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    for key, value in ids.items():
        setattr(config, key, value)
        setattr(config.text_config, key, value)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        model = Idefics3ForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(out)
    del model
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(**real_size_image_processor_kwargs(name),
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tokenizer, image_seq_len=image_tokens_per_tile(config), chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    return out


def build_tiny_model(out: Path, seed: int) -> Path:
    model, processor = build_tiny_vlm(TinyVLMConfig(seed=seed))
    return save_tiny_vlm(model, processor, out)


def build_tiny_clip(out: Path, seed: int) -> str:
    config = TinyClipConfig(seed=seed)
    return local_dir_name(save_tiny_clip(tiny_clip.build_tiny_clip(config), config, out))


def build_dataset(out: Path, clips: int, frames: int, frame_size: int, seed: int) -> Path:
    world = out.parent / "synth-world"
    synth.generate(world, clips, seed=seed, num_proc=1, progress=False)
    prepare(world, out, frames=frames, stride=1, image_size=frame_size, num_proc=1)
    return out


# --------------------------------------------------------------------------------------------
# Measuring a recipe run


class Probe(TrainerCallback):
    """Times optimizer steps and generation inside a stage's own trainer, handed to the stage as a
    ``TrainerCallback``; counts tokens and memory."""

    def __init__(self, warmup: int, count_input_tokens: bool = False):
        self.warmup = warmup
        # SFT: let the Trainer count the non-padding tokens of each batch (GRPO counts its own)
        self.count_input_tokens = count_input_tokens
        self.cuda = torch.cuda.is_available()
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []
        self.generation_seconds: list[float] = []  # per timed step
        self.generated_tokens: list[int] = []
        self.budget: dict[str, int] | None = None  # core.prompt.tokens_per_sample of the first clip
        self.samples_per_step: int | None = None
        self.peak_allocated: int | None = None
        self._gen_seconds = 0.0
        self._gen_tokens = 0
        self._start = 0.0
        self._tokens_at_start = 0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_init_end(self, args, state, control, **kwargs):
        if self.count_input_tokens:  # a choice the command line cannot give (it parses a bool)
            args.include_num_input_tokens_seen = "non_padding"

    def on_train_begin(self, args, state, control, model=None, processing_class=None, train_dataloader=None,
                       **kwargs):
        self.budget = tokens_per_sample(processing_class, train_dataloader.dataset[0])
        self.samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        self.wrap_generate(model)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self._gen_seconds, self._gen_tokens = 0.0, 0
        self._tokens_at_start = state.num_input_tokens_seen
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        if state.global_step > self.warmup:
            self.step_seconds.append(time.perf_counter() - self._start)
            self.step_tokens.append(state.num_input_tokens_seen - self._tokens_at_start)
            self.generation_seconds.append(self._gen_seconds)
            self.generated_tokens.append(self._gen_tokens)

    def on_train_end(self, args, state, control, **kwargs):
        if self.cuda:
            self.peak_allocated = torch.cuda.max_memory_allocated()

    def wrap_generate(self, model: torch.nn.Module) -> None:
        """Time ``generate`` of the innermost model (peft and TRL call it through their wrappers):
        the one measurement no callback event gives."""
        while True:  # unwrap DDP (.module) and peft (get_base_model) down to the transformers model
            inner = model.get_base_model() if hasattr(model, "get_base_model") else getattr(model, "module", None)
            if not isinstance(inner, torch.nn.Module) or inner is model:
                break
            model = inner
        generate = model.generate
        probe = self

        def timed_generate(*args, **kwargs):
            probe._sync()
            start = time.perf_counter()
            output = generate(*args, **kwargs)
            probe._sync()
            probe._gen_seconds += time.perf_counter() - start
            prompt = kwargs.get("input_ids", args[0] if args else None)
            sequences = output.sequences if hasattr(output, "sequences") else output
            if prompt is not None:
                probe._gen_tokens += sequences.shape[0] * (sequences.shape[1] - prompt.shape[1])
            return output

        model.generate = timed_generate


def run_stage(stage: str, probe: Probe, recipe_args: list[str]) -> None:
    """Run a stage's own script with the probe as a callback; the stage folder it writes (outside
    the timed steps) is removed afterwards: a benchmark keeps figures, not models."""
    module = importlib.import_module(f"recipes.{stage}.{stage}")
    try:
        module.main(recipe_args, callbacks=[probe])
    finally:
        shutil.rmtree(recipe_args[recipe_args.index("--output_dir") + 1], ignore_errors=True)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def attempt(run: Callable[[], None]) -> str:
    """'ok', or why the run could not happen: skipped (the recipe refused: no bitsandbytes or no CUDA
    for QLoRA), out of GPU memory, or failed (the error, also printed in full). One run's failure
    must not cost the others' figures."""
    try:
        run()
    except USER_ERRORS as err:
        reason = str(err).split(". ")[0]
        reason = reason.split(": ")[0] if len(reason) > MAX_REASON_CHARS else reason
        return "skipped: " + reason.replace("|", "/")
    except torch.cuda.OutOfMemoryError:
        return "out of GPU memory"
    except Exception as err:  # noqa: BLE001 (reported in the table and printed)
        traceback.print_exc()
        return f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}".replace("|", "/")
    finally:
        free_memory()
    return "ok"


# --------------------------------------------------------------------------------------------
# The benchmark


@dataclasses.dataclass
class Row:
    model: str
    params: int
    mode: str
    kind: str  # "sft" or an RL algorithm
    status: str
    batch: int | None = None
    tokens_per_sample: float | None = None
    step_s: float | None = None
    samples_per_s: float | None = None
    tokens_per_s: float | None = None
    tflop_per_step: float | None = None
    mfu: float | None = None
    peak_gib: float | None = None
    generation_s: float | None = None
    generated_tokens_per_s: float | None = None


def common_recipe_args(model_dir: Path, dataset: Path, out: Path, args, steps: int) -> list[str]:
    return [
        "--model_name_or_path", str(model_dir), "--dataset_path", str(dataset), "--output_dir", str(out),
        "--max_steps", str(steps), "--frames_per_clip", str(args.frames),
        "--image_splitting", str(args.image_splitting).lower(),
        "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
        "--logging_steps", str(10**6), "--seed", str(args.seed),
    ]


def measure_sft(model_name, model_dir, shape, mode, dataset, work, args, peak) -> Row:
    probe = Probe(args.warmup, count_input_tokens=True)
    steps = args.warmup + args.steps
    recipe = ["--config", str(REPO / "recipes/sft/sft.yaml"),
              *common_recipe_args(model_dir, dataset, work / f"sft-{mode}", args, steps),
              "--per_device_train_batch_size", str(args.batch_size), "--gradient_accumulation_steps", "1",
              "--max_train_samples", str(args.batch_size * steps), "--load_best_model_at_end", "false",
              *MODE_OVERRIDES[mode]]
    status = attempt(lambda: run_stage("sft", probe, recipe))
    row = Row(model_name, shape.total_params, mode, "sft", status)
    if status != "ok" or not probe.step_seconds:
        return row
    step_s = statistics.mean(probe.step_seconds)
    tokens = statistics.mean(probe.step_tokens)
    samples = probe.samples_per_step
    tiles = samples * probe.budget["image_tokens"] / shape.image_seq_len
    flops = train_flops(shape, mode, tokens, samples, tiles)
    row.batch, row.tokens_per_sample, row.step_s = samples, tokens / samples, step_s
    row.samples_per_s, row.tokens_per_s = samples / step_s, tokens / step_s
    row.tflop_per_step = flops / 1e12
    row.mfu = flops / step_s / (peak * 1e12) if peak else None
    row.peak_gib = probe.peak_allocated / GIB if probe.peak_allocated is not None else None
    return row


def measure_rl(model_name, model_dir, shape, mode, algorithm, dataset, work, args, clip) -> Row:
    probe = Probe(args.warmup)
    steps = args.warmup + args.steps
    stage = "stage1" if algorithm == "actor_critic" else "stage2"
    rewards = (["--reward_funcs", "clip_alignment", "--reward_weights", "1.0", "--reward_params",
                json.dumps({"clip_alignment": {"model_name": clip, "pretrained": None}})]
               if algorithm == "actor_critic" else ["--reward_funcs", "action_reasoning", "--reward_weights", "1.0"])
    recipe = ["--config", str(REPO / f"recipes/{stage}/{stage}.yaml"),
              *common_recipe_args(model_dir, dataset, work / f"{stage}-{mode}", args, steps),
              "--num_generations", str(args.num_generations), "--max_completion_length", str(args.max_new_tokens),
              "--per_device_train_batch_size", str(args.num_generations), "--gradient_accumulation_steps", "1",
              "--max_train_samples", str(steps), *rewards, *MODE_OVERRIDES[mode],
              # every completion exactly max_new_tokens long: the same work per step
              "--generation_kwargs", json.dumps({"min_new_tokens": args.max_new_tokens})]
    status = attempt(lambda: run_stage(stage, probe, recipe))
    row = Row(model_name, shape.total_params, mode, algorithm, status)
    if status != "ok" or not probe.step_seconds:
        return row
    step_s = statistics.mean(probe.step_seconds)
    tokens = statistics.mean(probe.step_tokens)
    row.batch, row.tokens_per_sample, row.step_s = probe.samples_per_step, tokens / probe.samples_per_step, step_s
    row.samples_per_s, row.tokens_per_s = probe.samples_per_step / step_s, tokens / step_s
    row.generation_s = statistics.mean(probe.generation_seconds)
    generated = statistics.mean(probe.generated_tokens)
    row.generated_tokens_per_s = generated / row.generation_s if row.generation_s else None
    row.peak_gib = probe.peak_allocated / GIB if probe.peak_allocated is not None else None
    return row


# --------------------------------------------------------------------------------------------
# Report

SFT_COLUMNS = ("model", "params", "mode", "status", "batch", "tokens/sample", "step s", "samples/s", "tokens/s",
               "TFLOP/step", "MFU", "peak GPU mem GiB")
RL_COLUMNS = ("model", "params", "mode", "algorithm", "status", "completions", "tokens/sequence", "step s",
              "generation s", "generated tokens/s", "tokens/s", "peak GPU mem GiB")


def millions(params: int) -> str:
    return f"{params / 1e6:,.0f}M" if params >= 1e7 else f"{params / 1e6:.2f}M"


def fmt(value: float | None, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def sft_cells(row: Row, cuda: bool) -> list[str]:
    return [row.model, millions(row.params), row.mode, row.status, fmt(row.batch, "d"),
            fmt(row.tokens_per_sample, ".0f"), fmt(row.step_s, ".3f"), fmt(row.samples_per_s, ".3g"),
            fmt(row.tokens_per_s, ",.0f"), fmt(row.tflop_per_step, ".3g"),
            fmt(row.mfu * 100 if row.mfu is not None else None, ".1f") + ("%" if row.mfu is not None else ""),
            fmt(row.peak_gib, ".1f", "–" if cuda else "n/a (CPU)")]


def rl_cells(row: Row, cuda: bool, num_generations: int) -> list[str]:
    completion = row.tokens_per_sample
    return [row.model, millions(row.params), row.mode, row.kind, row.status,
            str(num_generations) if row.status == "ok" else "–", fmt(completion, ".0f"), fmt(row.step_s, ".3f"),
            fmt(row.generation_s, ".3f"), fmt(row.generated_tokens_per_s, ",.0f"), fmt(row.tokens_per_s, ",.0f"),
            fmt(row.peak_gib, ".1f", "–" if cuda else "n/a (CPU)")]


def table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def machine() -> str:
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"{torch.cuda.get_device_name()} ({props.total_memory / GIB:.0f} GiB), CUDA {torch.version.cuda}, {versions}"
    return f"CPU only ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads), {versions}"


def render_section(sft_rows: list[Row], rl_rows: list[Row], args, command: str, peak_note: str,
                   tokens_note: str, models_note: str) -> str:
    cuda = torch.cuda.is_available()
    lines = [SECTION_START, "## GPU: SFT and RL steps on the SmolVLM sizes (`python -m benchmarks.gpu`)", ""]
    if cuda:
        lines += [CUDA_MARK, ""]
    else:
        lines += [
            "**GPU figures: missing.** This run had no CUDA: it ran the same code path (the recipes' SFT, GRPO and "
            "actor-critic trainers, with the recipe YAMLs) on CPU in fp32, so the command is exercised; the "
            "timings below are CPU timings of a small stand-in and say nothing about the real sizes on a GPU. "
            "Run `make bench-gpu` on a CUDA machine for the real figures.",
            "",
        ]
    lines += [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}. Command: `{command}`.",
        "",
        f"Per clip: {args.frames} frames, image splitting {'on' if args.image_splitting else 'off (one tile per frame: the recipes default)'}; "
        f"{tokens_note}. Models: {models_note}; precision from the recipes "
        f"(`precision: auto`: bf16 on GPUs that support it). Means over {args.steps} optimizer step(s) after "
        f"{args.warmup} warm-up step(s). Peak GPU memory: `torch.cuda.max_memory_allocated` over the run (weights "
        "included). Nothing is written to disk during the runs.",
        "",
        f"### SFT (`recipes/sft/sft.yaml`: batch {args.batch_size}, gradient accumulation 1, activation "
        "checkpointing, LoRA r=8 on the text model; full fine-tuning with the vision tower frozen)",
        "",
        *table(SFT_COLUMNS, [sft_cells(row, cuda) for row in sft_rows]),
        "",
        f"Model FLOPs utilisation: {FLOPS_FORMULA}; peak: {peak_note}.",
        "",
    ]
    if rl_rows:
        lines += [
            f"### RL step ({args.num_generations} completions of exactly {args.max_new_tokens} new tokens for one "
            "clip per step: GRPO = `recipes/stage2/stage2.yaml` with R2, actor-critic = `recipes/stage1/stage1.yaml` "
            "with dense CLIP rewards from a tiny CLIP; generation with transformers)",
            "",
            *table(RL_COLUMNS, [rl_cells(row, cuda, args.num_generations) for row in rl_rows]),
            "",
            "Step s: a whole optimizer step (generation, rewards, the loss's forward and backward, the optimizer); "
            "generation s: the part spent in `generate`; tokens/s: prompt and completion tokens of the step.",
            "",
        ]
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def write_report(path: Path, section: str) -> str:
    """Write the section, unless this is a CPU run and the file already holds GPU figures."""
    existing = read_section(path, SECTION_START, SECTION_END)
    if not torch.cuda.is_available() and existing is not None and CUDA_MARK in existing:
        return f"left {path} alone: it holds GPU figures and this run had no GPU"
    write_section(path, section, SECTION_START, SECTION_END)
    return f"updated {path}"


# --------------------------------------------------------------------------------------------
# Command line


def parse_list(value: str, allowed: tuple[str, ...] | dict, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}: choose from {', '.join(allowed)}")
    return items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", default=",".join(SIZES), type=lambda v: parse_list(v, SIZES, "model size"),
                        help=f"SmolVLM sizes ({', '.join(SIZES)}); ignored without CUDA (the tiny model runs)")
    parser.add_argument("--modes", default=",".join(MODES), type=lambda v: parse_list(v, MODES, "mode"),
                        help="SFT modes: full fine-tuning, LoRA, QLoRA (needs bitsandbytes; runs on the CPU too, slowly)")
    parser.add_argument("--rl-algorithms", default=",".join(ALGORITHMS),
                        type=lambda v: parse_list(v, ALGORITHMS, "algorithm") if v else [],
                        help="RL steps to time ('' for none)")
    parser.add_argument("--rl-modes", default="lora", type=lambda v: parse_list(v, MODES, "mode"),
                        help="modes of the RL steps (the stage YAMLs use LoRA)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed steps before them")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per clip (M)")
    parser.add_argument("--image-splitting", action="store_true", help="the published budget: tiles per frame")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="SFT clips per step")
    parser.add_argument("--num-generations", type=int, default=DEFAULT_NUM_GENERATIONS)
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="tokens per completion")
    parser.add_argument("--frame-size", type=int, default=None,
                        help=f"longest frame edge of the generated dataset (default {DEFAULT_GPU_FRAME_SIZE} on CUDA, "
                             f"{DEFAULT_CPU_FRAME_SIZE} on CPU)")
    parser.add_argument("--dataset", type=Path, default=None, help="a prepared dataset (default: a synthetic one)")
    parser.add_argument("--model", type=Path, default=None,
                        help="benchmark this model folder instead of building random-weight sizes (e.g. a real "
                             "SmolVLM snapshot, or the tiny model)")
    parser.add_argument("--clip-model", default=None, help="open_clip name for the actor-critic (default: a tiny one)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, for MFU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN)
    parser.add_argument("--no-write", action="store_true", help="print the section, leave the markdown file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    cuda = torch.cuda.is_available()
    if not cuda:
        print("no CUDA: running the CPU fallback on the tiny model; the GPU figures will be marked missing", flush=True)
    peak, peak_note = peak_tflops(args.peak_tflops)
    sft_rows: list[Row] = []
    rl_rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        work = Path(tmp)
        dataset = args.dataset
        if dataset is None:
            if args.frames > SYNTH_FRAMES_PER_CLIP:
                raise SystemExit(f"--frames must be <= {SYNTH_FRAMES_PER_CLIP} with the synthetic dataset")
            clips = max(MIN_CLIPS, 2 * args.batch_size * (args.steps + args.warmup))
            frame_size = args.frame_size or (DEFAULT_GPU_FRAME_SIZE if cuda else DEFAULT_CPU_FRAME_SIZE)
            print(f"generating a synthetic dataset: {clips} clips, {args.frames} frames of {frame_size} px", flush=True)
            dataset = build_dataset(work / "dataset", clips, args.frames, frame_size, args.seed)
        clip = args.clip_model
        if clip is None and "actor_critic" in args.rl_algorithms:
            clip = build_tiny_clip(work / "tiny-clip", args.seed)
        if args.model is not None:
            models = [(args.model.name, lambda: args.model)]
            models_note = f"the model folder `{args.model}`"
        elif cuda:
            models = [(SIZES[s], (lambda s=s: build_real_size_model(SIZES[s], work / SIZES[s], args.seed)))
                      for s in args.models]
            models_note = ("the published architectures (`tiny_models.vlm.real_size_config`) with random weights "
                           "and the checkpoints' image processor settings")
        else:
            models = [("tiny-smolvlm (CPU stand-in)", lambda: build_tiny_model(work / "tiny-smolvlm", args.seed))]
            models_note = "the tiny offline SmolVLM-shaped model (`tiny_models`), standing in for the real sizes"
        for name, build in models:
            print(f"== {name}", flush=True)
            model_dir = build()
            shape = model_shape(AutoConfig.from_pretrained(model_dir))
            for mode in args.modes:
                print(f"-- {name} SFT {mode}", flush=True)
                row = measure_sft(name, model_dir, shape, mode, dataset, work, args, peak)
                print(f"   {row.status}" + (f": {row.step_s:.3f} s/step" if row.step_s else ""), flush=True)
                sft_rows.append(row)
            for mode in args.rl_modes:
                for algorithm in args.rl_algorithms:
                    print(f"-- {name} RL {algorithm} {mode}", flush=True)
                    row = measure_rl(name, model_dir, shape, mode, algorithm, dataset, work, args, clip)
                    print(f"   {row.status}" + (f": {row.step_s:.3f} s/step" if row.step_s else ""), flush=True)
                    rl_rows.append(row)
            if args.model is None:
                shutil.rmtree(model_dir, ignore_errors=True)  # 2.2B weights are 4.5 GB
    command = "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv)
    tokens_note = (f"SFT tokens per sample {sft_rows[0].tokens_per_sample:.0f}" if sft_rows and sft_rows[0].tokens_per_sample
                   else "tokens per sample in the tables")
    section = render_section(sft_rows, rl_rows, args, command.strip(), peak_note, tokens_note, models_note)
    print(section)
    if not args.no_write:
        print(write_report(args.markdown, section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
