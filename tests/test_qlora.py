"""The published baseline's QLoRA path, run: the real SFT YAML's model keys (4-bit nf4, nested
quantisation, LoRA on the text model by regex) on the tiny SmolVLM-shaped model, on the CPU
(bitsandbytes runs nf4 there). Train, save, load as `make eval` and `make stage1` do, generate;
then an RL stage from that output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("bitsandbytes")

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
STEPS = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
         "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def qlora_sft(tiny_vlm_dir, small_prepared_dataset, tmp_path_factory):
    from recipes.sft import sft

    out = tmp_path_factory.mktemp("qlora") / "sft"
    sft.main(["--config", str(RECIPES / "sft" / "sft.yaml"), "--model_name_or_path", str(tiny_vlm_dir),
              "--dataset_path", str(small_prepared_dataset), "--output_dir", str(out), "--eval_strategy", "no",
              *STEPS])
    return out


def test_the_real_sft_recipe_trains_qlora_on_the_cpu(qlora_sft, tiny_vlm_dir):
    import json

    from recipes.sft.sft import SFTRecipeArguments  # noqa: F401 - the recipe's own keys parsed above

    info = json.loads((qlora_sft / "smoldrive.json").read_text())
    assert info["layout"].startswith("LoRA adapter over a 4-bit base")
    adapter = json.loads((qlora_sft / "adapter_config.json").read_text())
    assert Path(adapter["base_model_name_or_path"]) == Path(tiny_vlm_dir)
    assert "text_model" in str(adapter["target_modules"]) and "vision" not in str(adapter["target_modules"])
    state = json.loads((qlora_sft / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_the_qlora_output_loads_as_eval_loads_it_and_generates(qlora_sft, small_prepared_dataset):
    from evaluate.generate import generate_for_split, load_eval_split, load_model_and_processor

    model, processor = load_model_and_processor(str(qlora_sft), None, None, "cpu", "auto")
    data = load_eval_split(str(small_prepared_dataset), "val", 2)
    generated = generate_for_split(model, processor, data, 2, 8, False)
    assert len(generated.texts) == 2 and all(n > 0 for n in generated.token_counts)


def test_an_rl_stage_trains_from_the_qlora_output(qlora_sft, small_prepared_dataset, tmp_path):
    import json

    from recipes.stage2 import stage2

    out = tmp_path / "stage2"
    stage2.main(["--config", str(RECIPES / "stage2" / "stage2.yaml"), "--model_name_or_path", str(qlora_sft),
                 "--dataset_path", str(small_prepared_dataset), "--output_dir", str(out),
                 "--reward_funcs", "action_reasoning", "--reward_weights", "1.0", "--num_generations", "2",
                 "--max_completion_length", "8", *STEPS])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert (out / "adapter_config.json").is_file() or (out / "model.safetensors").is_file()
