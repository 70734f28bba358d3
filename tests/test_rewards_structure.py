"""R3 (rewards.structure): graded structure score, hand-computed terms, garbage never raises.

"Never raises" is not enough: score_each turns a scorer's exception into the floor score, so the
robustness tests also check that no scorer failed (rewards.registry.failure_counts).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import build_reward
from rewards.registry import failure_counts, reset_failure_counts
from rewards.structure import NAME, completeness, is_valid, structure_reward
from taxonomy.answer import format_answer, format_text_answer, parse_answer

PROPERTY = settings(max_examples=40, deadline=None)
ANSWER = format_answer("A red light ahead.", ["stop"], ["stop_traffic_light", "obstacle_car"])
PATHOLOGICAL = [
    None,
    "",
    "[" * 10000,
    '{"a":' * 5000,
    "{" * 20000 + "}" * 20000,
    "x" * 1_000_000,
    ANSWER * 50,
    '{"reasons": ' + "[" * 900 + "]" * 900 + "}",
    '{"description": "\ud800\U0001f697", "actions": {}, "reasons": [], "justification": "\u0000"}',
    [{"role": "assistant", "content": [{"type": "text", "text": ANSWER}, {"type": "text", "text": None}]}],
    12.5,
]


@pytest.fixture(autouse=True)
def fresh_failure_counts():
    reset_failure_counts()


def assert_no_scorer_failures():
    """A failing scorer scores the floor: a bounded score alone does not prove it ran."""
    assert failure_counts().get(NAME, 0) == 0, f"the {NAME} scorer raised: {failure_counts()}"


def with_field(answer: str, **fields) -> str:
    obj = json.loads(answer)
    obj.update(fields)
    return json.dumps(obj)


def test_a_clean_canonical_answer_scores_one_even_with_a_leading_space():
    assert structure_reward([ANSWER, " " + ANSWER + "\n"]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_hand_computed_penalties():
    chatter = "Sure! "  # 5 characters once stripped ("Sure!"), plus the space kept between
    text = chatter + ANSWER
    outside = len("Sure!") / len(text.strip())
    assert structure_reward([text]) == [pytest.approx(1.0 - 0.2 * outside)]
    # two copies: half the characters are outside the first object, and a repeat (n-1)/n = 1/2
    assert structure_reward([ANSWER + ANSWER]) == [pytest.approx(1.0 - 0.2 * 0.5 - 0.3 * 0.5)]
    # three copies: 2/3 outside, repeat 2/3
    assert structure_reward([ANSWER * 3]) == [pytest.approx(1.0 - 0.2 * 2 / 3 - 0.3 * 2 / 3)]


def test_hand_computed_partial_objects():
    # only a description: parses (0.2), invalid, 1 of 4 fields (0.3 / 4), no reasons -> C = 0
    assert structure_reward(['{"description": "a road"}']) == [pytest.approx(0.2 + 0.3 / 4)]
    # an extra key breaks the schema (additionalProperties: false) but nothing else
    extra = with_field(ANSWER, confidence=0.9)
    assert not is_valid(json.loads(extra))
    assert structure_reward([extra]) == [pytest.approx(1.0 - 0.3)]
    # an empty justification: invalid (minLength 1), 3 of 4 fields, and the reasons are not named
    unjustified = with_field(ANSWER, justification="")
    assert completeness(json.loads(unjustified)) == pytest.approx(3 / 4)
    assert structure_reward([unjustified]) == [pytest.approx(0.2 + 0.3 * 3 / 4 + 0.2 * 0.5)]


def test_scores_are_graded_from_clean_to_garbage():
    chatty = "Here you go: " + ANSWER + " Hope this helps!"
    partial = with_field(ANSWER, justification="")
    text = format_text_answer("A red light ahead.", ["stop"], ["stop_traffic_light"])
    scores = structure_reward([ANSWER, chatty, ANSWER * 2, partial, text, ""])
    assert scores[0] > scores[1] > scores[2] > scores[3] > scores[4] == scores[5] == 0.0
    assert_no_scorer_failures()  # the zeros are scored, not failures


@pytest.mark.parametrize(
    "repeated",
    [
        ANSWER.replace('"actions": ', '"actions": {"forward": true}, "actions": ', 1),  # top level
        ANSWER.replace('"forward": false', '"forward": true, "forward": false', 1),  # nested
        ANSWER.replace('"reasons": ', '"reasons": [], "reasons": ', 1),
    ],
)
def test_a_repeated_key_is_not_valid(repeated):
    # json.loads keeps the last value, so the decoded object is the canonical one and validates;
    # the repeated key still makes the answer invalid
    assert parse_answer(repeated).json_object == json.loads(ANSWER)
    assert is_valid(parse_answer(repeated).json_object)
    assert structure_reward([repeated]) == [pytest.approx(1.0 - 0.3)]


def test_no_reasons_is_a_complete_answer():
    no_reasons = format_answer("An empty road.", ["forward"], [])
    assert completeness(json.loads(no_reasons)) == 1.0
    # complete and valid; no reasons means no consistency credit
    assert structure_reward([no_reasons]) == [pytest.approx(1.0 - 0.2)]
    assert completeness({"description": "d", "actions": {}, "reasons": [], "justification": "j"}) == 0.75


def test_inconsistent_reasons_lower_the_score():
    contradictory = format_answer("A red light.", ["left"], ["solid_line_left"])
    assert structure_reward([contradictory]) == [pytest.approx(1.0 - 0.2 * 0.5)]


def test_weights_are_configurable_and_checked():
    only_parse = build_reward(
        "structure", w_parse=1.0, w_valid=0.0, w_complete=0.0, w_consistency=0.0, w_outside=0.0, w_repeat=0.0
    )
    # an object counts once it has an answer field; "{}" alone is not an answer
    assert only_parse(['{"description": ""}', ANSWER + ANSWER, "no json", "{}"]) == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="w_repeat"):
        structure_reward([ANSWER], w_repeat=float("nan"))
    with pytest.raises(ValueError, match="w_outside"):
        structure_reward([ANSWER], w_outside=-0.1)


def test_component_means_are_logged():
    logged = {}
    structure_reward([ANSWER, "junk"], log_metric=lambda name, value: logged.__setitem__(name, value))
    assert logged["structure/parse"] == pytest.approx(0.5)
    assert logged["structure/outside"] == pytest.approx(0.5)
    assert logged["structure/failures"] == 0.0


@pytest.mark.parametrize("garbage", PATHOLOGICAL, ids=range(len(PATHOLOGICAL)))
def test_pathological_outputs_never_raise(garbage):
    [score] = structure_reward([garbage])
    assert 0.0 <= score <= 1.0
    assert_no_scorer_failures()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@PROPERTY
@given(text=st.text(max_size=2000))
def test_arbitrary_text_gives_a_bounded_reward(text):
    [score] = structure_reward([text])
    assert 0.0 <= score <= 1.0
    assert_no_scorer_failures()


@PROPERTY
@given(obj=st.dictionaries(st.sampled_from(["description", "actions", "reasons", "justification"]), json_values))
def test_arbitrary_json_objects_give_a_bounded_reward(obj):
    [score] = structure_reward([json.dumps(obj)])
    assert 0.0 <= score <= 1.0
    assert_no_scorer_failures()
