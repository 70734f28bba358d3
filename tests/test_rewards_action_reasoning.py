"""R2 (rewards.action_reasoning): hand-computed values, gaming attempts, garbage never raises.

"Never raises" is not enough: score_each turns a scorer's exception into the floor score, so the
robustness tests also check that no scorer failed (rewards.registry.failure_counts).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import build_reward
from rewards.action_reasoning import NAME, action_reasoning_reward, consistency, set_f1
from rewards.registry import failure_counts, reset_failure_counts
from taxonomy.answer import format_answer, format_text_answer, parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS, actions_to_vector, reasons_to_vector

PROPERTY = settings(max_examples=40, deadline=None)
PATHOLOGICAL = [
    None,
    "",
    "   ",
    "[" * 10000,
    '{"a":' * 5000,
    "{" * 20000 + "}" * 20000,
    "x" * 1_000_000,
    '{"actions": ' * 3000 + "1" + "}" * 3000,
    "\u202e\U0001f697\x00\ud800 move forward \u0000",
    '{"actions": {"forward": "yes"}, "reasons": "green_light" }',
    '{"actions": [1, 2], "reasons": [[["road_clear"]]], "justification": 5}',
    [{"role": "assistant", "content": None}],
    [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": None}]}],
    [{"role": "assistant"}],
    {"content": "stop"},
    [[[[]]]],
    12345,
    b"bytes",
]


@pytest.fixture(autouse=True)
def fresh_failure_counts():
    reset_failure_counts()


def assert_no_scorer_failures():
    """A failing scorer scores the floor: a bounded (or minimal) score alone does not prove it ran."""
    assert failure_counts().get(NAME, 0) == 0, f"the {NAME} scorer raised: {failure_counts()}"


def truth_columns(actions, reasons, n=1):
    return {
        "actions": [actions_to_vector(actions)] * n,
        "reasons": [reasons_to_vector(reasons)] * n,
    }


def r2(completions, actions, reasons, **params):
    columns = truth_columns(actions, reasons, len(completions))
    return action_reasoning_reward(completions, **columns, **params)


def with_field(answer: str, **fields) -> str:
    obj = json.loads(answer)
    obj.update(fields)
    return json.dumps(obj)


def test_set_f1_by_hand():
    assert set_f1({"a", "b"}, {"b"}) == pytest.approx(2 / 3)
    assert set_f1(set(), {"a"}) == 0.0
    assert set_f1(set(), set()) == 1.0
    assert set_f1(set(), set(), empty_match=0.0) == 0.0


def test_the_truth_scores_one():
    actions, reasons = ["stop"], ["obstacle_car", "stop_traffic_light", "solid_line_left"]
    answer = format_answer("Cars wait at a red light.", actions, reasons)
    assert r2([answer], actions, reasons) == [pytest.approx(1.0)]


def test_hand_computed_partial_answer():
    # predicted: actions {stop}, reasons {obstacle_car, stop_traffic_light}; truth: {stop}, {stop_traffic_light}
    answer = format_answer("A red light.", ["stop"], ["obstacle_car", "stop_traffic_light"])
    # actions F1 1, reasons F1 2*1/(2+1), consistency: both reasons support stop and are named -> 1
    expected = 0.4 * 1 + 0.4 * (2 / 3) + 0.2 * 1
    assert r2([answer], ["stop"], ["stop_traffic_light"]) == [pytest.approx(expected)]


def test_inconsistent_and_unnamed_reasons_lower_consistency_by_hand():
    # "green light" supports forward, but only "stop" is predicted: half of C's logic part is lost
    answer = format_answer("A street.", ["stop"], ["green_light", "obstacle_car"])
    parsed = parse_answer(answer)
    assert consistency(parsed) == pytest.approx(0.5 * (1 - 1 / 2) + 0.5 * 1)
    # a justification that names neither reason loses the naming part
    vague = with_field(answer, justification="Because I said so.")
    assert consistency(parse_answer(vague)) == pytest.approx(0.5 * 0.5 + 0.5 * 0)
    # naming by key counts too, and only the reasons named count
    by_key = with_field(answer, justification="obstacle_car ahead")
    assert consistency(parse_answer(by_key)) == pytest.approx(0.5 * 0.5 + 0.5 * (1 / 2))
    # logic_share is a parameter
    assert consistency(parse_answer(vague), logic_share=1.0) == pytest.approx(0.5)


def test_no_reasons_means_no_consistency():
    answer = format_answer("An empty road.", ["forward"], [])
    assert consistency(parse_answer(answer)) == 0.0
    # truth with no reasons: both reason sets empty -> reasons F1 = empty_match_f1 (1 by default)
    assert r2([answer], ["forward"], []) == [pytest.approx(0.4 + 0.4)]
    assert r2([answer], ["forward"], [], empty_match_f1=0.0) == [pytest.approx(0.4)]


def test_listing_every_class_scores_lower_than_the_truth():
    actions, reasons = ["forward"], ["green_light", "road_clear"]
    truth_answer = format_answer("Green light.", actions, reasons)
    everything = format_answer("Anything.", ACTION_KEYS, REASON_KEYS)
    every_phrase = " ".join(list(ACTION_KEYS) + list(REASON_KEYS))
    scores = r2([truth_answer, everything, every_phrase], actions, reasons)
    assert scores[0] > scores[1] + 0.4
    assert scores[0] > scores[2] + 0.4


@pytest.mark.parametrize("garbage", ["", "   ", "I cannot tell.", "{}", '{"description": "a road"}', None])
def test_empty_or_unparseable_answers_get_the_minimum(garbage):
    assert r2([garbage], ["forward"], []) == [0.0]
    assert_no_scorer_failures()


def test_sloppy_but_readable_answers_still_score_below_the_clean_answer():
    actions, reasons = ["left"], ["on_left_turn_lane"]
    text = format_text_answer("A turn lane.", actions, reasons)
    exact = format_answer("A turn lane.", actions, reasons)
    chatty = "Sure! Here is my answer:\n```json\n" + exact + "\n```"
    scores = r2([" " + exact, text, chatty], actions, reasons)
    assert scores[0] == pytest.approx(1.0)  # surrounding whitespace is not text outside
    # right labels, fully named (the text answer names its reasons in its own text): all but the
    # format factor, 1 - w_format
    assert scores[1] == pytest.approx(1.0 - 0.2)
    assert scores[2] == pytest.approx(1.0 - 0.2)


def test_the_format_factor_by_hand():
    actions, reasons = ["stop"], ["obstacle_car"]
    text = format_text_answer("A car ahead.", actions, reasons)
    assert r2([text], actions, reasons, w_format=0.0) == [pytest.approx(1.0)]
    assert r2([text], actions, reasons, w_format=0.5) == [pytest.approx(0.5)]
    assert r2([text], actions, reasons, w_format=1.0) == [0.0]
    # the factor scales the label score: wrong labels in the wrong form lose both ways
    wrong = format_text_answer("A car ahead.", ["forward"], ["obstacle_car"])  # actions F1 0, C 1/2
    assert r2([wrong], actions, reasons) == [pytest.approx((0.4 * 1 + 0.2 * 0.5) * 0.8)]
    with pytest.raises(ValueError, match="w_format"):
        r2([text], actions, reasons, w_format=1.5)
    with pytest.raises(ValueError, match="w_format"):
        r2([text], actions, reasons, w_format=-0.1)


@pytest.mark.parametrize(
    "gamed",
    [
        "duplicated_reason",
        "invented_reason",
        "repeated_actions_key",
        "repeated_nested_key",
    ],
)
def test_padded_or_repeated_keys_cost_the_format_factor(gamed):
    actions, reasons = ["stop"], ["obstacle_car", "stop_traffic_light"]
    answer = format_answer("A red light.", actions, reasons)
    variants = {
        "duplicated_reason": with_field(answer, reasons=reasons + ["obstacle_car"]),
        "invented_reason": with_field(answer, reasons=reasons + ["red_light_nearby"]),
        "repeated_actions_key": answer.replace('"actions": ', '"actions": {"forward": true}, "actions": ', 1),
        "repeated_nested_key": answer.replace('"stop": true', '"stop": false, "stop": true', 1),
    }
    # the same label sets are read, fully named and consistent: only the format factor differs
    assert parse_answer(variants[gamed]).reasons == set(reasons)
    assert r2([answer, variants[gamed]], actions, reasons) == [pytest.approx(1.0), pytest.approx(0.8)]


def test_a_cut_off_answer_gets_no_credit_for_a_justification_it_lost():
    actions, reasons = ["stop"], ["obstacle_car", "stop_traffic_light"]
    answer = format_answer("A red light.", actions, reasons)
    cut = answer[: answer.index('"justification"') + len('"justification": "Sto')]
    # actions and reasons are complete; the justification was cut, so nothing is named: C = 1/2
    assert r2([cut], actions, reasons) == [pytest.approx((0.4 + 0.4 + 0.2 * 0.5) * 0.8)]
    # cut after the justification (only the closing brace lost): all named, only the factor lost
    assert r2([answer[:-1]], actions, reasons) == [pytest.approx(0.8)]


def test_conversational_and_string_completions_score_the_same():
    answer = format_answer("A road.", ["forward"], ["road_clear"])
    conversational = [
        [{"role": "assistant", "content": answer}],
        [{"role": "assistant", "content": [
            {"type": "text", "text": answer[:30]}, {"type": "text", "text": answer[30:]}
        ]}],
    ]
    scores = r2([answer, *conversational], ["forward"], ["road_clear", "follow_traffic"])
    assert scores[0] == pytest.approx(scores[1]) == pytest.approx(scores[2])
    assert 0 < scores[0] < 1


def test_weights_are_configurable_through_the_registry():
    answer = format_answer("A road.", ["forward", "stop"], ["road_clear"])
    columns = truth_columns(["forward"], ["road_clear"])
    only_actions = build_reward("action_reasoning", w_actions=1.0, w_reasons=0.0, w_consistency=0.0)
    only_reasons = build_reward("action_reasoning", w_actions=0.0, w_reasons=1.0, w_consistency=0.0)
    assert only_actions([answer], **columns) == [pytest.approx(2 / 3)]
    assert only_reasons([answer], **columns) == [pytest.approx(1.0)]
    with pytest.raises(ValueError, match="w_reasons"):
        action_reasoning_reward([answer], **columns, w_reasons=-1)
    with pytest.raises(ValueError, match="all weights are 0"):
        action_reasoning_reward([answer], **columns, w_actions=0, w_reasons=0, w_consistency=0)


def test_trl_call_signature_and_component_logging():
    answer = format_answer("A road.", ["forward"], ["road_clear"])
    logged = {}
    scores = action_reasoning_reward(
        prompts=[[{"role": "user", "content": [{"type": "image"}]}]] * 2,
        completions=[answer, ""],
        completion_ids=[[1, 2], [3]],
        id=["synth-000001", "synth-000002"],
        images=[[None], [None]],
        trainer_state=object(),
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: logged.__setitem__(name, value),
        **truth_columns(["forward"], ["road_clear"], 2),
    )
    assert scores == [pytest.approx(1.0), 0.0]
    assert logged["action_reasoning/actions_f1"] == pytest.approx(0.5)
    assert logged["action_reasoning/consistency"] == pytest.approx(0.5)
    assert logged["action_reasoning/format"] == pytest.approx(0.5)
    assert logged["action_reasoning/failures"] == 0.0


def test_missing_or_malformed_truth_is_a_clear_configuration_error():
    with pytest.raises(ValueError, match="'reasons'"):
        action_reasoning_reward(["x"], actions=[[1, 0, 0, 0]])
    with pytest.raises(ValueError, match="synth-7"):
        action_reasoning_reward(["x"], actions=[[1, 0, 0]], reasons=[[0] * 21], id=["synth-7"])
    with pytest.raises(ValueError, match="2 entries for 1 completions"):
        action_reasoning_reward(["x"], actions=[[1, 0, 0, 0]] * 2, reasons=[[0] * 21])
    # key lists and BDD-OIA's 5-entry action vector (with "confuse") are accepted
    answer = format_answer("A road.", ["forward"], ["road_clear"])
    assert action_reasoning_reward([answer], actions=[[1, 0, 0, 0, 0]], reasons=[["road_clear"]]) == [
        pytest.approx(1.0)
    ]


@pytest.mark.parametrize("garbage", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_outputs_never_raise(garbage):
    scores = r2([garbage], ["forward"], ["road_clear"])
    assert len(scores) == 1 and 0.0 <= scores[0] <= 1.0
    assert_no_scorer_failures()


FIELDS = st.sampled_from(["description", "actions", "reasons", "justification", "x"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.sampled_from(REASON_KEYS + ACTION_KEYS),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@PROPERTY
@given(text=st.text(max_size=2000))
def test_arbitrary_text_gives_a_bounded_reward(text):
    [score] = r2([text], ["stop"], ["obstacle_car"])
    assert 0.0 <= score <= 1.0
    assert_no_scorer_failures()


@PROPERTY
@given(obj=st.dictionaries(FIELDS, json_values))
def test_arbitrary_json_objects_give_a_bounded_reward(obj):
    [score] = r2([json.dumps(obj)], ["stop"], ["obstacle_car"])
    assert 0.0 <= score <= 1.0
    assert_no_scorer_failures()


@PROPERTY
@given(completion=json_values)
def test_arbitrary_completion_structures_give_a_bounded_reward(completion):
    [score] = r2([completion], ["stop"], ["obstacle_car"])
    assert 0.0 <= score <= 1.0
    assert_no_scorer_failures()


# ---------------------------------------------------------------------------------------------
# Label weights (AlphaDrive's action weights): a rare label missed costs more


def test_weighted_f1_by_hand():
    from rewards.action_reasoning import set_f1

    # P = {forward, left}, T = {forward, right}; weights left 3, right 3:
    # 2 * w({forward}) / (w(P) + w(T)) = 2 * 1 / (4 + 4)
    assert set_f1({"forward", "left"}, {"forward", "right"}, weights={"left": 3, "right": 3}) == pytest.approx(0.25)
    assert set_f1({"forward", "left"}, {"forward", "right"}) == pytest.approx(0.5)  # unweighted


def test_label_weights_make_a_missed_rare_label_cost_more_than_a_missed_frequent_one():
    truth = {"actions": [[1, 0, 1, 0]], "reasons": [[0] * 21]}
    missed_left = format_answer("a road", ["forward"], [])
    missed_forward = format_answer("a road", ["left"], [])
    plain = [action_reasoning_reward([a], **truth)[0] for a in (missed_left, missed_forward)]
    assert plain[0] == pytest.approx(plain[1])
    weighted = [action_reasoning_reward([a], label_weights={"left": 4.0}, **truth)[0] for a in (missed_left, missed_forward)]
    assert weighted[0] < weighted[1]


@pytest.mark.parametrize("bad", [{"lefty": 2.0}, {"left": 0.0}, {"left": float("inf")}, {"left": True}, [1, 2]])
def test_bad_label_weights_are_an_error_naming_the_key(bad):
    with pytest.raises(ValueError, match="label_weights"):
        action_reasoning_reward(["x"], label_weights=bad, actions=[[1, 0, 0, 0]], reasons=[[0] * 21])


def _expected_reward_of_naming_right(belief: float, **params) -> tuple[float, float]:
    """Expected R2 of answering {forward, right} and of answering {forward} when "right" is true
    with probability ``belief`` (forward always true)."""
    truths = {True: {"actions": [[1, 0, 0, 1]], "reasons": [[0] * 21]},
              False: {"actions": [[1, 0, 0, 0]], "reasons": [[0] * 21]}}
    answers = {"name": format_answer("a road", ["forward", "right"], []), "omit": format_answer("a road", ["forward"], [])}
    expected = {}
    for key, answer in answers.items():
        scores = {truth: action_reasoning_reward([answer], **params, **columns)[0] for truth, columns in truths.items()}
        expected[key] = belief * scores[True] + (1 - belief) * scores[False]
    return expected["name"], expected["omit"]


@pytest.mark.parametrize("belief", [0.38, 0.45])
def test_symmetric_label_weights_do_not_make_an_unsure_rare_label_pay(belief):
    named, omitted = _expected_reward_of_naming_right(belief, label_weights={"right": 4.0})
    assert named < omitted


@pytest.mark.parametrize("belief", [0.38, 0.45])
def test_a_cheap_false_alarm_makes_naming_a_likely_rare_label_pay(belief):
    named, omitted = _expected_reward_of_naming_right(belief, label_weights={"right": 4.0}, false_alarm_weight=1.0)
    assert named > omitted


def test_a_cheap_false_alarm_still_costs_and_listing_every_label_does_not_pay():
    truth = {"actions": [[1, 0, 0, 0]], "reasons": [[0] * 21]}
    params = {"label_weights": {"left": 4.0, "right": 4.0}, "false_alarm_weight": 1.0}
    right_answer, one_alarm, every_label = (action_reasoning_reward([format_answer("a road", a, [])], **params, **truth)[0]
                                            for a in (["forward"], ["forward", "right"], ["forward", "stop", "left", "right"]))
    assert right_answer > one_alarm > every_label


def test_false_alarm_weight_none_is_the_label_weight():
    assert set_f1({"forward", "right"}, {"forward"}, weights={"right": 4.0}) == pytest.approx(1 / 3)
    assert set_f1({"forward", "right"}, {"forward"}, weights={"right": 4.0}, false_alarm_weight=1.0) == pytest.approx(2 / 3)
    assert set_f1({"right"}, set(), false_alarm_weight=0.0) == 0.0  # nothing true, only a free alarm: no hit, F1 0


@pytest.mark.parametrize("bad", [-1.0, float("inf"), "1", True])
def test_bad_false_alarm_weight_is_an_error_naming_it(bad):
    with pytest.raises(ValueError, match="false_alarm_weight"):
        action_reasoning_reward(["x"], false_alarm_weight=bad, actions=[[1, 0, 0, 0]], reasons=[[0] * 21])
