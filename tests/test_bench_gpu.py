"""benchmarks/gpu.py: the CPU fallback runs the recipes' own trainers on the tiny model and writes
its section of BENCHMARKS.md (with the GPU figures marked missing); the FLOPs formula; the section
writer leaves other sections, and GPU figures, alone."""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from benchmarks import gpu
from benchmarks.markdown import section_markers, write_section

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback runs only without CUDA")

OTHER_START, OTHER_END = section_markers("benchmarks.data_prep")
OTHER_SECTION = f"{OTHER_START}\n## Data preparation\n| clips | time |\n|---|---|\n| 10 | 1 s |\n{OTHER_END}\n"


def table_after(text: str, heading: str) -> tuple[list[str], list[dict[str, str]]]:
    """The first markdown table after ``heading``: its columns and rows (as column -> cell)."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    columns = rows[0]
    return columns, [dict(zip(columns, cells)) for cells in rows[2:]]


@pytest.fixture(scope="module")
def cpu_section(tiny_vlm_dir, tiny_clip, small_prepared_dataset, tmp_path_factory):
    work = tmp_path_factory.mktemp("bench_gpu")
    dataset = work / "dataset"
    shutil.copytree(small_prepared_dataset, dataset)  # the session copy is read-only; map() caches beside it
    markdown = work / "BENCHMARKS.md"
    markdown.write_text("# SmolDrive benchmarks\n\n" + OTHER_SECTION)
    assert gpu.main([
        "--model", str(tiny_vlm_dir), "--dataset", str(dataset), "--clip-model", tiny_clip,
        "--frames", "3", "--steps", "1", "--warmup", "0", "--modes", "full,qlora",
        "--rl-modes", "full", "--rl-algorithms", "grpo,actor_critic", "--num-generations", "2",
        "--max-new-tokens", "4", "--markdown", str(markdown),
    ]) == 0
    return markdown.read_text()


def test_the_cpu_fallback_writes_its_section_and_says_gpu_figures_are_missing(cpu_section):
    start, end = section_markers(gpu.OWNER)
    assert cpu_section.count(start) == 1 and cpu_section.count(end) == 1
    section = cpu_section[cpu_section.index(start):cpu_section.index(end)]
    assert "GPU figures: missing" in section
    assert gpu.CUDA_MARK not in section
    assert OTHER_SECTION in cpu_section  # the other benchmark's section is untouched


def test_sft_table_has_the_figures_asked_for(cpu_section):
    columns, rows = table_after(cpu_section, "### SFT")
    for column in ("model", "mode", "step s", "samples/s", "tokens/s", "TFLOP/step", "MFU", "peak GPU mem GiB"):
        assert column in columns
    by_mode = {row["mode"]: row for row in rows}
    full = by_mode["full"]
    assert full["status"] == "ok"
    for column in ("step s", "samples/s", "tokens/s", "TFLOP/step"):
        assert float(full[column].replace(",", "")) > 0, column
    assert full["MFU"] == "–" and full["peak GPU mem GiB"] == "n/a (CPU)"  # no GPU: no peak to divide by
    # the figures describe the same steps: tokens/s = batch x tokens/sample / step time
    expected = int(full["batch"]) * float(full["tokens/sample"]) / float(full["step s"])
    assert float(full["tokens/s"].replace(",", "")) == pytest.approx(expected, rel=0.02, abs=1)
    assert by_mode["qlora"]["status"] == "ok"  # bitsandbytes runs nf4 on the CPU: the QLoRA path is measured too
    assert float(by_mode["qlora"]["step s"]) > 0


def test_rl_table_times_grpo_and_the_actor_critic_with_generation(cpu_section):
    columns, rows = table_after(cpu_section, "### RL step")
    for column in ("algorithm", "completions", "step s", "generation s", "generated tokens/s", "peak GPU mem GiB"):
        assert column in columns
    assert {row["algorithm"] for row in rows} == {"grpo", "actor_critic"}
    for row in rows:
        assert row["status"] == "ok", row
        step, generation = float(row["step s"]), float(row["generation s"])
        assert 0 < generation <= step  # generation is part of the step
        assert float(row["generated tokens/s"].replace(",", "")) > 0


def test_a_cpu_run_leaves_gpu_figures_in_place(tmp_path):
    start, end = section_markers(gpu.OWNER)
    markdown = tmp_path / "BENCHMARKS.md"
    gpu_section = f"{start}\n{gpu.CUDA_MARK}\n| H100 figures |\n{end}\n"
    markdown.write_text("# SmolDrive benchmarks\n\n" + gpu_section)
    message = gpu.write_report(markdown, f"{start}\nCPU figures\n{end}\n")
    assert "left" in message and markdown.read_text().count("H100 figures") == 1


def test_write_section_replaces_its_own_section_only(tmp_path):
    start, end = section_markers("benchmarks.example")
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# SmolDrive benchmarks\n\n" + OTHER_SECTION)
    write_section(markdown, f"{start}\nfirst\n{end}\n", start, end)
    write_section(markdown, f"{start}\nsecond\n{end}\n", start, end)
    text = markdown.read_text()
    assert "second" in text and "first" not in text and text.count(start) == 1
    assert OTHER_SECTION in text
    with pytest.raises(ValueError):
        write_section(markdown, "no markers", start, end)


def test_flops_follow_the_6nd_rule_for_a_text_only_model():
    """Without attention or images, full fine-tuning costs 6·N·T FLOPs and LoRA 4·N·T (no weight gradients)."""
    shape = gpu.ModelShape(n_text=1000, n_vision=0, n_connector=0, text_layers=0, text_attention_width=0,
                           vision_layers=0, vision_width=0, patches_per_tile=0, image_seq_len=1, total_params=1000)
    assert gpu.train_flops(shape, "full", tokens=50, samples=2, tiles=0) == 6 * 1000 * 50
    assert gpu.train_flops(shape, "lora", tokens=50, samples=2, tiles=0) == 4 * 1000 * 50


def test_model_shape_of_smolvlm_256m_accounts_for_every_parameter():
    from tiny_models.vlm import real_size_config

    config = real_size_config("SmolVLM-256M-Instruct")
    shape = gpu.model_shape(config)
    text, vision = config.text_config, config.vision_config
    embeddings = text.vocab_size * text.hidden_size  # token embedding lookup (lm_head is counted in n_text)
    positions = (vision.image_size // vision.patch_size) ** 2 * vision.hidden_size  # position lookup
    assert shape.n_text + embeddings + shape.n_vision + positions + shape.n_connector == shape.total_params
    assert shape.patches_per_tile == 1024 and shape.image_seq_len == 64  # docs/smolvlm.md: 64 tokens per 512 px tile
    assert re.fullmatch(r"2\d\dM", gpu.millions(shape.total_params))
