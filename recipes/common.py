"""What every stage's recipe shares: parsing, data, model and processor loading, precision, LoRA,
the vision tower's treatment, and saving. Stage scripts stay thin: parse, build, train, save.

A recipe is one flat YAML parsed by TRL's ``TrlParser`` onto three dataclasses: our
:class:`RecipeArguments` (data, image budget, precision, vision tower), the trainer's config
(``SFTConfig`` or ``GRPOConfig``, or a subclass adding stage keys) and TRL's ``ModelConfig``. Any key
can be overridden on the command line (``--learning_rate 3e-5``); an unknown key is an error naming it.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from recipes.checkpoints import resolve_resume
from recipes.errors import RecipeError

logger = logging.getLogger("smoldrive")

# Packages whose versions are recorded beside every saved model (the recipes were tested with these).
RECORDED_PACKAGES = (
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "open-clip-torch", "bitsandbytes",
)


@dataclass
class RecipeArguments:
    """Keys every stage shares (the trainer's and the model's keys come from TRL's dataclasses)."""

    dataset_path: str = field(
        default="work/dataset",
        metadata={"help": "A DatasetDict saved by `make data` (datasets.load_from_disk)."},
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="val",
        metadata={"help": "Split for evaluation and model selection during training (never test)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on training clips."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on evaluation clips."})
    frames_per_clip: int | None = field(
        default=None,
        metadata={"help": "Frames per sample: None keeps the dataset's M; a smaller k keeps the last k."},
    )
    image_splitting: bool = field(
        default=False,
        metadata={"help": "Idefics3 image splitting: tiles each frame (13 tiles for 1280x720) instead of one."},
    )
    image_longest_edge: int | None = field(
        default=None,
        metadata={"help": "Resize frames so the longest edge is this before tiling (None: processor's)."},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on GPUs that support it, else fp32), bf16, fp16 or fp32."},
    )
    vision_tower: str = field(
        default="frozen",
        metadata={"help": "Full fine-tuning only: frozen, train (same lr) or own_lr (vision_learning_rate)."},
    )
    vision_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the vision tower when vision_tower=own_lr."}
    )


@dataclass
class RLRecipeArguments(RecipeArguments):
    """Keys the RL stages add: which rewards, with which parameters (their weights are TRL's
    ``reward_weights`` and their aggregation TRL's ``multi_objective_aggregation``)."""

    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "Registered reward names (rewards/registry.py), e.g. action_reasoning structure."},
    )
    reward_params: dict | str | None = field(
        default=None,
        metadata={"help": "Per-reward parameters: a mapping in YAML, or JSON on the command line."},
    )
    reward_columns: list[str] = field(
        default_factory=lambda: ["id", "actions", "reasons", "description"],
        metadata={"help": "Dataset columns handed to the reward functions (images always are)."},
    )


# ---------------------------------------------------------------------------------------------
# Parsing


def run_cli(main: Any) -> None:
    """Run a stage script's ``main``: a :class:`RecipeError` (or a bad resume setting) is one line
    on stderr and exit status 2, not a chained traceback; anything else is a bug and keeps its
    traceback."""
    try:
        main()
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_recipe(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """Parse ``--config recipe.yaml`` plus command-line overrides onto the given dataclasses."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if args is None else args)
    config_path = argv[argv.index("--config") + 1] if "--config" in argv else None
    if config_path is not None and not Path(config_path).is_file():
        raise RecipeError(f"recipe file not found: {config_path}")
    parser = TrlParser(list(dataclass_types))
    # TRL's configs default to bf16, which they reject on a machine without a bf16 GPU before our
    # `precision` key is even read: start from what the hardware supports (the YAML may override).
    hardware = hardware_precision()
    parser.set_defaults(bf16=hardware == "bf16", fp16=hardware == "fp16")
    try:
        return parser.parse_args_and_config(args=argv)
    except ValueError as err:
        message = str(err)
        if message.startswith("Unknown arguments from config file"):
            # TRL lists them as ['--key', 'value', ...]
            leftovers = ast.literal_eval(message[message.index("[") : message.index("]") + 1])
            unknown = [s[2:] for s in leftovers[::2]]
            raise RecipeError(
                f"{config_path}: unknown key(s) {unknown}. Check the spelling; keys are the fields of "
                f"{', '.join(t.__name__ for t in dataclass_types)}."
            ) from err
        if "not used by the HfArgumentParser" in message:
            raise RecipeError(f"unknown command-line option(s): {message.split(':', 1)[1].strip()}") from err
        raise


def recipe_as_dict(*configs: Any) -> dict[str, Any]:
    """The resolved recipe (every dataclass's fields) as one flat, YAML-serialisable dict."""
    out: dict[str, Any] = {}
    for config in configs:
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if isinstance(value, enum.Enum):  # schedulers, strategies: their plain value
                value = value.value
            try:
                json.dumps(value)
            except TypeError:
                value = str(value)
            out[f.name] = value
    return out


# ---------------------------------------------------------------------------------------------
# Hardware


def hardware_precision() -> str:
    """bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def apply_precision(training_args: Any, precision: str) -> str:
    """Set bf16/fp16 on the trainer config from the hardware (or an explicit choice); return it.

    On CPU, TRL defaults to bf16, which is several times slower than fp32 here (FACTS.md), so
    "auto" picks bf16 only on a GPU that supports it.
    """
    choices = ("auto", "bf16", "fp16", "fp32")
    if precision not in choices:
        raise RecipeError(f"precision must be one of {choices}, got {precision!r}")
    if precision == "auto":
        precision = hardware_precision()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not training_args.use_cpu:
        raise RecipeError(
            "launched on several processes on a machine without CUDA: add `--use_cpu true` (gloo), or every "
            "process trains alone and they all write the same output folder"
        )
    if precision in ("bf16", "fp16") and not torch.cuda.is_available():
        logger.warning("precision=%s on a machine without CUDA: expect slow steps", precision)
    training_args.bf16 = precision == "bf16"
    training_args.fp16 = precision == "fp16"
    return precision


def torch_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


# ---------------------------------------------------------------------------------------------
# Model and processor


# Seconds to wait for the model hub's host before calling it unreachable (an offline machine
# otherwise spends minutes in the hub client's retries before saying so).
HUB_CONNECT_TIMEOUT_S = 3.0


def looks_local(name_or_path: str) -> bool:
    """A path, not a hub id ("org/name"): starts with ./ ../ / ~, has more or fewer than one
    slash, or its first component is a folder here (``work/nope`` when ``work/`` exists)."""
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        return True
    return Path(name_or_path).parent.is_dir()


def hub_reachable(timeout: float = HUB_CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_model_source(name_or_path: str) -> None:
    """Fail at once, with what to do, when the model cannot be loaded: a local folder that is not
    there, or a hub model that is neither cached nor reachable. Runs before anything loads."""
    if Path(name_or_path).expanduser().is_dir():
        return
    if looks_local(name_or_path):
        raise RecipeError(
            f"model folder not found: {name_or_path} (train the stage before it first, e.g. `make sft`, or "
            "point --model_name_or_path at a folder saved with save_pretrained)"
        )
    from huggingface_hub import constants, snapshot_download

    try:  # cached: nothing to reach
        snapshot_download(name_or_path, allow_patterns=["config.json"], local_files_only=True)
        return
    except Exception:  # noqa: BLE001 - not cached (hub client errors vary)
        pass
    advice = (
        "Point the recipe at a local model folder with --model_name_or_path /path/to/SmolVLM-Instruct (a folder "
        "saved with save_pretrained), or run `make demo`, which builds a tiny SmolVLM-shaped model offline."
    )
    if constants.HF_HUB_OFFLINE or not hub_reachable():
        raise RecipeError(
            f"cannot load {name_or_path!r}: it is not in the local cache and the model hub "
            f"({constants.ENDPOINT}) is not reachable from here. {advice}"
        )
    try:
        snapshot_download(name_or_path, allow_patterns=["config.json"])
    except Exception as err:  # noqa: BLE001 - hub errors vary (no such repo, gated, network)
        raise RecipeError(f"cannot load {name_or_path!r} from the model hub ({type(err).__name__}: {err}). {advice}") from err


def load_processor(model_args: Any, recipe: RecipeArguments):
    """The model's processor with the recipe's image budget applied."""
    from transformers import AutoProcessor

    check_model_source(model_args.model_name_or_path)  # before anything loads: fast, true failures
    processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
    image_processor = processor.image_processor
    image_processor.do_image_splitting = recipe.image_splitting
    if recipe.image_longest_edge is not None:
        image_processor.size = {"longest_edge": recipe.image_longest_edge}
    return processor


def quantization_config(model_args: Any, precision: str):
    """TRL's BitsAndBytesConfig for ``load_in_4bit`` / ``load_in_8bit`` (QLoRA), or None.

    On CUDA as published. Without CUDA, bitsandbytes (0.50) still runs nf4 on the CPU: slow, but
    the same code path, so it is tested in CI; a warning says so.
    """
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    if not torch.cuda.is_available():
        if model_args.load_in_8bit:
            raise RecipeError(
                "load_in_8bit needs CUDA; on this machine use load_in_4bit (nf4 runs on the CPU) or "
                "load_in_8bit: false"
            )
        logger.warning("load_in_4bit without CUDA: bitsandbytes runs nf4 on the CPU, which is slow; fine for "
                       "tests and small models, use a GPU for real runs")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise RecipeError(
            "load_in_4bit/load_in_8bit (QLoRA) needs bitsandbytes: `pip install -e '.[cuda]'`, or set "
            "load_in_4bit: false for LoRA or full fine-tuning."
        ) from err
    from trl import get_quantization_config

    model_args.dtype = str(torch_dtype(precision)).removeprefix("torch.")
    return get_quantization_config(model_args)


def quantized_device_map() -> dict[str, Any]:
    """A 4-bit model is placed whole on one device at load time: this process's GPU, else the CPU."""
    return {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}


def check_weight_files(folder: str | Path) -> None:
    """Every ``*.safetensors`` in a local model folder opens (a copy cut short, a corrupt
    download): a clear error naming the file instead of a loader error deep in transformers."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise RecipeError(
                f"{path} is truncated or corrupt ({err}); copy or download the model again, or re-run the stage "
                "that wrote it"
            ) from None


def load_model(model_args: Any, precision: str):
    """Load the VLM exactly as a user loads HuggingFaceTB/SmolVLM-Instruct (or a previous stage)."""
    from transformers import AutoModelForImageTextToText

    check_model_source(model_args.model_name_or_path)
    if Path(model_args.model_name_or_path).is_dir():
        check_weight_files(model_args.model_name_or_path)
    quantization = quantization_config(model_args, precision)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(precision)}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = quantized_device_map()
    adapter = Path(model_args.model_name_or_path) / "adapter_config.json"
    if adapter.is_file() and quantization is None:
        return load_merged_adapter(adapter.parent, kwargs)
    return AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path, **kwargs)


def load_merged_adapter(folder: Path, kwargs: dict[str, Any]):
    """A previous stage saved as a LoRA adapter (a QLoRA run: its 4-bit base cannot be merged
    losslessly on disk): load its base at this stage's precision and merge the adapter in, so this
    stage starts from exactly what the previous one learnt and adds its own LoRA on top."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForImageTextToText

    base = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    check_model_source(base)
    logger.info("%s is a LoRA adapter over %s: merging it into the base", folder, base)
    model = AutoModelForImageTextToText.from_pretrained(base, **kwargs)
    return PeftModel.from_pretrained(model, str(folder)).merge_and_unload()


def lora_config(model_args: Any):
    """LoRA on the text model only: SigLIP's attention also has q_proj/v_proj, so target by regex."""
    if not model_args.use_peft:
        return None
    from peft import LoraConfig

    targets = model_args.lora_target_modules
    if isinstance(targets, (list, tuple)) and len(targets) == 1:
        targets = targets[0]  # one string is a regex for peft (full match on module names)
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=targets,
        task_type=model_args.lora_task_type,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        bias="none",
    )


def vision_tower(model: torch.nn.Module) -> torch.nn.Module:
    base = model.model if hasattr(model, "model") else model
    return base.vision_model


def configure_vision_tower(model: torch.nn.Module, recipe: RecipeArguments, training_args: Any, use_peft: bool):
    """Freeze the vision tower, train it, or give it its own learning rate (full fine-tuning).

    Returns an optimizer when the tower has its own learning rate (the Trainer builds the schedule
    around it), else None.
    """
    choices = ("frozen", "train", "own_lr")
    if recipe.vision_tower not in choices:
        raise RecipeError(f"vision_tower must be one of {choices}, got {recipe.vision_tower!r}")
    if use_peft:
        return None  # LoRA targets the text model; everything else stays frozen by peft
    tower_params = list(vision_tower(model).parameters())
    if recipe.vision_tower == "frozen":
        for p in tower_params:
            p.requires_grad_(False)
        return None
    if recipe.vision_tower == "train":
        return None
    if recipe.vision_learning_rate is None:
        raise RecipeError("vision_tower: own_lr needs vision_learning_rate")
    tower_ids = {id(p) for p in tower_params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in tower_ids]
    groups = [
        {"params": rest, "lr": training_args.learning_rate},
        {"params": tower_params, "lr": recipe.vision_learning_rate},
    ]
    return torch.optim.AdamW(groups, weight_decay=training_args.weight_decay)


# ---------------------------------------------------------------------------------------------
# Data


def image_prompt(num_frames: int) -> list[dict]:
    """The prompt-free user turn: the frames and no text."""
    return [{"role": "user", "content": [{"type": "image"} for _ in range(num_frames)]}]


def load_split(recipe: RecipeArguments, split: str | None, limit: int | None, columns: Sequence[str]):
    """One split of the prepared dataset, as TRL wants it: ``images`` plus the given columns."""
    from datasets import load_from_disk

    if split is None:
        return None
    path = Path(recipe.dataset_path)
    if not path.exists():
        raise RecipeError(f"dataset not found: {path} (prepare one with `make data` or `make demo`)")
    dataset = load_from_disk(str(path))
    if split not in dataset:
        raise RecipeError(f"{path} has no split {split!r}; it has {sorted(dataset)}")
    data = dataset[split]
    missing = [c for c in ("frames", *columns) if c not in data.column_names and c != "images"]
    if missing:
        raise RecipeError(f"{path}[{split}] lacks column(s) {missing}; re-run `make data`")
    if limit is not None:
        data = data.select(range(min(limit, len(data))))
    keep = ["frames", *[c for c in columns if c not in ("images", "prompt")]]
    data = data.select_columns(keep).rename_column("frames", "images")
    frames_in_data = len(data[0]["images"])
    k = recipe.frames_per_clip or frames_in_data
    if k > frames_in_data:
        raise RecipeError(
            f"frames_per_clip={k} but {path} holds {frames_in_data} frames per clip; "
            f"re-run `make data FRAMES={k}`"
        )
    if k < frames_in_data:  # keep the last k frames: the annotated frame is the last one
        data = data.map(lambda ex: {"images": ex["images"][-k:]}, desc=f"keeping the last {k} frames")
    prompt = image_prompt(k)
    return data.map(lambda _: {"prompt": prompt}, desc="prompt-free user turn")


def answer_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def with_answer_turn(data, target_column: str):
    """Add the conversational ``completion`` the model learns to say, from a target text column."""
    if data is None:
        return None
    return data.map(
        lambda ex: {"completion": answer_turn(ex[target_column])},
        remove_columns=[target_column],
        desc=f"answer turn from {target_column}",
    )


def tokens_per_sample(processor: Any, sample: dict) -> dict[str, int]:
    """How many tokens one sample costs: image tokens, answer tokens, total (the budget to watch)."""
    text = processor.apply_chat_template(sample["prompt"], add_generation_prompt=True)
    encoded = processor(text=[text], images=[sample["images"]], return_tensors="pt")
    prompt_tokens = int(encoded["input_ids"].shape[1])
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    image_tokens = int((encoded["input_ids"] == image_token_id).sum())
    answer = sample.get("completion")
    answer_text = answer[0]["content"][0]["text"] if isinstance(answer, list) else (answer or "")
    answer_tokens = len(processor.tokenizer(answer_text, add_special_tokens=False)["input_ids"])
    return {
        "frames": len(sample["images"]),
        "image_tokens": image_tokens,
        "prompt_tokens": prompt_tokens,
        "answer_tokens": answer_tokens,
        "total_tokens": prompt_tokens + answer_tokens,
    }


def log_token_budget(processor: Any, sample: dict) -> dict[str, int]:
    budget = tokens_per_sample(processor, sample)
    logger.info(
        "tokens per sample: %(total_tokens)d (%(frames)d frames -> %(image_tokens)d image tokens, "
        "prompt %(prompt_tokens)d, answer %(answer_tokens)d)",
        budget,
    )
    return budget


def setup_logging(training_args: Any) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # "passive" (the default) leaves transformers' own verbosity alone; our messages stay at INFO
    explicit = training_args.log_level != "passive"
    logger.setLevel(training_args.get_process_log_level() if explicit else logging.INFO)
    from recipes.tracking import configure_tracking

    configure_tracking(training_args)  # W&B offline without a login (never a prompt); TensorBoard without wandb


# ---------------------------------------------------------------------------------------------
# Saving


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def save_stage(trainer: Any, processor: Any, output_dir: str | Path, recipe: dict[str, Any], extra: dict | None = None):
    """Save what ``from_pretrained`` loads, plus the recipe, versions and model card that produced it.

    LoRA adapters are merged into the base so the folder loads like any model. QLoRA adapters sit
    on a 4-bit base that cannot be merged losslessly: the adapter is saved with its base recorded
    in adapter_config.json, which ``AutoModelForImageTextToText.from_pretrained`` also loads.
    With several processes the main one writes and the others wait (two writers race on the same
    files). Under DeepSpeed ZeRO-3 or FSDP the weights are sharded: every process takes part in
    ``Trainer.save_model``, which gathers them, and a LoRA adapter is saved unmerged.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    from recipes.tracking import infer_stage, write_model_card

    output_dir = Path(output_dir)
    model = trainer.model
    sharded = is_deepspeed_zero3_enabled() or trainer.is_fsdp_enabled
    if sharded:
        trainer.save_model(str(output_dir))  # collective: every process hands over its shard
        layout = ("LoRA adapter, not merged (sharded training; base recorded in adapter_config.json)"
                  if hasattr(model, "peft_config") else "full model")
    if trainer.accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if not sharded:
            if not hasattr(model, "merge_and_unload"):
                layout = "full model"
            elif getattr(model, "is_loaded_in_4bit", False):
                layout = "LoRA adapter over a 4-bit base (base recorded in adapter_config.json)"
            else:
                model, layout = model.merge_and_unload(), "LoRA merged into the base"
            model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        if hasattr(trainer, "save_value_head"):  # the actor-critic's critic, beside the policy
            trainer.save_value_head(output_dir)
        trainer.state.save_to_json(str(output_dir / "trainer_state.json"))  # loss and reward curves
        (output_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        info = {"layout": layout, "versions": package_versions(), **(extra or {})}
        (output_dir / "smoldrive.json").write_text(json.dumps(info, indent=2))
        write_model_card(output_dir, recipe, infer_stage(output_dir), str(recipe.get("model_name_or_path", "")),
                         str(recipe.get("dataset_path", "")))
    trainer.accelerator.wait_for_everyone()  # nobody reads the folder before it is complete
    return output_dir


# ---------------------------------------------------------------------------------------------
# RL stages (stage1, stage2, stage3 share everything but their rewards and trainer)


def reward_params(recipe: RLRecipeArguments) -> dict[str, dict]:
    """``reward_params`` as a mapping (YAML gives one; the command line gives JSON)."""
    params = recipe.reward_params or {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise RecipeError(f"reward_params must be a mapping (JSON on the command line): {err}") from err
    if not isinstance(params, dict):
        raise RecipeError(f"reward_params must map reward names to their parameters, got {params!r}")
    return params


def build_rewards(recipe: RLRecipeArguments, training_args: Any) -> list:
    """The recipe's rewards as TRL callables, with parameters bound and weights checked."""
    from rewards.registry import resolve_rewards

    params = reward_params(recipe)
    if not recipe.reward_funcs:
        raise RecipeError("reward_funcs is empty: list at least one reward (see rewards/registry.py)")
    try:
        funcs, weights = resolve_rewards(recipe.reward_funcs, training_args.reward_weights, params)
    except ValueError as err:
        raise RecipeError(f"rewards: {err}") from err
    training_args.reward_weights = weights
    return funcs


def run_rl_stage(recipe: RLRecipeArguments, training_args: Any, model_args: Any, trainer_cls=None, **trainer_kwargs):
    """Load, build the rewards, train with GRPO (or a subclass), save. Returns the trainer."""
    from trl import GRPOTrainer

    setup_logging(training_args)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)  # before loading
    precision = apply_precision(training_args, recipe.precision)
    processor = load_processor(model_args, recipe)
    model = load_model(model_args, precision)
    optimizer = configure_vision_tower(model, recipe, training_args, model_args.use_peft)
    reward_funcs = build_rewards(recipe, training_args)
    train = load_split(recipe, recipe.train_split, recipe.max_train_samples, recipe.reward_columns)
    evaluation = load_split(recipe, recipe.eval_split, recipe.max_eval_samples, recipe.reward_columns)
    log_token_budget(processor, train[0])

    trainer = (trainer_cls or GRPOTrainer)(
        model=model,
        args=training_args,
        reward_funcs=reward_funcs,
        train_dataset=train,
        eval_dataset=evaluation if training_args.eval_strategy != "no" else None,
        processing_class=processor,
        peft_config=lora_config(model_args),
        optimizers=(optimizer, None),
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume)
    save_stage(trainer, processor, training_args.output_dir, recipe_as_dict(recipe, training_args, model_args))
    return trainer
