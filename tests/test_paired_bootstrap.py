"""evaluate.paired_bootstrap: F1_all differences with their interval over clips."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from evaluate.metrics import sample_f1
from evaluate.paired_bootstrap import bootstrap_interval, clip_differences, compare, main


def record(clip, actions, reasons=(), truth_actions=("stop",), truth_reasons=("obstacle_car",)):
    return {"id": clip, "parsed": {"description": "d", "actions": list(actions), "reasons": list(reasons)},
            "truth": {"description": "d", "actions": list(truth_actions), "reasons": list(truth_reasons)}}


def test_sample_f1_averages_to_scikit_learns_f1_all_empty_rows_included():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=(300, 6))
    pred = rng.integers(0, 2, size=(300, 6))
    truth[:5] = 0
    pred[:3] = 0  # rows 0-2: nothing true, nothing predicted (F1 0 by the official zero_division)
    per_sample = sample_f1(truth, pred)
    assert per_sample.shape == (300,) and (per_sample[:3] == 0).all()
    assert per_sample.mean() == pytest.approx(f1_score(truth, pred, average="samples", zero_division=0))


def test_sample_f1_refuses_matrices_of_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        sample_f1(np.ones((3, 4)), np.ones((2, 4)))


def test_the_interval_has_the_width_of_the_mean_over_clips():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.01, 0.2, size=2000)
    interval = bootstrap_interval(differences)
    half = 1.96 * differences.std() / np.sqrt(differences.size)  # the normal approximation
    assert interval.mean == pytest.approx(differences.mean())
    assert interval.high - interval.low == pytest.approx(2 * half, rel=0.1)
    assert interval.low < interval.mean < interval.high and interval.clips == 2000


def test_a_constant_difference_has_no_width_and_excludes_zero():
    interval = bootstrap_interval(np.full(50, 0.02))
    assert interval.low == pytest.approx(0.02) and interval.high == pytest.approx(0.02) and interval.excludes_zero
    assert not bootstrap_interval(np.full(50, 1e-6)).excludes_zero  # prints as +0.0000: not told from none
    assert bootstrap_interval(np.full(50, -1e-3)).excludes_zero


def test_seeds_are_averaged_per_clip_before_the_clips_are_drawn():
    # two seeds that move each clip in opposite directions: the seed mean is 0 on every clip, so the
    # clips cannot make it anything else (pooling the 2 x 500 differences as clips would give a wide interval)
    one = np.random.default_rng(2).normal(0, 0.3, size=500)
    interval = bootstrap_interval(np.stack([one, -one]))
    assert interval.low == pytest.approx(0.0) and interval.high == pytest.approx(0.0)
    assert interval.per_seed == pytest.approx((one.mean(), -one.mean()))


def test_a_higher_level_is_a_wider_interval_and_the_draws_repeat():
    differences = np.random.default_rng(3).normal(0, 0.2, size=400)
    narrow, wide = bootstrap_interval(differences, level=0.5), bootstrap_interval(differences, level=0.99)
    assert wide.low < narrow.low and wide.high > narrow.high
    assert bootstrap_interval(differences, seed=7) == bootstrap_interval(differences, seed=7)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(differences, level=95)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_interval(differences, resamples=0)


START = [record("a", ["stop"]), record("b", ["forward"]), record("c", ["stop"], ["obstacle_car"]), record("d", [])]
END = [record("a", ["stop"]), record("b", ["stop"]), record("c", ["forward"], ["obstacle_car"]), record("d", ["stop"])]


def test_clip_differences_are_end_minus_start_per_clip_paired_by_id():
    differences = clip_differences(START, list(reversed(END)))
    assert differences["act"].tolist() == [0.0, 1.0, -1.0, 1.0]  # b and d fixed, c broken
    assert differences["expl"].tolist() == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="different clips"):
        clip_differences(START, END[:3])


def test_compare_aligns_every_seed_on_the_same_clips():
    seed1_start, seed1_end = list(reversed(START)), list(reversed(START))  # seed 1: nothing changes, other order
    act = compare([START, seed1_start], [END, seed1_end], resamples=200)["act"]
    assert act.per_seed == pytest.approx((0.25, 0.0))
    assert act.mean == pytest.approx(0.125)
    with pytest.raises(ValueError, match="same clips"):
        compare([START, START[:3]], [END, END[:3]])


def test_a_seed_listed_in_another_clip_order_is_matched_clip_by_clip():
    # seed 1 is seed 0 listed backwards: each clip's seed mean is seed 0's difference, so the
    # interval is seed 0's alone (matched by position, clips b and c would average out)
    both = compare([START, list(reversed(START))], [END, list(reversed(END))], resamples=500)["act"]
    alone = bootstrap_interval(clip_differences(START, END)["act"], resamples=500)
    assert (both.low, both.high) == pytest.approx((alone.low, alone.high))


def test_cli_prints_both_groups_and_names_a_missing_folder(tmp_path, capsys):
    for name, records in (("s", START), ("e", END)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["--start", str(tmp_path / "s"), "--end", str(tmp_path / "e"), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert "4 clips, 1 seed(s)" in out and "| act F1_all | +0.2500 [" in out and "| expl F1_all | +0.0000 [" in out
    assert main(["--start", str(tmp_path / "s"), "--end", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_differences_print_with_a_sign_and_no_negative_zero():
    interval = bootstrap_interval(np.array([[-1e-6, -1e-6], [0.0123, 0.0123]]), resamples=10)
    assert interval.seeds == "+0.0000 / +0.0123"  # f"{-1e-6:+.4f}" would print -0.0000
