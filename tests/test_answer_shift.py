"""evaluate.answer_shift: the change in F1_all, split by whether the description changed."""

import json

import pytest

from evaluate.answer_shift import answer_shift, main
from evaluate.metrics import label_metrics
from taxonomy.labels import ACTION_KEYS, actions_to_vector


def record(clip, description, actions, reasons, truth_actions=("stop",), truth_reasons=("obstacle_car",)):
    return {"id": clip, "parsed": {"description": description, "actions": list(actions), "reasons": list(reasons)},
            "truth": {"description": "ref", "actions": list(truth_actions), "reasons": list(truth_reasons)}}


START = [record("a", "a car ahead", ["stop"], ["obstacle_car"]),
         record("b", "a clear road", ["stop"], ["obstacle_car"]),
         record("c", "a red light", ["forward"], []),
         record("d", "a clear road", ["stop"], ["obstacle_car"])]
# a: description rewritten and the action lost; b: same description, reasons lost; c: same, action fixed;
# d: nothing changes
END = [record("a", "a truck ahead", ["forward"], ["obstacle_car"]),
       record("b", "a clear road", ["stop"], []),
       record("c", "a red light", ["stop"], []),
       record("d", "a clear road", ["stop"], ["obstacle_car"])]


def act_f1_all(records):
    return label_metrics([actions_to_vector(r["truth"]["actions"]) for r in records],
                         [actions_to_vector(r["parsed"]["actions"]) for r in records], ACTION_KEYS)["f1_all"]


def test_the_action_change_is_split_by_whether_the_description_changed():
    shift = answer_shift(START, END)
    assert (shift.clips, shift.description_changed) == (4, 1)
    assert shift.labels_changed == 3 and shift.labels_changed_description_same == 2
    act = shift.f1_change["act"]
    assert act["description changed"] == pytest.approx(-1 / 4)  # clip a: F1 1 -> 0
    assert act["description same"] == pytest.approx(+1 / 4)  # clip c: F1 0 -> 1
    assert act["all"] == pytest.approx(act_f1_all(END) - act_f1_all(START))
    expl = shift.f1_change["expl"]
    assert expl["description changed"] == pytest.approx(0.0)
    assert expl["description same"] == pytest.approx(-1 / 4)  # clip b loses its only reason


def test_records_are_paired_by_id_not_by_order():
    assert answer_shift(START, list(reversed(END))) == answer_shift(START, END)


def test_evaluations_of_different_clips_are_refused():
    with pytest.raises(ValueError, match="different clips"):
        answer_shift(START, END[:3])
    with pytest.raises(ValueError, match="different clips"):
        answer_shift(START, [*END[:3], record("z", "x", [], [])])


def test_cli_pools_seeds_and_names_a_missing_folder(tmp_path, capsys):
    for name, records in (("s0", START), ("e0", END), ("s1", START), ("e1", START)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    args = ["--start", str(tmp_path / "s0"), "--end", str(tmp_path / "e0"),
            "--start", str(tmp_path / "s1"), "--end", str(tmp_path / "e1")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "8 clips; description changed on 1;" in out
    assert "| act | -0.1250 | +0.1250 | +0.0000 |" in out  # the second pair changes nothing: halves
    assert main(["--start", str(tmp_path / "s0"), "--end", str(tmp_path / "nowhere")]) == 2
    assert "nowhere/predictions.jsonl: not found" in capsys.readouterr().err
