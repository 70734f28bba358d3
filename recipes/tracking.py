"""Experiment tracking and model cards for the stage scripts.

:func:`configure_tracking` runs before the trainer is built. The real recipes say
``report_to: wandb``; W&B then logs online when a login exists (``WANDB_API_KEY``, an identity
token file, or a ``wandb login`` entry in the netrc file) and offline otherwise, so a run never
stops at W&B's login prompt. A ``WANDB_MODE`` the user set is left alone. Without the wandb
package the run logs to TensorBoard instead (``<output_dir>/runs``), and says so.

:func:`write_model_card` writes the stage folder's ``README.md``: a Hugging Face model card (YAML
front matter, then the training chain read from the previous stages' folders, the recipe, the
data, evaluation metrics when there are any, and package versions).

Refresh a card after evaluation::

    python -m recipes.tracking --model work/stage2 --metrics work/eval/stage2/metrics.json
"""

from __future__ import annotations

import argparse
import configparser
import json
import logging
import netrc
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import yaml

logger = logging.getLogger("smoldrive")

# --------------------------------------------------------------------------------------------
# Tracking

WANDB_DEFAULT_PROJECT = "smoldrive"  # instead of transformers' "huggingface"
WANDB_DEFAULT_BASE_URL = "https://api.wandb.ai"  # W&B's cloud; WANDB_BASE_URL names another server
WANDB_RUNS_FOLDER = "wandb"  # wandb writes runs to $WANDB_DIR/wandb (WANDB_DIR defaults to the working dir)
TENSORBOARD_RUNS_FOLDER = "runs"  # transformers' TensorBoardCallback default: <output_dir>/runs/<date>_<host>


def _is_main_process() -> bool:
    """Rank 0, or no launcher at all (read from the environment: no process group is needed)."""
    return int(os.environ.get("RANK", "0")) == 0


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def _netrc_paths() -> list[Path]:
    """Where wandb (and curl, git, ...) read netrc credentials from, in their order."""
    if os.environ.get("NETRC"):
        return [Path(os.environ["NETRC"]).expanduser()]
    return [Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()]


def wandb_login_source() -> str | None:
    """Where a W&B login comes from (an environment variable or a file), or None when there is none.

    Checks what ``wandb.init`` checks before it would prompt: ``WANDB_API_KEY``,
    ``WANDB_IDENTITY_TOKEN_FILE``, the netrc entry ``wandb login`` writes for the server's host, and
    an ``api_key`` in wandb's settings file.
    """
    for variable in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        if os.environ.get(variable):
            return variable
    host = urlparse(os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_BASE_URL).hostname
    for path in _netrc_paths():
        if not path.is_file():
            continue
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (OSError, netrc.NetrcParseError) as err:
            logger.warning("W&B: cannot read %s (%s); treating it as no login", path, err)
            continue
        if entry and entry[2]:
            return str(path)
    settings = Path(os.environ.get("WANDB_CONFIG_DIR") or "~/.config/wandb").expanduser() / "settings"
    if settings.is_file():
        parser = configparser.ConfigParser()
        try:
            parser.read(settings)
        except configparser.Error:
            return None
        if parser.get("default", "api_key", fallback=None):
            return str(settings)
    return None


def configure_tracking(training_args: Any) -> list[str]:
    """Make ``training_args.report_to`` safe to run anywhere; returns the resolved list.

    - ``wandb`` listed, package installed: online with a login; with none, ``WANDB_MODE=offline``
      (never a login prompt) and a line saying where the run is written and how to upload it.
      A ``WANDB_MODE`` already set is respected. ``WANDB_PROJECT`` defaults to "smoldrive".
    - ``wandb`` listed, package missing: replaced by ``tensorboard`` (when installed), with a message.
    - ``tensorboard`` in the result: a line saying where the event files go.
    Call it before the trainer is built (the trainer reads ``report_to`` when it starts).
    """
    report_to = list(training_args.report_to or [])
    say = logger.info if _is_main_process() else logger.debug  # one message per run, not per process
    if "wandb" in report_to:
        if not _importable("wandb"):
            replacement = "tensorboard" if _importable("tensorboard") else None
            report_to = [r for r in report_to if r != "wandb"]
            if replacement and replacement not in report_to:
                report_to.append(replacement)
            logger.warning(
                "report_to lists wandb but the wandb package is not installed: %s (pip install wandb for W&B)",
                "logging to TensorBoard instead" if replacement else "no tracker is installed either; the "
                "losses and rewards are still saved in trainer_state.json",
            )
        else:
            os.environ.setdefault("WANDB_PROJECT", WANDB_DEFAULT_PROJECT)
            login = wandb_login_source()
            if os.environ.get("WANDB_MODE"):
                say("W&B: WANDB_MODE=%s (set by you), project %s", os.environ["WANDB_MODE"], os.environ["WANDB_PROJECT"])
            elif login is None:
                os.environ["WANDB_MODE"] = "offline"
                runs = Path(os.environ.get("WANDB_DIR") or ".").resolve() / WANDB_RUNS_FOLDER
                say(
                    "W&B: no login found (WANDB_API_KEY, or `wandb login`): logging OFFLINE to %s/offline-run-*. "
                    "Upload later with `wandb sync %s/offline-run-<date>-<id>` (after `wandb login`); "
                    "set WANDB_MODE=online to force online, or report_to: tensorboard|none.",
                    runs, runs,
                )
            else:
                say("W&B: logging online (login from %s), project %s", login, os.environ["WANDB_PROJECT"])
    if "tensorboard" in report_to:
        logdir = os.environ.get("TENSORBOARD_LOGGING_DIR") or str(Path(training_args.output_dir) / TENSORBOARD_RUNS_FOLDER)
        say("TensorBoard: event files in %s (view with `tensorboard --logdir %s`)", logdir, logdir)
    training_args.report_to = report_to
    return report_to


# --------------------------------------------------------------------------------------------
# Model cards

CARD_FILE = "README.md"
RECIPE_FILE = "recipe.yaml"  # written by recipes.common.save_stage beside every stage's weights
TRAINER_STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.json"  # evaluate.run's output
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
STAGE_KEY = "smoldrive_stage"  # front-matter key naming the stage (read back when a later stage builds on it)
MAX_CHAIN = 16  # stage folders followed back through model_name_or_path (guards against a cycle)
PIPELINE_TAG = "image-text-to-text"
CARD_TAGS = ("smoldrive", "trl", "driving", "bdd-oia", "vision-language", "idefics3")


def read_front_matter(card: Path) -> dict:
    """The YAML front matter of a model card ({} when there is none or it does not parse)."""
    try:
        text = card.read_text(encoding="utf-8")
    except OSError:
        return {}
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


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
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.count("/") != 1


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
            f"python -m recipes.tracking --model {output_dir} --metrics work/eval/{output_dir.name}/metrics.json",
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
    from recipes.common import package_versions

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
    front: dict[str, Any] = {}
    if root and not _is_local(root):
        front["base_model"] = root  # the hub model at the start of the chain (local stages are not on the hub)
    front.update({"library_name": "transformers", "pipeline_tag": PIPELINE_TAG, "tags": tags,
                  "model_name": output_dir.name, STAGE_KEY: stage})

    rows = [f"| 0 | base | `{root or base_model}` | – | – |"]
    for i, entry in enumerate(chain, 1):
        steps = entry["steps"] if entry["steps"] is not None else "?"
        rows.append(f"| {i} | {entry['stage']} | `{entry['folder']}` | {entry['method']} | {steps} |")
    rows.append(f"| {len(chain) + 1} | **{stage}** (this model) | `{output_dir}` | {method} | "
                f"{_trained_steps(output_dir) if _trained_steps(output_dir) is not None else '?'} |")

    versions = package_versions()
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
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
    card.write_text("\n".join(lines), encoding="utf-8")
    return card


def infer_stage(output_dir: str | Path) -> str:
    """The running stage's name: the ``recipes.<stage>.<stage>`` module run with ``python -m``, else
    the output folder's name (stage, YAML, make target and output folder share the name)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    parts = (spec.name if spec is not None else "").split(".")
    if len(parts) == 3 and parts[0] == "recipes" and parts[1] == parts[2]:
        return parts[1]
    return Path(output_dir).name


# --------------------------------------------------------------------------------------------
# Command line: refresh a stage's card (e.g. after `make eval`)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.tracking", description="Rewrite a stage folder's model card.")
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
