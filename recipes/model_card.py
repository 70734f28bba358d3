"""A stage folder's model card (its ``README.md``), written with huggingface_hub's ``ModelCard``:
metadata (base model, tags, the stage), then the training chain read from the previous stages'
folders, the recipe, the data, evaluation metrics when there are any, and package versions.

Refresh a card after evaluation::

    python -m recipes.model_card --model work/stage2 --metrics work/eval/stage2/metrics.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from huggingface_hub import ModelCard, ModelCardData

from core.model_source import looks_local

logger = logging.getLogger(__name__)

# Packages whose versions are recorded beside every saved model (the recipes were tested with these).
RECORDED_PACKAGES = (
    "torch", "transformers", "trl", "peft", "accelerate", "datasets", "open-clip-torch", "bitsandbytes",
)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


CARD_FILE = "README.md"
RECIPE_FILE = "recipe.yaml"  # written by recipes.saving.save_stage beside every stage's weights
TRAINER_STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.json"  # evaluate.run's output
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
STAGE_KEY = "smoldrive_stage"  # front-matter key naming the stage (read back when a later stage builds on it)
MAX_CHAIN = 16  # stage folders followed back through model_name_or_path (guards against a cycle)
PIPELINE_TAG = "image-text-to-text"
CARD_TAGS = ("smoldrive", "trl", "driving", "bdd-oia", "vision-language", "idefics3")


def read_front_matter(card: Path) -> dict:
    """The metadata of a model card ({} when there is none, or the card cannot be read)."""
    if not card.is_file():  # ModelCard.load would take the name for a hub repo and go online
        return {}
    try:
        return ModelCard.load(card).data.to_dict()
    except (OSError, ValueError, yaml.YAMLError):
        return {}


def method_of(recipe: Mapping[str, Any]) -> str:
    """How a stage trained, in words: SFT / GRPO / actor-critic, and full, LoRA or QLoRA."""
    if recipe.get("reward_funcs"):
        algorithm = recipe.get("algorithm", "grpo")
        name = {"grpo": "GRPO", "actor_critic": "actor-critic (PPO with a value head, GAE)"}.get(algorithm, algorithm)
        weights = recipe.get("reward_weights") or [1.0] * len(recipe["reward_funcs"])
        rewards = " + ".join(f"{w:g}·{r}" for r, w in zip(recipe["reward_funcs"], weights))
        method = f"{name} on {rewards}"
    else:
        method = f"SFT on {recipe.get('target_column', 'the answer')}"
    if recipe.get("use_peft"):
        quantized = recipe.get("load_in_4bit") or recipe.get("load_in_8bit")
        method += f", {'QLoRA' if quantized else 'LoRA'} r={recipe.get('lora_r')}"
    else:
        method += f", full fine-tuning (vision tower {recipe.get('vision_tower', 'frozen')})"
    return method


def _trained_steps(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / TRAINER_STATE_FILE).read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stage_chain(base_model: str) -> tuple[list[dict], str]:
    """The SmolDrive stages ``base_model`` came out of, oldest first, and the model they started from.

    A stage folder is recognised by its recipe.yaml; its ``model_name_or_path`` leads to the stage
    before it. The walk stops at the first model that is not a stage folder (a hub id, or a local
    base such as the tiny model): that is the root.
    """
    chain: list[dict] = []
    seen: set[Path] = set()
    current = base_model
    while len(chain) < MAX_CHAIN:
        folder = Path(current)
        if not (folder / RECIPE_FILE).is_file() or folder.resolve() in seen:
            break
        seen.add(folder.resolve())
        try:
            recipe = yaml.safe_load((folder / RECIPE_FILE).read_text()) or {}
        except yaml.YAMLError:
            logger.warning("model card: %s does not parse; the chain stops there", folder / RECIPE_FILE)
            break
        stage = read_front_matter(folder / CARD_FILE).get(STAGE_KEY) or folder.name
        chain.append({
            "stage": stage, "folder": str(folder), "method": method_of(recipe),
            "dataset": recipe.get("dataset_path"), "steps": _trained_steps(folder),
        })
        current = str(recipe.get("model_name_or_path", ""))
    return chain[::-1], current


def _is_local(name: str) -> bool:
    return Path(name).exists() or looks_local(name)


def _load_metrics(output_dir: Path, metrics: Mapping | str | Path | None) -> tuple[dict | None, str | None]:
    """Metrics to show and where they came from. Without an explicit source, ``output_dir/metrics.json``
    is used only when it is newer than the weights (an older one describes another model)."""
    if isinstance(metrics, Mapping):
        return dict(metrics), None
    path = Path(metrics) if metrics is not None else output_dir / METRICS_FILE
    if not path.is_file():
        if metrics is not None:
            raise FileNotFoundError(f"metrics file not found: {path}")
        return None, None
    if metrics is None:
        weights = [output_dir / name for name in WEIGHT_FILES if (output_dir / name).is_file()]
        if weights and path.stat().st_mtime < max(w.stat().st_mtime for w in weights):
            logger.info("model card: %s is older than the weights; not shown", path)
            return None, None
    return json.loads(path.read_text()), str(path)


def _metrics_section(metrics: dict | None, source: str | None, output_dir: Path) -> list[str]:
    if not metrics:
        return [
            "Not evaluated yet. Evaluate, then refresh this card:",
            "",
            "```bash",
            f"make eval MODEL={output_dir}",
            f"python -m recipes.model_card --model {output_dir} --metrics work/eval/{output_dir.name}/metrics.json",
            "```",
        ]
    lines = []
    where = f" on the `{metrics['split']}` split of `{metrics.get('dataset', '?')}`" if "split" in metrics else ""
    count = metrics.get("n_samples")
    lines.append(f"BDD-OIA's official metrics{where}" + (f", {count} clips" if count else "") + ":")
    lines += ["", "| | mF1 | F1_all | accuracy |", "|---|---:|---:|---:|"]
    for group in ("actions", "reasons"):
        values = metrics.get(group)
        if isinstance(values, Mapping):
            lines.append(
                f"| {group} | {values.get('mf1', float('nan')):.3f} | {values.get('f1_all', float('nan')):.3f} "
                f"| {values.get('accuracy', float('nan')):.3f} |"
            )
    extras = [(key, metrics[key]) for key in ("json_rate", "empty_rate", "clip_score") if metrics.get(key) is not None]
    if extras:
        lines += ["", ", ".join(f"{key}: {value:.3f}" for key, value in extras) + "."]
    if source:
        lines += ["", f"From `{source}`."]
    return lines


def _data_section(dataset_path: str, recipe: Mapping[str, Any]) -> list[str]:
    lines = [f"Prepared dataset `{dataset_path}` (`make data`): train split `{recipe.get('train_split', 'train')}`, "
             f"model selection on `{recipe.get('eval_split')}` (never test)."]
    folder = Path(dataset_path)
    fingerprint = folder / "prepare_fingerprint.json"
    if fingerprint.is_file():
        try:
            info = json.loads(fingerprint.read_text())
            options = info.get("options", {})
            lines.append(
                f"Built from `{info.get('root')}`: {options.get('frames')} frames per clip, stride "
                f"{options.get('stride')}, longest edge {options.get('image_size')} px."
            )
        except (OSError, ValueError):
            pass
    sizes = []
    for split in ("train", "val", "test"):
        info_file = folder / split / "dataset_info.json"
        try:
            splits = json.loads(info_file.read_text()).get("splits") or {}
            sizes.append(f"{split} {sum(s.get('num_examples', 0) for s in splits.values()):,}")
        except (OSError, ValueError, AttributeError):
            continue
    if sizes:
        lines.append("Clips: " + ", ".join(sizes) + ".")
    frames = recipe.get("frames_per_clip")
    lines.append(
        f"Frames per sample: {frames if frames else 'all the dataset holds'}; image splitting "
        f"{'on' if recipe.get('image_splitting') else 'off'}"
        + (f", longest edge {recipe['image_longest_edge']} px" if recipe.get("image_longest_edge") else "") + "."
    )
    return lines


def write_model_card(
    output_dir: str | Path,
    recipe_dict: Mapping[str, Any],
    stage: str,
    base_model: str,
    dataset_path: str,
    metrics: Mapping | str | Path | None = None,
) -> Path:
    """Write ``output_dir/README.md``, a Hugging Face model card for one stage's output.

    ``recipe_dict`` is the resolved recipe (as saved in recipe.yaml); ``base_model`` the model the
    stage started from (a hub id or a folder: when it is a previous stage's folder, the chain of
    stages is read from it); ``metrics`` evaluate's metrics (a mapping, or a metrics.json path; None
    looks for an up-to-date ``output_dir/metrics.json``). Returns the card's path.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    chain, root = stage_chain(base_model)
    method = method_of(recipe_dict)
    metrics_data, metrics_source = _load_metrics(output_dir, metrics)

    tags = list(CARD_TAGS) + [stage]
    if recipe_dict.get("reward_funcs"):
        tags.append("grpo" if recipe_dict.get("algorithm", "grpo") == "grpo" else "actor-critic")
    else:
        tags.append("sft")
    if recipe_dict.get("use_peft"):
        tags.append("lora")
    card_data = ModelCardData(
        # the hub model at the start of the chain (local stages are not on the hub)
        base_model=root if root and not _is_local(root) else None,
        library_name="transformers", pipeline_tag=PIPELINE_TAG, tags=tags, model_name=output_dir.name,
        **{STAGE_KEY: stage},
    )

    rows = [f"| 0 | base | `{root or base_model}` | – | – |"]
    for i, entry in enumerate(chain, 1):
        steps = entry["steps"] if entry["steps"] is not None else "?"
        rows.append(f"| {i} | {entry['stage']} | `{entry['folder']}` | {entry['method']} | {steps} |")
    rows.append(f"| {len(chain) + 1} | **{stage}** (this model) | `{output_dir}` | {method} | "
                f"{_trained_steps(output_dir) if _trained_steps(output_dir) is not None else '?'} |")

    versions = package_versions()
    lines = [
        f"# SmolDrive `{stage}`: {output_dir.name}",
        "",
        "A SmolVLM (Idefics3) trained with the SmolDrive recipes (TRL) to watch the frames of a "
        "driving clip and answer, with no text prompt, with a JSON: a scene description, the possible actions "
        "(forward, stop, left, right), BDD-OIA's 21 reasons, and a justification.",
        "",
        f"This stage: **{method}**, starting from `{base_model}`.",
        "",
        "## Training chain",
        "",
        "| # | stage | model | method | optimizer steps |",
        "|---|---|---|---|---:|",
        *rows,
        "",
        "## Recipe",
        "",
        f"Every resolved key (also in `{RECIPE_FILE}` beside the weights). The recipe that was run is "
        f"`recipes/{stage}/{stage}.yaml` with these values.",
        "",
        "<details><summary>recipe (every key)</summary>",
        "",
        "```yaml",
        yaml.safe_dump(dict(recipe_dict), sort_keys=False).rstrip(),
        "```",
        "",
        "</details>",
        "",
        "## Data",
        "",
        *_data_section(dataset_path, recipe_dict),
        "",
        "## Evaluation",
        "",
        *_metrics_section(metrics_data, metrics_source, output_dir),
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "from taxonomy.answer import parse_answer",
        f'model = AutoModelForImageTextToText.from_pretrained("{output_dir}")',
        f'processor = AutoProcessor.from_pretrained("{output_dir}")',
        'prompt = [{"role": "user", "content": [{"type": "image"} for _ in frames]}]  # frames only, no text',
        "text = processor.apply_chat_template(prompt, add_generation_prompt=True)",
        'inputs = processor(text=[text], images=[frames], return_tensors="pt")',
        "answer = processor.batch_decode(model.generate(**inputs, max_new_tokens=256)[:, inputs['input_ids'].shape[1]:], "
        "skip_special_tokens=True)[0]",
        "print(parse_answer(answer))",
        "```",
        "",
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
        *[f"| {name} | {version} |" for name, version in versions.items()],
        "",
    ]
    card = output_dir / CARD_FILE
    ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)).save(card)
    return card


# --------------------------------------------------------------------------------------------
# Command line: refresh a stage's card (e.g. after `make eval`)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.model_card", description="Rewrite a stage folder's model card.")
    parser.add_argument("--model", type=Path, required=True, help="a stage's output folder (holds recipe.yaml)")
    parser.add_argument("--metrics", type=Path, default=None, help="evaluate's metrics.json for this model")
    parser.add_argument("--stage", default=None, help="stage name (default: from the card, else the folder name)")
    args = parser.parse_args(argv)
    recipe_file = args.model / RECIPE_FILE
    if not recipe_file.is_file():
        parser.error(f"{args.model} has no {RECIPE_FILE}: not a SmolDrive stage folder")
    recipe = yaml.safe_load(recipe_file.read_text()) or {}
    stage = args.stage or read_front_matter(args.model / CARD_FILE).get(STAGE_KEY) or args.model.name
    card = write_model_card(args.model, recipe, stage, str(recipe.get("model_name_or_path", "")),
                            str(recipe.get("dataset_path", "")), metrics=args.metrics)
    print(f"wrote {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
