"""evaluate.metrics against BDD-OIA's definitions, written out here independently of sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from evaluate.metrics import answer_metrics, best_constant_baseline, description_metrics, label_metrics
from taxonomy.answer import format_answer, parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS, actions_to_vector, reasons_to_vector


def f1_by_definition(truth_row: np.ndarray, pred_row: np.ndarray) -> float:
    """F1 = 2TP / (2TP + FP + FN), 0 when nothing is true or predicted (sklearn's zero_division)."""
    tp = int(np.sum((truth_row == 1) & (pred_row == 1)))
    fp = int(np.sum((truth_row == 0) & (pred_row == 1)))
    fn = int(np.sum((truth_row == 1) & (pred_row == 0)))
    return 0.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def random_labels(rng: np.random.Generator, n: int, k: int, density: float) -> np.ndarray:
    labels = (rng.random((n, k)) < density).astype(int)
    labels[:3] = 0  # samples with no positive label
    labels[:, 1] = 0  # a class that never occurs
    return labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_metrics_match_the_definitions_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    truth = random_labels(rng, 60, 5, 0.3)
    pred = (rng.random(truth.shape) < 0.4).astype(int)
    pred[0] = 0  # a sample with neither true nor predicted labels scores 0
    pred[:, 1] = 0  # a class with neither true nor predicted positives scores 0
    names = [f"c{k}" for k in range(5)]

    metrics = label_metrics(truth, pred, names)

    f1_all = np.mean([f1_by_definition(t, p) for t, p in zip(truth, pred)])
    per_class = [f1_by_definition(truth[:, k], pred[:, k]) for k in range(5)]
    assert metrics["f1_all"] == pytest.approx(f1_all)
    assert metrics["mf1"] == pytest.approx(np.mean(per_class))
    assert [metrics["per_class"][n] for n in names] == pytest.approx(per_class)
    assert metrics["per_class"]["c1"] == 0.0
    # and sklearn with its default zero_division gives the same numbers (it only warns)
    with pytest.warns(Warning):
        assert metrics["f1_all"] == pytest.approx(f1_score(truth, pred, average="samples"))
    assert metrics["n_samples"] == 60


def test_accuracy_counts_every_label_entry_by_hand():
    truth = [[1, 0, 0, 1], [0, 1, 0, 0]]
    pred = [[1, 1, 0, 0], [0, 1, 0, 0]]
    # entries: row 1 agrees on 2 of 4 (positions 0, 2), row 2 on 4 of 4 -> 6 / 8
    metrics = label_metrics(truth, pred, ACTION_KEYS)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    # F1 by hand: row 1 TP=1 FP=1 FN=1 -> 0.5; row 2 -> 1.0
    assert metrics["f1_all"] == pytest.approx(0.75)
    # per class: forward 1.0, stop TP=1 FP=1 -> 2/3, left none -> 0, right FN=1 -> 0
    assert metrics["per_class"] == pytest.approx({"forward": 1.0, "stop": 2 / 3, "left": 0.0, "right": 0.0})


def test_bool_inputs_are_accepted():
    truth = np.array([[True, False], [False, True]])
    metrics = label_metrics(truth, truth, ["a", "b"])
    assert metrics["f1_all"] == 1.0 and metrics["accuracy"] == 1.0


@pytest.mark.parametrize(
    "truth, pred, names, message",
    [
        ([1, 0, 1], [1, 0, 1], ["a", "b", "c"], "2-D"),
        ([[1, 0], [0, 1]], [[1, 0]], ["a", "b"], "shape"),
        ([[1, 0]], [[1, 0]], ["a", "b", "c"], "3 classes"),
        ([[1, 2]], [[1, 0]], ["a", "b"], "0 or 1"),
        ([[0.7, 0.1]], [[1, 0]], ["a", "b"], "threshold"),
        ([[1, 0], [1]], [[1, 0], [1, 0]], ["a", "b"], "y_true"),
        ([["a", "b"]], [[1, 0]], ["a", "b"], "dtype"),
        (np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"], "no samples"),
    ],
)
def test_bad_input_gets_a_clear_error(truth, pred, names, message):
    with pytest.raises(ValueError, match=message):
        label_metrics(truth, pred, names)


def test_answer_metrics_reads_answers_with_the_shared_parser():
    labels = [
        (["forward"], ["green_light", "solid_line_left"]),
        (["stop"], ["obstacle_person"]),
        (["forward", "right"], ["road_clear", "on_right_turn_lane"]),
    ]
    actions_true = [actions_to_vector(a) for a, _ in labels]
    reasons_true = [reasons_to_vector(r) for _, r in labels]
    answers = [format_answer("a street", a, r) for a, r in labels]
    answers[1] = parse_answer(answers[1])  # parsed answers and raw strings both work

    perfect = answer_metrics(answers, actions_true, reasons_true)
    assert perfect["actions"]["f1_all"] == 1.0 and perfect["reasons"]["f1_all"] == 1.0
    assert perfect["json_rate"] == 1.0 and perfect["empty_rate"] == 0.0

    degraded = answer_metrics(["", "nonsense", answers[2]], actions_true, reasons_true)
    assert degraded["actions"]["f1_all"] == pytest.approx(1 / 3)
    assert degraded["empty_rate"] == pytest.approx(2 / 3)
    assert degraded["reasons"]["per_class"]["road_clear"] == 1.0
    assert degraded["reasons"]["per_class"]["green_light"] == 0.0


def test_answer_metrics_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="one to one"):
        answer_metrics(["x"], [[1, 0, 0, 0]] * 2, [[0] * 21] * 2)
    with pytest.raises(ValueError, match="21 classes"):
        answer_metrics(["x"], [[1, 0, 0, 0]], [[0] * 20])


def brute_force_best_f1_all(truth: np.ndarray) -> float:
    k = truth.shape[1]
    best = 0.0
    for code in range(2**k):
        vector = np.array([(code >> j) & 1 for j in range(k)])
        best = max(best, f1_score(truth, np.tile(vector, (len(truth), 1)), average="samples", zero_division=0))
    return best


@pytest.mark.parametrize("seed", [0, 3])
def test_best_constant_is_the_best_of_all_constants_for_actions(seed):
    rng = np.random.default_rng(seed)
    truth = (rng.random((40, 4)) < rng.random(4)).astype(int)
    baseline = best_constant_baseline(truth, ACTION_KEYS)
    assert baseline["f1_all"] == pytest.approx(brute_force_best_f1_all(truth))
    assert baseline["candidates_tried"] == 16
    # the reported metrics are those of predicting the reported vector for every sample
    again = label_metrics(truth, np.tile(baseline["vector"], (40, 1)), ACTION_KEYS)
    assert baseline["mf1"] == pytest.approx(again["mf1"])
    assert baseline["positive_classes"] == [n for n, v in zip(ACTION_KEYS, baseline["vector"]) if v]


def test_best_constant_finds_the_obvious_answer():
    truth = np.array([[1, 0, 0, 0]] * 9 + [[0, 1, 0, 0]])
    baseline = best_constant_baseline(truth, ACTION_KEYS)
    assert baseline["vector"] == [1, 0, 0, 0]
    assert baseline["f1_all"] == pytest.approx(0.9)
    assert "majority" in baseline["rule"] or "top-1" in baseline["rule"]
    assert baseline["all_ones"]["f1_all"] == pytest.approx(0.4)


def test_best_constant_for_many_classes_beats_all_ones_and_majority():
    rng = np.random.default_rng(5)
    prevalence = np.array([0.7, 0.05, 0.4, 0.6] + [0.1] * 17)
    truth = (rng.random((80, 21)) < prevalence).astype(int)
    baseline = best_constant_baseline(truth, REASON_KEYS)
    majority = np.tile((truth.mean(axis=0) > 0.5).astype(int), (80, 1))
    assert baseline["f1_all"] >= label_metrics(truth, majority, REASON_KEYS)["f1_all"]
    assert baseline["f1_all"] >= baseline["all_ones"]["f1_all"]
    assert baseline["candidates_tried"] <= 22
    # a constant's mF1 is maximal for all-ones: each class's F1 depends only on its own column
    assert baseline["all_ones"]["mf1"] >= baseline["mf1"]


# --- descriptions against the reference -------------------------------------------------------
REFERENCE = "A three-lane road with a car close ahead; a dashed line on the left and a solid line on the right."


def test_description_exact_match_ignores_case_and_punctuation_only():
    same = "a three-lane road, with a car close ahead; a dashed line on the left and a solid line on the right"
    swapped = "A three-lane road with a car close ahead; a solid line on the right and a dashed line on the left."
    result = description_metrics([same, swapped], [REFERENCE, REFERENCE])
    assert result["exact_match"] == pytest.approx(0.5)  # the swapped order is not the reference's sentence
    assert result["word_f1"] == pytest.approx(1.0)  # but it has every word of it
    assert result["n_samples"] == 2


def test_description_one_wrong_detail_is_no_match_and_partial_credit():
    one_wrong = REFERENCE.replace("solid", "dashed")
    result = description_metrics([one_wrong], [REFERENCE])
    assert result["exact_match"] == 0.0
    words = len(REFERENCE.split())
    assert result["word_f1"] == pytest.approx((words - 1) / words)


def test_description_missing_or_unrelated_scores_zero():
    result = description_metrics([None, "", "sunny beach"], [REFERENCE] * 3)
    assert result == {"exact_match": 0.0, "word_f1": 0.0, "n_samples": 3}


def test_description_clips_without_reference_are_not_judged():
    assert description_metrics([REFERENCE, "anything"], [REFERENCE, ""])["n_samples"] == 1
    assert description_metrics(["anything"], [""]) == {"exact_match": None, "word_f1": None, "n_samples": 0}
    with pytest.raises(ValueError, match="must match one to one"):
        description_metrics([REFERENCE], [REFERENCE, REFERENCE])
