"""The label audit tells the released order B from shuffled orders."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_prep.audit import GROUP_INDEX, LabelStats, audit, exclusive_pairs, main
from data_prep.synth import load_truth
from taxonomy.labels import REASON_BY_KEY, REASON_KEYS, reasons_to_vector

SPLITS = ("train", "val", "test")


def group(key: str) -> tuple[str, str]:
    return REASON_BY_KEY[key].action, REASON_BY_KEY[key].effect


def write_reasons_in_order(root: Path, order) -> None:
    """Rewrite the reason files so that file position i holds canonical reason order[i]."""
    truth = {t.id: t for t in load_truth(root)}
    for split in SPLITS:
        path = root / f"{split}_25k_images_reasons.json"
        entries = json.loads(path.read_text())
        for e in entries:
            canonical = truth[Path(e["file_name"]).stem].reasons
            e["reason"] = reasons_to_vector([k for k, v in zip(REASON_KEYS, canonical) if v], order)
        path.write_text(json.dumps(entries))


@pytest.fixture
def world(small_synth_world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(small_synth_world, root, ignore=shutil.ignore_patterns("clips", "videos", "data"))
    return root


def test_order_b_fits_the_synthetic_annotations(small_synth_world):
    report = audit(small_synth_world)
    b = report.candidate("B")
    assert b.fits and b.z >= report.min_z and b.bad_positions == []
    assert b.conflicts == 0.0 < report.null_conflicts_median
    assert "order B fits" in report.verdict()


def test_a_shuffled_file_order_is_rejected_and_recognised_from_its_file(world, tmp_path):
    shuffled = list(REASON_KEYS)
    random.Random(5).shuffle(shuffled)
    moved = sum(group(a) != group(b) for a, b in zip(shuffled, REASON_KEYS))
    assert moved >= 10  # the shuffle really changes what most positions mean
    write_reasons_in_order(world, shuffled)
    order_file = tmp_path / "shuffled.json"
    order_file.write_text(json.dumps(shuffled))

    report = audit(world, [order_file])
    b, given = report.candidate("B"), report.candidate(str(order_file))
    assert not b.fits and b.verdict == "does not fit"
    assert given.fits and given.score > b.score
    assert str(order_file) in report.verdict()


def test_two_swapped_positions_are_pointed_at(world):
    swapped = list(REASON_KEYS)
    i, j = REASON_KEYS.index("green_light"), REASON_KEYS.index("no_left_lane")
    swapped[i], swapped[j] = swapped[j], swapped[i]
    write_reasons_in_order(world, swapped)
    b = audit(world).candidate("B")
    assert not b.fits and i in b.bad_positions


def test_agreement_and_conflicts_on_hand_made_labels():
    # 4 samples; position 10 (on_left_turn_lane) set exactly when "left" holds, position 16
    # (no_left_lane) set exactly when it does not; sample 3 also sets both (a conflict).
    actions = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0]])
    reasons = np.zeros((4, 21), dtype=int)
    left_lane, no_left = REASON_KEYS.index("on_left_turn_lane"), REASON_KEYS.index("no_left_lane")
    reasons[[0, 2], left_lane] = 1
    reasons[[1, 3], no_left] = 1
    stats = LabelStats.from_vectors(actions, reasons, min_count=1)
    assert stats.agreement[left_lane, GROUP_INDEX[("left", "supports")]] == 1.0
    assert stats.agreement[no_left, GROUP_INDEX[("left", "rules_out")]] == 1.0
    assert stats.agreement[no_left, GROUP_INDEX[("left", "supports")]] == -1.0
    assert stats.conflicts_per_sample(REASON_KEYS) == 0.0
    reasons[3, left_lane] = 1
    assert ("on_left_turn_lane", "no_left_lane") in exclusive_pairs()
    stats = LabelStats.from_vectors(actions, reasons, min_count=1)
    assert stats.conflicts_per_sample(REASON_KEYS) == 0.25


def test_cli_prints_the_table_and_a_verdict(small_synth_world, capsys):
    assert main(["--root", str(small_synth_world), "--null-samples", "300"]) == 0
    out = capsys.readouterr().out
    assert "P(F)" in out and "green_light" in out and "Verdict: order B fits" in out
    assert main(["--root", str(small_synth_world / "nowhere")]) == 1
    assert "not found" in capsys.readouterr().err
