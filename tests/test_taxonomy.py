import json

import jsonschema
import pytest

from taxonomy import answer, labels


def test_order_b_groups_match_bddoia_semantics():
    groups = [r.group for r in labels.REASONS]
    assert groups[0:3] == ["forward"] * 3
    assert groups[3:9] == ["stop"] * 6
    assert groups[9:15] == ["can_turn"] * 6
    assert groups[15:21] == ["cannot_turn"] * 6
    assert [r.action for r in labels.REASONS[9:12]] == ["left"] * 3
    assert [r.action for r in labels.REASONS[18:21]] == ["right"] * 3
    assert len(set(labels.REASON_KEYS)) == labels.NUM_REASONS == 21


def test_vectors_round_trip():
    vector = [0] * 21
    vector[2] = vector[17] = 1
    keys = labels.reasons_from_vector(vector)
    assert keys == ["green_light", "solid_line_left"]
    assert labels.reasons_to_vector(keys) == vector
    assert labels.actions_from_vector([1, 0, 0, 1, 0]) == ["forward", "right"]  # 5th "confuse" ignored


def test_custom_reason_order_from_file(tmp_path):
    reversed_order = list(reversed(labels.REASON_KEYS))
    path = tmp_path / "order.json"
    path.write_text(json.dumps(reversed_order))
    order = labels.load_reason_order(path)
    vector = [0] * 21
    vector[0] = 1  # position 0 of this file order is the last canonical reason
    assert labels.reasons_from_vector(vector, order) == ["solid_line_right"]


def test_bad_reason_order_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown reason order"):
        labels.load_reason_order("Z")
    path = tmp_path / "order.json"
    path.write_text(json.dumps(labels.REASON_KEYS[:20]))
    with pytest.raises(ValueError, match="exactly once"):
        labels.load_reason_order(path)


@pytest.mark.parametrize(
    "actions, reasons, bad",
    [
        (["forward"], ["green_light", "solid_line_left"], []),
        (["stop"], ["green_light"], ["green_light"]),  # a green light beside stop only
        (["forward", "left"], ["solid_line_left"], ["solid_line_left"]),  # cannot turn left, yet turns
        (["stop"], ["stop_traffic_light", "no_left_lane", "no_right_lane"], []),
    ],
)
def test_inconsistent_reasons(actions, reasons, bad):
    assert labels.inconsistent_reasons(actions, reasons) == bad


def test_formatted_answer_is_schema_valid_and_parses_back():
    text = answer.format_answer("A red light ahead.", ["stop"], ["stop_traffic_light", "no_right_lane"])
    obj = json.loads(text)
    jsonschema.Draft202012Validator(answer.answer_schema()).validate(obj)
    parsed = answer.parse_answer(" " + text)  # completions usually start with a space
    assert parsed.is_json and parsed.actions == {"stop"}
    assert parsed.reasons == {"stop_traffic_light", "no_right_lane"}
    assert parsed.description == "A red light ahead."
    # the justification names every reason by its readable phrase
    for key in parsed.reasons:
        assert labels.REASON_BY_KEY[key].phrase in parsed.justification


def test_text_answer_parses_to_the_same_sets():
    text = answer.format_text_answer("A clear road.", ["forward", "right"], ["road_clear", "on_right_turn_lane"])
    parsed = answer.parse_answer(text)
    assert not parsed.is_json
    assert parsed.actions == {"forward", "right"}
    assert parsed.reasons == {"road_clear", "on_right_turn_lane"}
    assert parsed.description == "A clear road."


@pytest.mark.parametrize(
    "text, actions, reasons",
    [
        # sloppy JSON fields: actions as a list, reasons with phrases in free text
        ('{"actions": ["stop", "fly"], "reasons": ["obstacle_person", "nonsense"]}', {"stop"}, {"obstacle_person"}),
        # prose with a negated action that must not count, and a reason phrase that names "turning left"
        ("I would stop/slow down; cannot turn left because of the solid line on the left.", {"stop"}, {"solid_line_left"}),
        ("Move forward: the road is clear", {"forward"}, {"road_clear"}),
        ("The front car is turning left, so turn left.", {"left"}, {"front_car_turning_left"}),
        ('garbage {"actions": {"forward": "yes"}} more', set(), set()),  # non-boolean values do not count
    ],
)
def test_sloppy_answers(text, actions, reasons):
    parsed = answer.parse_answer(text)
    assert parsed.actions == actions
    assert parsed.reasons == reasons


@pytest.mark.parametrize("garbage", ["", None, 42, "{{{{", "[" * 5000, '{"a":' * 5000, "\x00\uffff🚗", "x" * 200_000])
def test_garbage_never_raises(garbage):
    parsed = answer.parse_answer(garbage)
    assert parsed.empty


def test_json_bookkeeping_counts_outside_text_and_repeats():
    one = answer.format_answer("d", ["forward"], ["road_clear"])
    parsed = answer.parse_answer(f"Sure! {one}{one}")
    assert parsed.json_objects_found == 2
    assert parsed.text_outside_json.startswith("Sure!")


def test_truncated_json_answer_reads_its_complete_fields_only():
    full = answer.format_answer("A red light.", ["stop"], ["stop_traffic_light", "solid_line_left"])
    cut = full[: full.index("solid_line_left") + 5]  # cut inside the second reason
    parsed = answer.parse_answer(cut)
    assert not parsed.is_json  # it does not decode: no credit for valid JSON
    assert parsed.actions == {"stop"}  # the false actions are not read as mentioned words
    assert parsed.reasons == {"stop_traffic_light"}  # the cut reason is not guessed
    assert parsed.description == "A red light."


def test_nested_object_alone_is_not_an_answer():
    parsed = answer.parse_answer('{"description": "x", "actions": {"forward": true, "stop": false}, "rea')
    assert not parsed.is_json
    assert parsed.actions == {"forward"}


# --- negated actions in plain text ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, actions",
    [
        ("Actions: do not stop, move forward", {"forward"}),
        ("Don't turn left; turn right.", {"right"}),
        ("The car should not move forward. Stop.", {"stop"}),
        ("We cannot turn right, so stop/slow down.", {"stop"}),
        ("No turning left here; go forward.", {"forward"}),
        ("No left turn, turn right.", {"right"}),
        ("do not stop/slow down", set()),  # the stop phrase of taxonomy.labels
        ("shouldn't slow down, move forward", {"forward"}),  # its other half
        ("no stopping: move forward", {"forward"}),
        ("cannot turn left or right; stop", {"stop"}),  # "or" carries the negation
        ("Never move forward here, stop.", {"stop"}),
        ("It is not possible to turn left.", set()),
        ("You are not allowed to turn right.", set()),
        ("can\u2019t turn left (curly apostrophe)", set()),
        ("Stop and do not turn left.", {"stop"}),  # a negation reaches only its own action
        ("Do not stop, turn left.", {"left"}),  # "," ends it
        ("Turn left.", {"left"}),
    ],
)
def test_negated_actions_are_not_read_as_actions(text, actions):
    assert answer.parse_answer(text).actions == actions


def test_every_action_phrase_can_be_negated():
    for action in labels.ACTIONS:
        for negation in ("do not", "don't", "cannot", "should not", "never"):
            text = f"{negation} {action.phrase}"
            assert answer.parse_answer(text).actions == set(), text


# --- format faults recorded by the parser -------------------------------------------------------

CANONICAL = answer.format_answer("A red light.", ["stop"], ["stop_traffic_light", "obstacle_car"])


def faults(parsed: answer.ParsedAnswer) -> dict:
    return {
        "duplicate_keys": parsed.duplicate_keys,
        "unknown_actions": parsed.unknown_actions,
        "unknown_reasons": parsed.unknown_reasons,
        "duplicate_reasons": parsed.duplicate_reasons,
        "truncated": parsed.truncated,
    }


NO_FAULTS = {"duplicate_keys": 0, "unknown_actions": 0, "unknown_reasons": 0, "duplicate_reasons": 0,
             "truncated": False}


def edited(**fields) -> str:
    return json.dumps({**json.loads(CANONICAL), **fields})


def test_the_canonical_answer_is_clean():
    parsed = answer.parse_answer(" " + CANONICAL + "\n")
    assert faults(parsed) == NO_FAULTS
    assert parsed.schema_valid and parsed.clean


@pytest.mark.parametrize(
    "text, expected",
    [
        # repeated keys at any depth (json.loads keeps the last, silently)
        (CANONICAL.replace('"actions": ', '"actions": {"forward": true}, "actions": ', 1), {"duplicate_keys": 1}),
        (CANONICAL.replace('"stop": true', '"stop": false, "stop": true, "stop": true', 1), {"duplicate_keys": 2}),
        (CANONICAL.replace('"actions": ', '"actions": {"left": true, "left": true}, "actions": ', 1),
         {"duplicate_keys": 2}),  # the dropped object's own repeat counts too
        # label lists off the vocabulary
        (edited(reasons=["obstacle_car", "obstacle_car", "stop_traffic_light"]), {"duplicate_reasons": 1}),
        (edited(reasons=["obstacle_car", "made_up", 3, None]), {"unknown_reasons": 3}),
        (edited(actions={"forward": False, "stop": True, "left": False, "right": False, "reverse": True}),
         {"unknown_actions": 1}),
        (edited(actions=["stop", "hover"]), {"unknown_actions": 1}),
    ],
)
def test_format_faults_are_counted(text, expected):
    parsed = answer.parse_answer(text)
    assert faults(parsed) == {**NO_FAULTS, **expected}
    assert parsed.is_json and not parsed.schema_valid and not parsed.clean
    assert parsed.reasons <= {"obstacle_car", "stop_traffic_light"}  # unknown entries are not read


def test_a_cut_off_answer_is_truncated_and_its_lists_are_checked():
    text = edited(reasons=["obstacle_car", "obstacle_car", "nope"])
    parsed = answer.parse_answer(text[: text.index('"justification"')])
    assert parsed.truncated and not parsed.is_json and not parsed.clean
    assert (parsed.duplicate_reasons, parsed.unknown_reasons) == (1, 1)
    assert parsed.justification == ""  # cut before it: nothing salvaged
    cut_in_actions = answer.parse_answer(CANONICAL.replace('"stop": true', '"stop": true, "stop": true')[:-1])
    assert cut_in_actions.truncated and cut_in_actions.duplicate_keys == 1


@pytest.mark.parametrize(
    "text",
    [
        "Sure: " + CANONICAL,
        CANONICAL + CANONICAL,
        "```json\n" + CANONICAL + "\n```",
        edited(justification="  "),  # schema-valid (minLength counts spaces), yet says nothing
        edited(description=""),
    ],
)
def test_clean_means_one_valid_object_and_nothing_else(text):
    parsed = answer.parse_answer(text)
    assert parsed.is_json and not parsed.clean


def test_plain_text_is_neither_truncated_nor_clean():
    parsed = answer.parse_answer(answer.format_text_answer("A road.", ["forward"], ["road_clear"]))
    assert not parsed.truncated and not parsed.schema_valid and not parsed.clean
