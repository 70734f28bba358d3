"""Which labels an RL stage can teach (evaluate/label_signal.py): the figures on groups whose answers
are known, the parsing of sampled answers, the recipe's sampling settings, and sampled generation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluate.label_signal import label_signal, render, said_labels, sampling_of_recipe
from taxonomy.answer import format_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS

NAMES = ("seen", "blind", "never_said", "never_true")


def _signal():
    # 4 clips x 2 samples. "seen" is true on clips 0, 1 and said there by 3 of 4 samples, by 1 of 4
    # elsewhere; "blind" is said as often where it is false as where it is true; "never_said" is
    # true on clip 0 and said by no sample; "never_true" is true nowhere.
    truth = [[1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    said = np.zeros((4, 2, 4), dtype=int)
    said[0, :, 0] = 1
    said[1, 0, 0] = 1
    said[2, 1, 0] = 1
    said[:, 0, 1] = 1  # "blind": one sample of every clip
    said[3, 1, 3] = 1
    return label_signal(truth, said, NAMES)


def test_hit_and_false_alarm_rates_are_shares_of_samples_on_true_and_false_clips():
    seen = _signal()["seen"]
    assert seen["positives"] == 2
    assert seen["hit_rate"] == pytest.approx(0.75) and seen["false_alarm_rate"] == pytest.approx(0.25)
    assert seen["lift"] == pytest.approx(3.0)


def test_a_label_the_model_does_not_see_has_lift_one():
    assert _signal()["blind"]["lift"] == pytest.approx(1.0)


def test_a_label_no_sample_says_has_hit_rate_zero_and_no_lift():
    row = _signal()["never_said"]
    assert row["hit_rate"] == 0.0 and row["false_alarm_rate"] == 0.0 and row["lift"] is None


def test_a_label_true_nowhere_has_no_hit_rate():
    row = _signal()["never_true"]
    assert row["positives"] == 0 and row["hit_rate"] is None
    assert row["false_alarm_rate"] == pytest.approx(1 / 8)


def test_shapes_that_do_not_match_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="said"):
        label_signal([[1, 0, 0, 0]], np.zeros((2, 3, 4)), NAMES)
    with pytest.raises(ValueError, match="truth"):
        label_signal([[1, 0]], np.zeros((1, 3, 2)), NAMES)


def test_said_labels_groups_consecutive_answers_and_reads_garbage_as_nothing():
    answers = [format_answer("a road", ["forward"], ["road_clear"]), "not an answer at all",
               format_answer("a road", ["stop", "left"], ["stop_traffic_light"]), ""]
    actions, reasons = said_labels(answers, samples=2)
    assert actions.shape == (2, 2, len(ACTION_KEYS)) and reasons.shape == (2, 2, len(REASON_KEYS))
    assert actions[0, 0, ACTION_KEYS.index("forward")] == 1 and actions[0, 1].sum() == 0
    assert actions[1, 0, ACTION_KEYS.index("left")] == 1 and reasons[1, 1].sum() == 0
    assert reasons[0, 0, REASON_KEYS.index("road_clear")] == 1
    with pytest.raises(ValueError, match="groups of 3"):
        said_labels(answers, samples=3)


def test_render_has_a_row_per_label_and_marks_missing_figures():
    signal = {"model": "m", "split": "val", "clips": 4, "sampling": {},
              "actions": label_signal([[1, 0, 0, 0]], np.ones((1, 2, 4)), ACTION_KEYS),
              "reasons": {"never_true": _signal()["never_true"]}}
    table = render(signal)
    assert "| forward | 1 | 1.000 | – | – |" in table
    assert "| never_true | 0 | – | 0.125 | – |" in table
    perfect = {"model": "m", "split": "val", "clips": 2, "sampling": {}, "reasons": {},
               "actions": label_signal([[1, 0, 0, 0], [0, 0, 0, 0]], [[[1, 0, 0, 0]], [[0, 0, 0, 0]]], ACTION_KEYS)}
    assert "| forward | 1 | 1.000 | 0.000 | ∞ |" in render(perfect)


def test_sampling_follows_the_recipe_and_grpo_defaults_where_it_is_silent():
    sampling, cap = sampling_of_recipe({"num_generations": 8, "temperature": 0.7, "max_completion_length": 192})
    assert (sampling.samples, sampling.temperature, cap) == (8, 0.7, 192)
    from trl import GRPOConfig

    assert (sampling.top_p, sampling.top_k) == (GRPOConfig.top_p, GRPOConfig.top_k)


def test_sampled_generation_draws_samples_per_clip_and_greedy_is_unchanged(tiny_vlm_dir):
    import torch

    from evaluate.generate import EvaluationError, Sampling, generate_answers, load_model_and_processor

    model, processor = load_model_and_processor(tiny_vlm_dir)
    clips = [[Image.new("RGB", (32, 32), (i * 60, 90, 30))] for i in range(2)]
    greedy = generate_answers(model, processor, clips, max_new_tokens=6, progress=False)
    torch.manual_seed(0)
    sampled = generate_answers(model, processor, clips, max_new_tokens=6, progress=False,
                               sampling=Sampling(samples=3, temperature=5.0, top_p=1.0, top_k=0))
    assert len(greedy.texts) == 2 and len(sampled.texts) == 6
    assert len(set(sampled.texts)) > 1  # a random tiny model at temperature 5 does not repeat itself
    assert generate_answers(model, processor, clips, max_new_tokens=6, progress=False).texts == greedy.texts
    with pytest.raises(EvaluationError, match="temperature"):
        Sampling(samples=2, temperature=0.0, top_p=1.0, top_k=0)


def test_the_cli_names_a_missing_recipe_and_a_missing_model_before_sampling(tmp_path, small_prepared_dataset, capsys):
    from evaluate.label_signal import main

    assert main(["--model", str(tmp_path / "no-model"), "--dataset", str(small_prepared_dataset),
                 "--recipe", str(tmp_path / "no-recipe.yaml")]) == 2
    assert "no-recipe.yaml" in capsys.readouterr().err
    recipe = tmp_path / "stage2.yaml"
    recipe.write_text("num_generations: 2\ntemperature: 0.7\n")
    assert main(["--model", str(tmp_path / "no-model"), "--dataset", str(small_prepared_dataset),
                 "--recipe", str(recipe)]) == 2
    assert "no-model" in capsys.readouterr().err
