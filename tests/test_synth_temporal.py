"""The temporal world (WorldConfig.temporal): causes that show only across frames.

A turning front car signals by blinking with its blinker dark in the last frame, and a pedestrian at
the kerb who steps towards the road stands, in the last frame, where a waiting one stands. Their
labels follow the facts, and the last frame alone cannot tell them from the scene without the cause.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from data_prep import synth
from data_prep.synth import WorldConfig, generate
from data_prep.synth.release import CONFIG_FILE
from data_prep.synth.world import SALT_CLIP
from taxonomy.labels import inconsistent_reasons

SEED = 5
SMALL = dict(width=96, height=54)
# Every kind of temporal cause common, so a few dozen clips hold each.
TEMPORAL = WorldConfig(temporal=True, frames=6, p_kerb_pedestrian=0.6, p_car_moderate=0.6,
                       p_car_close=0.2, p_front_car_turning_left=0.35,
                       p_front_car_turning_right=0.35, **SMALL)
CLIPS = 60
MIN_PEDESTRIAN_PIXELS = 4  # at 96 px wide


def _clip_with_counterfactual(index: int, config: WorldConfig, cause_off):
    """The clip's facts and frames, and the same clip (same layout numbers) with `cause_off(facts)`."""
    rng = np.random.default_rng([SEED, SALT_CLIP, index])
    facts = synth.sample_facts(rng, config)
    twin_rng = copy.deepcopy(rng)  # the layout draws the same numbers for both
    other = cause_off(facts)
    frames = synth.render_clip(facts, synth.sample_layout(rng, facts, config), config)
    other_frames = synth.render_clip(other, synth.sample_layout(twin_rng, other, config), config)
    return facts, other, frames, other_frames


def _blinker_off(facts):
    return replace(facts, front_car_turning="none")


def _waits_instead(facts):
    return replace(facts, kerb_pedestrian="waiting")


CAUSES = {
    # cause name: (clip has it, the same scene without it, reason it decides)
    # (a can-turn reason is labelled only where the turn is possible: a free lane on that side)
    "blinking front car": (lambda f: f"front_car_turning_{f.front_car_turning}"
                           in synth.scene_labels(f)[1], _blinker_off,
                           lambda f: f"front_car_turning_{f.front_car_turning}"),
    "pedestrian stepping off the kerb": (lambda f: f.kerb_pedestrian == "stepping", _waits_instead,
                                         lambda f: "obstacle_person"),
}


@pytest.mark.parametrize("cause", sorted(CAUSES))
def test_a_temporal_cause_is_invisible_in_the_last_frame_and_visible_before(cause):
    has_cause, cause_off, reason_of = CAUSES[cause]
    checked = 0
    for index in range(CLIPS):
        rng = np.random.default_rng([SEED, SALT_CLIP, index])
        if not has_cause(synth.sample_facts(rng, TEMPORAL)):
            continue
        facts, other, frames, other_frames = _clip_with_counterfactual(index, TEMPORAL, cause_off)
        # The labels differ: the cause is decisive for its reason ...
        reason = reason_of(facts)
        assert reason in synth.scene_labels(facts)[1]
        if not facts.pedestrian:  # a crossing pedestrian would show obstacle_person in the last frame
            assert reason in synth.temporal_reasons(facts, TEMPORAL)
        assert synth.temporal_reasons(facts, replace(TEMPORAL, temporal=False)) == []
        if not (cause == "pedestrian stepping off the kerb" and facts.pedestrian):
            assert reason not in synth.scene_labels(other)[1], index
        # ... yet the last frames are pixel-identical,
        last, other_last = np.asarray(frames[-1]), np.asarray(other_frames[-1])
        assert np.array_equal(last, other_last), (cause, index)
        if cause == "pedestrian stepping off the kerb":  # in view, as a waiting one would be
            magenta = (last[..., 0] > 170) & (last[..., 2] > 140) & (last[..., 1] < 100)
            assert magenta.sum() >= MIN_PEDESTRIAN_PIXELS, index
        # and the frame one and two steps before the last (M = 2 at stride 1 or 2) show it.
        for steps_before_last in (1, 2):
            earlier = np.asarray(frames[-1 - steps_before_last])
            assert not np.array_equal(earlier, np.asarray(other_frames[-1 - steps_before_last])), (
                cause, index, steps_before_last)
        checked += 1
    assert checked >= 5, (cause, checked)


def test_the_default_world_keeps_its_last_frame_cues():
    """Without the temporal world the same causes are visible in the last frame (drift, lit blinker)."""
    default = replace(TEMPORAL, temporal=False)
    for index in range(CLIPS):
        rng = np.random.default_rng([SEED, SALT_CLIP, index])
        if synth.sample_facts(rng, default).front_car_turning == "none":
            continue
        _, _, frames, other_frames = _clip_with_counterfactual(index, default, _blinker_off)
        assert not np.array_equal(np.asarray(frames[-1]), np.asarray(other_frames[-1])), index
        return
    pytest.fail("no turning front car in the sample")


def test_temporal_labels_follow_the_facts():
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(3000):
        facts = synth.sample_facts(rng, TEMPORAL)
        actions, reasons = map(set, synth.scene_labels(facts))
        assert not inconsistent_reasons(actions, reasons)
        kinds.add(facts.kerb_pedestrian)
        if facts.kerb_pedestrian == "stepping":
            assert "stop" in actions and "obstacle_person" in reasons and "forward" not in actions
        if facts.kerb_pedestrian == "waiting" and not facts.pedestrian:
            assert "obstacle_person" not in reasons  # waiting at the kerb is no obstacle
    assert kinds == {"none", "waiting", "stepping"}
    # The closed-form rates know the stepping pedestrians too.
    expected = synth.expected_action_rates(TEMPORAL)
    counts = {"forward": 0, "stop": 0}
    n = 20000
    for _ in range(n):
        actions = synth.scene_labels(synth.sample_facts(rng, TEMPORAL))[0]
        for key in counts:
            counts[key] += key in actions
    for key in counts:
        assert abs(counts[key] / n - expected[key]) < 0.015, key


def test_the_default_world_draws_and_writes_nothing_temporal(tmp_path):
    config = WorldConfig(frames=2, **SMALL)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    # A default world draws no number for the kerb pedestrian (so its later draws, and its frames,
    # are those of the world before the temporal one existed); a temporal world draws one even
    # when no pedestrian comes of it.
    facts = synth.sample_facts(a, config)
    assert synth.sample_facts(b, replace(config, temporal=True, p_kerb_pedestrian=0.0)) == facts
    assert a.random() != b.random()
    truths = generate(tmp_path / "w", 3, config=config, progress=False)
    written = json.loads((tmp_path / "w" / CONFIG_FILE).read_text())["config"]
    assert not {"temporal", "p_kerb_pedestrian", "p_kerb_pedestrian_stepping"} & set(written)
    assert all("kerb_pedestrian" not in t.scene for t in truths)
    temporal = generate(tmp_path / "t", 3, config=replace(config, temporal=True), progress=False)
    written = json.loads((tmp_path / "t" / CONFIG_FILE).read_text())["config"]
    assert written["temporal"] is True and "p_kerb_pedestrian" not in written  # at its default
    assert all(synth.SceneFacts(**t.scene) for t in temporal)  # a scene reads back either way


def test_the_cli_switches_the_temporal_world_on(tmp_path):
    parser = synth.build_parser()
    assert parser.parse_args(["--out", "x", "--clips", "1", "--temporal"]).temporal is True
    assert parser.parse_args(["--out", "x", "--clips", "1"]).temporal is False
    out = tmp_path / "w"
    assert synth.main(["--out", str(out), "--clips", "4", "--no-progress", "--temporal",
                       "--frames", "3", "--width", "64", "--height", "36"]) == 0
    assert json.loads((out / CONFIG_FILE).read_text())["config"]["temporal"] is True


MODEL_EDGE = 64  # the tiny VLM sees frames with this longest edge
MIN_BLINKER_PIXELS = 4


def _yellow_pixels_at_model_size(image) -> int:
    scale = MODEL_EDGE / max(image.size)
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    a = np.asarray(small).astype(int)
    return int(((a[..., 0] > 200) & (a[..., 1] > 170) & (a[..., 2] < 90)).sum())


def test_the_blinker_survives_the_models_64px_in_lit_frames_and_is_dark_in_the_last():
    config = replace(TEMPORAL, width=WorldConfig().width, height=WorldConfig().height)
    checked = 0
    for index in range(CLIPS):
        facts, frames = synth.make_clip(SEED, index, config)
        if facts.front_car_turning == "none":
            assert all(_yellow_pixels_at_model_size(f) == 0 for f in frames), index
            continue
        assert _yellow_pixels_at_model_size(frames[-1]) == 0, index
        for steps_before_last in (1, 2):
            assert _yellow_pixels_at_model_size(frames[-1 - steps_before_last]) >= MIN_BLINKER_PIXELS, index
        checked += 1
    assert checked >= 5
