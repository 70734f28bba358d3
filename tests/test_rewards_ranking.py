"""The truthful, complete, schema-valid answer ranks strictly first under R2, R3 and stage 3's mix.

For several truths, every malformation of the canonical answer (same true labels, broken form)
must score strictly below the canonical answer under R2 (action_reasoning), R3 (structure) and
R3 + 0.5 * R2 (stage 3's reward weights), with default parameters. A tie is a loophole: GRPO gets
no signal to leave it, and a cheaper malformed form (cut off, no justification) drifts in.
"""

from __future__ import annotations

import json
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.action_reasoning import action_reasoning_reward
from rewards.registry import failure_counts, reset_failure_counts
from rewards.structure import structure_reward
from taxonomy.answer import format_answer, format_text_answer
from taxonomy.labels import ACTION_KEYS, REASON_BY_KEY, REASON_KEYS, actions_to_vector, reasons_to_vector

# Stage 3's reward weights for R3 and R2 (recipes/stage3/stage3.yaml: reward_weights [1.0, 0.5]).
STAGE3_R3_WEIGHT, STAGE3_R2_WEIGHT = 1.0, 0.5

# (name, description, actions, reasons): a stop, a forward, a turn, no reasons, a right turn.
TRUTHS = [
    ("stop", "Cars wait at a red light.", ["stop"], ["obstacle_car", "stop_traffic_light", "solid_line_left"]),
    ("forward", "A green light on an open road.", ["forward"], ["green_light", "road_clear"]),
    ("left_turn", "A left-turn lane at a junction.", ["forward", "left"],
     ["follow_traffic", "on_left_turn_lane", "solid_line_right"]),
    ("no_reasons", "An empty road.", ["forward"], []),
    ("right_turn", "A pedestrian ahead; the arrow is green.", ["stop", "right"],
     ["obstacle_person", "light_allows_right", "no_left_lane"]),
]


def canonical(truth) -> str:
    _, description, actions, reasons = truth
    return format_answer(description, actions, reasons)


def dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)  # as format_answer writes it


Malformation = Callable[[dict, str], "str | None"]  # (canonical object, canonical text) -> text
DROP = object()  # a field value meaning "leave the field out"


def replaced(**fields) -> Malformation:
    """A malformation that replaces (or, with value ``DROP``, removes) top-level fields."""

    def make(obj: dict, text: str) -> str:
        return dumps({k: v for k, v in {**obj, **fields}.items() if v is not DROP})

    return make


def edited(field: str, value_of: Callable[[dict], object]) -> Malformation:
    """A malformation that sets one top-level field to ``value_of(canonical object)``."""
    return lambda obj, text: dumps({**obj, field: value_of(obj)})


def repeated_key(key: str, decoy_of: Callable[[dict], object]) -> Malformation:
    """The key written twice, a decoy value first and the true one last (json.loads keeps it).

    The first ``"key": `` in the canonical text is the top-level one for the top-level keys and
    the actions object's own for an action key.
    """
    return lambda obj, text: text.replace(f'"{key}": ', f'"{key}": {json.dumps(decoy_of(obj))}, "{key}": ', 1)


def flipped_actions(obj: dict) -> dict:
    return {k: not v for k, v in obj["actions"].items()}


def only_with_reasons(make: Malformation) -> Malformation:
    """A malformation that needs listed reasons (None, not applicable, for a truth without any)."""
    return lambda obj, text: make(obj, text) if obj["reasons"] else None


def as_text(obj: dict, text: str) -> str:
    actions = [k for k, v in obj["actions"].items() if v]
    return format_text_answer(obj["description"], actions, obj["reasons"])


# name -> how to make the malformation from (the canonical object, the canonical text).
MALFORMATIONS: dict[str, Malformation] = {
    # cut off (see also test_every_prefix_scores_below_the_complete_answer)
    "truncated_before_justification": lambda obj, text: text[: text.index('"justification"')],
    "truncated_inside_justification": lambda obj, text: text[: text.index('"justification"') + 25],
    "truncated_before_last_brace": lambda obj, text: text[:-1],
    "truncated_after_reasons_list": lambda obj, text: text[: text.index("]") + 1],
    # another format, or more than the one object
    "plain_text": as_text,
    "two_objects_same": lambda obj, text: text + text,
    "two_objects_second_different": lambda obj, text: text + edited("actions", flipped_actions)(obj, text),
    "two_objects_decoy_first": lambda obj, text: edited("actions", flipped_actions)(obj, text) + text,
    "stray_braces_before": lambda obj, text: "{} " + text,
    "text_before": lambda obj, text: "Sure! Here is my answer: " + text,
    "text_after": lambda obj, text: text + " Hope this helps!",
    "markdown_fence": lambda obj, text: "```json\n" + text + "\n```",
    "wrapped_in_array": lambda obj, text: "[" + text + "]",
    "nested_under_key": lambda obj, text: '{"answer": ' + text + "}",
    "runaway_tail": lambda obj, text: text + " " + obj["justification"] * 3,
    "trailing_comma": lambda obj, text: text[:-1] + ", }",
    "python_dict_repr": lambda obj, text: repr(obj),
    # repeated JSON keys (json.loads keeps the last silently: here the true value)
    "repeated_actions_key_same": repeated_key("actions", lambda obj: obj["actions"]),
    "repeated_actions_key_decoy": repeated_key("actions", flipped_actions),
    "repeated_nested_action_key": repeated_key("forward", lambda obj: not obj["actions"]["forward"]),
    "repeated_description_key": repeated_key("description", lambda obj: "A decoy description."),
    "repeated_reasons_key": repeated_key("reasons", lambda obj: ["road_clear"]),
    "repeated_justification_key": repeated_key("justification", lambda obj: "A decoy justification."),
    # label lists off the vocabulary or the schema
    "duplicated_reason": only_with_reasons(edited("reasons", lambda obj: obj["reasons"] + obj["reasons"][:1])),
    "invented_reason": edited("reasons", lambda obj: obj["reasons"] + ["made_up_reason"]),
    "reason_phrases_not_keys": only_with_reasons(
        edited("reasons", lambda obj: [REASON_BY_KEY[k].phrase for k in obj["reasons"]])
    ),
    "reasons_as_one_string": edited("reasons", lambda obj: ", ".join(obj["reasons"])),
    "non_string_reason": edited("reasons", lambda obj: obj["reasons"] + [7]),
    "unknown_action_key": edited("actions", lambda obj: {**obj["actions"], "reverse": False}),
    "actions_as_strings": edited("actions", lambda obj: {k: json.dumps(v) for k, v in obj["actions"].items()}),
    "actions_as_list": edited("actions", lambda obj: [k for k, v in obj["actions"].items() if v]),
    "action_missing": edited("actions", lambda obj: {k: obj["actions"][k] for k in ACTION_KEYS[:-1]}),
    # fields missing, empty, or of the wrong type
    "missing_description": replaced(description=DROP),
    "missing_actions": replaced(actions=DROP),
    "missing_reasons": replaced(reasons=DROP),
    "missing_justification": replaced(justification=DROP),
    "empty_description": replaced(description=""),
    "empty_justification": replaced(justification=""),
    "blank_justification": replaced(justification="   "),
    "null_justification": replaced(justification=None),
    "extra_field": replaced(confidence=0.9),
    # a justification that does not name the reasons (nothing to name without reasons)
    "justification_not_naming_reasons": only_with_reasons(replaced(justification="It seems right to me.")),
}


def truth_columns(actions, reasons, n):
    return {"actions": [actions_to_vector(actions)] * n, "reasons": [reasons_to_vector(reasons)] * n}


def scores(texts: list[str], actions, reasons) -> dict[str, list[float]]:
    """R2, R3 and stage 3's R3 + 0.5 * R2 of each text, with default parameters.

    A scorer that raised would score the floor and pass a "lower" check for the wrong reason:
    no failure is allowed.
    """
    reset_failure_counts()
    r2 = action_reasoning_reward(texts, **truth_columns(actions, reasons, len(texts)))
    r3 = structure_reward(texts)
    assert failure_counts() == {}, f"a scorer raised: {failure_counts()}"
    stage3 = [STAGE3_R3_WEIGHT * a + STAGE3_R2_WEIGHT * b for a, b in zip(r3, r2)]
    return {"R2": r2, "R3": r3, "R3+0.5*R2": stage3}


def test_there_are_enough_malformation_classes():
    assert len(MALFORMATIONS) >= 15


@pytest.mark.parametrize("truth", TRUTHS, ids=[t[0] for t in TRUTHS])
@pytest.mark.parametrize("malformation", list(MALFORMATIONS))
def test_every_malformation_scores_below_the_canonical_answer(truth, malformation):
    _, _, actions, reasons = truth
    text = canonical(truth)
    bad = MALFORMATIONS[malformation](json.loads(text), text)
    if bad is None:
        pytest.skip(f"{malformation} does not apply to a truth without reasons")
    assert bad != text
    by_reward = scores([text, bad], actions, reasons)
    for reward, (good, worse) in by_reward.items():
        assert worse < good, f"{reward}: {malformation} scores {worse} >= canonical {good}"


@settings(max_examples=25, deadline=None)
@given(
    # at least one action: an answer with no action and no reason reads as empty, R2's minimum
    actions=st.sets(st.sampled_from(ACTION_KEYS), min_size=1),
    reasons=st.sets(st.sampled_from(REASON_KEYS), max_size=5),
    description=st.sampled_from(["A street.", "Rain; a bus turns left ahead.", "Night, wet road"]),
)
def test_every_malformation_scores_below_the_canonical_answer_for_any_labels(actions, reasons, description):
    """The same ranking over label sets drawn from the taxonomy, inconsistent ones included."""
    truth = ("drawn", description, sorted(actions), sorted(reasons))
    text = canonical(truth)
    rows = {name: make(json.loads(text), text) for name, make in MALFORMATIONS.items()}
    rows = {name: bad for name, bad in rows.items() if bad is not None}
    by_reward = scores([text, *rows.values()], actions, reasons)
    for reward, (good, *worse) in by_reward.items():
        tied = [name for name, score in zip(rows, worse) if score >= good]
        assert not tied, f"{reward}: {tied} reach the canonical answer's {good}"


@pytest.mark.parametrize("truth", TRUTHS, ids=[t[0] for t in TRUTHS])
def test_every_prefix_scores_below_the_complete_answer(truth):
    _, _, actions, reasons = truth
    text = canonical(truth)
    prefixes = [text[:end] for end in range(len(text))]
    by_reward = scores([text, *prefixes], actions, reasons)
    for reward, (good, *cut) in by_reward.items():
        offenders = [(len(p), s) for p, s in zip(prefixes, cut) if s >= good]
        assert not offenders, f"{reward}: (prefix length, score) reach the full {good}: {offenders[:5]}"


# (truth name, wrong actions, wrong reasons): one action or reason off, or another scene entirely.
WRONG_LABELS = [
    ("stop", ["forward"], ["green_light", "road_clear"]),
    ("stop", ["stop"], ["obstacle_car", "stop_traffic_light"]),
    ("forward", ["forward", "stop"], ["green_light", "road_clear"]),
    ("left_turn", ["forward"], ["follow_traffic", "solid_line_right"]),
    ("no_reasons", ["forward"], ["road_clear"]),
    ("no_reasons", ["stop"], []),
    ("right_turn", ["stop"], ["obstacle_person", "no_left_lane"]),
]


@pytest.mark.parametrize("name, wrong_actions, wrong_reasons", WRONG_LABELS)
def test_right_labels_beat_wrong_labels_in_the_same_clean_form(name, wrong_actions, wrong_reasons):
    truth = next(t for t in TRUTHS if t[0] == name)
    _, description, actions, reasons = truth
    wrong = format_answer(description, wrong_actions, wrong_reasons)
    [right_score, wrong_score] = scores([canonical(truth), wrong], actions, reasons)["R2"]
    assert right_score > wrong_score


@pytest.mark.parametrize("truth", TRUTHS, ids=[t[0] for t in TRUTHS])
def test_labels_outweigh_form_under_r2(truth):
    """The right labels in plain text beat a clean JSON answer with the opposite actions and no
    reasons: the format factor does not turn R2 into a format reward."""
    _, description, actions, reasons = truth
    malformed_right = format_text_answer(description, actions, reasons)
    other_actions = [k for k in ACTION_KEYS if k not in actions]
    clean_wrong = format_answer(description, other_actions, [])
    [right_score, wrong_score] = scores([malformed_right, clean_wrong], actions, reasons)["R2"]
    assert right_score > wrong_score
