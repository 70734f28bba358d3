"""Recipe YAML parsing: flat keys onto our, TRL's trainer and TRL's model dataclasses."""

from pathlib import Path

import pytest
import yaml
from trl import ModelConfig, SFTConfig

from core import model_source
from core.model_source import ModelSourceError
from recipes import config as recipe_config
from recipes import model_loading
from recipes.errors import RecipeError
from recipes.sft.sft import SFTRecipeArguments

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SFT_TYPES = (SFTRecipeArguments, SFTConfig, ModelConfig)


def test_published_baseline_recipe_parses_to_its_numbers():
    recipe, train, model = recipe_config.parse_recipe(SFT_TYPES, ["--config", str(RECIPES / "sft" / "sft.yaml")])
    assert model.model_name_or_path == "HuggingFaceTB/SmolVLM-Instruct"
    assert (train.num_train_epochs, train.per_device_train_batch_size, train.gradient_accumulation_steps) == (6, 4, 4)
    assert train.learning_rate == pytest.approx(1e-4)
    assert train.lr_scheduler_type.value == "cosine" and 0 < train.warmup_steps < 1
    assert train.activation_checkpointing is True
    assert model.load_in_4bit and model.use_peft
    assert recipe.target_column == "answer_json"


def test_command_line_overrides_the_yaml():
    recipe, train, _ = recipe_config.parse_recipe(
        SFT_TYPES,
        ["--config", str(RECIPES / "sft" / "sft.yaml"), "--learning_rate", "3e-5", "--frames_per_clip", "2"],
    )
    assert train.learning_rate == pytest.approx(3e-5)
    assert recipe.frames_per_clip == 2


@pytest.mark.parametrize("value", [1e-3, [0.5, 1.0], {"w": 1}, "a ] b"])
def test_unknown_yaml_key_is_an_error_naming_it(tmp_path, value):
    """Whatever its value (a list once broke the parser's reading of TRL's message text)."""
    config = yaml.safe_load((RECIPES / "sft" / "sft.yaml").read_text())
    config["lerning_rate"] = value
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(RecipeError, match="lerning_rate") as err:
        recipe_config.parse_recipe(SFT_TYPES, ["--config", str(path)])
    assert str(path) in str(err.value)


def test_unknown_command_line_option_is_an_error():
    with pytest.raises(RecipeError, match="--no_such_key"):
        recipe_config.parse_recipe(SFT_TYPES, ["--config", str(RECIPES / "sft" / "sft.yaml"), "--no_such_key", "1"])


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match="nope.yaml"):
        recipe_config.parse_recipe(SFT_TYPES, ["--config", str(tmp_path / "nope.yaml")])


def test_every_shipped_recipe_parses():
    for path in sorted(RECIPES.glob("sft/*.yaml")):
        recipe_config.parse_recipe(SFT_TYPES, ["--config", str(path)])


class _Args:
    bf16 = True
    fp16 = False


def test_precision_follows_the_hardware_on_cpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    args = _Args()
    assert recipe_config.apply_precision(args, "auto") == "fp32"
    assert args.bf16 is False and args.fp16 is False
    with pytest.raises(RecipeError, match="precision"):
        recipe_config.apply_precision(args, "fp8")


def test_hub_model_without_network_fails_at_once_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelSourceError, match="make demo"):
        model_source.check_model_source("HuggingFaceTB/SmolVLM-Instruct-does-not-exist")


def test_eight_bit_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    model_args = ModelConfig(model_name_or_path="x", load_in_8bit=True)
    with pytest.raises(RecipeError, match="load_in_8bit needs CUDA"):
        model_loading.quantization_config(model_args, "fp32")


def test_lora_targets_the_text_model_only():
    import re

    _, _, model = recipe_config.parse_recipe(SFT_TYPES, ["--config", str(RECIPES / "sft" / "sft.yaml")])
    lora = model_loading.lora_config(model)
    pattern = re.compile(lora.target_modules)
    assert pattern.fullmatch("model.text_model.layers.0.self_attn.q_proj")
    assert pattern.fullmatch("model.text_model.layers.3.mlp.down_proj")
    assert not pattern.fullmatch("model.vision_model.encoder.layers.0.self_attn.q_proj")


@pytest.mark.parametrize("name", ["work/nope", "./nope", "/abs/nope", "a/b/c", "nope"])
def test_a_missing_local_model_folder_fails_at_once_naming_it(tmp_path, monkeypatch, name):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(model_source, "hub_reachable", lambda *a, **k: pytest.fail("a local path must not reach the hub"))
    with pytest.raises(ModelSourceError, match=f"model folder not found: {name}"):
        model_source.check_model_source(name)


def test_an_unreachable_hub_fails_at_once_with_advice(monkeypatch):
    import time

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(model_source, "hub_reachable", lambda *a, **k: False)
    started = time.perf_counter()
    with pytest.raises(ModelSourceError, match="not reachable.*make demo"):
        model_source.check_model_source("HuggingFaceTB/SmolVLM-Instruct-does-not-exist")
    assert time.perf_counter() - started < model_source.HUB_CONNECT_TIMEOUT_S


def test_hub_probe_says_no_when_the_host_refuses(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://127.0.0.1:9")  # discard port: refused
    assert model_source.hub_reachable(timeout=1.0) is False


def test_the_processor_is_not_loaded_before_the_model_source_is_checked(monkeypatch):
    import transformers

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained",
                        lambda *a, **k: pytest.fail("the processor loaded before the source was checked"))
    model_args = ModelConfig(model_name_or_path="./no/such/model")
    with pytest.raises(ModelSourceError, match="model folder not found"):
        model_loading.load_processor(model_args, recipe_config.RecipeArguments())


def test_a_recipe_error_is_one_line_and_exit_status_2(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\nnot_a_key: 1\n")
    result = subprocess.run([sys.executable, "-m", "recipes.stage2.stage2", "--config", str(bad)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not_a_key" in errors[0] and str(bad) in errors[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_truncated_or_corrupt_weight_file_is_an_error_naming_it(tiny_vlm_dir, tmp_path, damage):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_vlm_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage" * 8)
    with pytest.raises(ModelSourceError, match=str(weights)):
        model_loading.load_model(ModelConfig(model_name_or_path=str(folder)), "fp32")


def test_lora_keeps_every_key_of_trls_model_config():
    """The LoRA config is TRL's (get_peft_config), so keys such as lora_modules_to_save reach peft."""
    _, _, model = recipe_config.parse_recipe(
        SFT_TYPES, ["--config", str(RECIPES / "sft" / "sft.yaml"), "--lora_modules_to_save", "lm_head"]
    )
    assert set(model_loading.lora_config(model).modules_to_save) == {"lm_head"}


def test_the_model_revision_reaches_every_load_and_the_source_check(tiny_vlm_dir, monkeypatch):
    """A pinned ``model_revision`` is what the processor, the model and the hub check are loaded at."""
    import transformers

    seen = []
    monkeypatch.setattr(model_loading, "check_model_source", lambda name, revision=None: seen.append(("check", revision)))
    for cls in (transformers.AutoProcessor, transformers.AutoModelForImageTextToText):
        original = cls.from_pretrained

        def record(name, *args, _original=original, _cls=cls.__name__, **kwargs):
            seen.append((_cls, kwargs.get("revision")))
            return _original(name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", record)
    model_args = ModelConfig(model_name_or_path=str(tiny_vlm_dir), model_revision="0123abcd")
    model_loading.load_processor(model_args, recipe_config.RecipeArguments())
    model_loading.load_model(model_args, "fp32")
    assert seen and all(revision == "0123abcd" for _, revision in seen), seen
    assert {"AutoProcessor", "AutoModelForImageTextToText"} <= {what for what, _ in seen}
