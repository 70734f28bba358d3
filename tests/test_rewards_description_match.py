"""rewards.description_match: the true description on top, one wrong word costs the exact half,
garbage never raises (and no scorer failed), the evaluation's description metrics read alike."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evaluate.metrics import description_metrics
from rewards import resolve_rewards
from rewards.description_match import NAME, description_match_reward, description_words, word_f1
from rewards.registry import failure_counts, reset_failure_counts, reward_span
from taxonomy.answer import format_answer

TRUTH = "A two-lane road with a red traffic light; a car ahead in the right lane."
ACTIONS, REASONS = ["stop"], ["stop_traffic_light"]
PATHOLOGICAL = [None, "", "{" * 20000, '{"description": ' * 3000, "x" * 200_000, 7.5,
                '{"description": "\ud800", "actions": {}}', [{"role": "assistant", "content": None}],
                json.dumps({"description": ["not", "a", "string"]})]


@pytest.fixture(autouse=True)
def fresh_failure_counts():
    reset_failure_counts()


def assert_no_scorer_failures():
    assert failure_counts().get(NAME, 0) == 0, f"the {NAME} scorer raised: {failure_counts()}"


def score(*descriptions: str, truth: str = TRUTH, **params) -> list[float]:
    answers = [format_answer(d, ACTIONS, REASONS) for d in descriptions]
    return description_match_reward(answers, description=[truth] * len(answers), **params)


def test_the_true_description_scores_one_ignoring_case_and_separators():
    assert score(TRUTH, TRUTH.upper().replace(";", ","), truth=TRUTH) == [1.0, 1.0]
    assert_no_scorer_failures()


def test_one_wrong_word_loses_the_exact_half_and_a_little_f1():
    [wrong] = score(TRUTH.replace("red", "green"))
    words = description_words(TRUTH)
    expected_f1 = 2 * (len(words) - 1) / (2 * len(words))
    assert wrong == pytest.approx(0.5 * expected_f1)
    [only_f1] = score(TRUTH.replace("red", "green"), w_exact=0.0)
    assert only_f1 == pytest.approx(expected_f1)


def test_the_ranking_truth_then_one_word_off_then_another_scene_then_nothing():
    truth, one_off, other, nothing = score(TRUTH, TRUTH.replace("red", "green"), "An empty motorway at night.", "")
    assert truth > one_off > other >= nothing == 0.0


def test_word_order_matters_for_the_exact_part_only():
    shuffled = " ".join(reversed(description_words(TRUTH)))
    [value] = score(shuffled)
    assert value == pytest.approx(0.5)


def test_no_reference_scores_zero_and_a_missing_column_is_a_config_error():
    assert description_match_reward([format_answer(TRUTH, ACTIONS, REASONS)], description=[""]) == [0.0]
    with pytest.raises(ValueError, match="needs the dataset column 'description'"):
        description_match_reward([format_answer(TRUTH, ACTIONS, REASONS)])
    with pytest.raises(ValueError, match="w_exact"):
        score(TRUTH, w_exact=1.5)


def test_a_plain_text_answer_is_read_by_the_one_parser():
    text = f"Scene: {TRUTH}\nActions: stop\nReasons: the traffic light says stop"
    assert description_match_reward([text], description=[TRUTH]) == [1.0]


def test_registered_with_the_description_span_and_logged_by_part():
    (func,), _ = resolve_rewards([NAME])
    assert func.__name__ == NAME and reward_span(func) == "description"
    logged = {}
    description_match_reward([format_answer(TRUTH, ACTIONS, REASONS), "junk"], description=[TRUTH, TRUTH],
                             log_metric=lambda name, value: logged.__setitem__(name, value))
    assert logged[f"{NAME}/exact"] == pytest.approx(0.5) and logged[f"{NAME}/failures"] == 0.0


def test_the_evaluation_compares_descriptions_with_the_same_words():
    said = TRUTH.replace("red", "green")
    metrics = description_metrics([said, TRUTH], [TRUTH, TRUTH])
    assert metrics["word_f1"] == pytest.approx((word_f1(description_words(said), description_words(TRUTH)) + 1) / 2)
    assert metrics["exact_match"] == 0.5


@pytest.mark.parametrize("garbage", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_outputs_never_raise(garbage):
    [value] = description_match_reward([garbage], description=[TRUTH])
    assert 0.0 <= value <= 1.0
    assert_no_scorer_failures()


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=1000), truth=st.text(max_size=200))
def test_arbitrary_text_gives_a_bounded_reward(text, truth):
    [value] = description_match_reward([text], description=[truth])
    assert 0.0 <= value <= 1.0
    assert_no_scorer_failures()
