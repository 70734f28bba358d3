"""The synthetic world: layout as the BDD-OIA contract, determinism, causal labels (down to pixels)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep import synth
from data_prep.synth import WorldConfig, generate, load_truth
from taxonomy.labels import (
    ACTION_KEYS,
    REASON_KEYS,
    actions_from_vector,
    inconsistent_reasons,
    load_reason_order,
    reasons_from_vector,
)

NUM_CLIPS = 100
SEED = 7
MODEL_EDGE = 64  # the tiny VLM sees frames with this longest edge


def _reasons(truth) -> set[str]:
    return set(reasons_from_vector(truth.reasons))


def _actions(truth) -> set[str]:
    return set(actions_from_vector(truth.actions))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "world"
    truths = generate(root, NUM_CLIPS, seed=SEED, progress=False)
    return root, truths


# Scenes with many obstacles so every cue has positive and negative examples in few clips.
BUSY = WorldConfig(p_pedestrian=0.3, p_rider=0.25, p_obstacle_other=0.3, p_stop_sign=0.15,
                   p_front_car_turning_left=0.3, p_front_car_turning_right=0.3)


@pytest.fixture(scope="module")
def busy_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_busy") / "world"
    truths = generate(root, 80, seed=SEED, config=BUSY, progress=False)
    return root, truths


def _files(root: Path) -> dict[str, bytes]:
    names = [f"{s}_25k_images_{kind}.json" for s in synth.SPLITS for kind in ("actions", "reasons")]
    names += ["descriptions.json", "truth.json"]
    out = {name: (root / name).read_bytes() for name in names}
    out.update({f"data/{p.name}": p.read_bytes() for p in sorted((root / "data").glob("*.jpg"))})
    return out


def test_same_seed_gives_identical_bytes_whatever_the_process_count(world, tmp_path):
    root, truths = world
    again = generate(tmp_path / "again", NUM_CLIPS, seed=SEED, num_proc=2, progress=False)
    assert [t.to_dict() for t in again] == [t.to_dict() for t in truths]
    first, second = _files(root), _files(tmp_path / "again")
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    frame = f"clips/{truths[3].id}/001.jpg"
    assert (root / frame).read_bytes() == (tmp_path / "again" / frame).read_bytes()


def test_different_seed_gives_a_different_world(world, tmp_path):
    root, truths = world
    other = generate(tmp_path / "other", 20, seed=SEED + 1, progress=False)
    assert [t.scene for t in other] != [t.scene for t in truths[:20]]
    same_id = other[0].id
    assert (root / "data" / f"{same_id}.jpg").read_bytes() != (
        tmp_path / "other" / "data" / f"{same_id}.jpg"
    ).read_bytes()


def test_layout_matches_the_release_contract(world):
    root, truths = world
    config = WorldConfig()
    for split in synth.SPLITS:
        assert (root / f"{split}_25k_images_actions.json").is_file()
        assert (root / f"{split}_25k_images_reasons.json").is_file()
    descriptions = json.loads((root / "descriptions.json").read_text())
    assert set(descriptions) == {t.id for t in truths}
    for truth in truths:
        assert truth.id.startswith("synth-")
        last = root / "data" / f"{truth.id}.jpg"
        frames = sorted((root / "clips" / truth.id).glob("*.jpg"))
        assert [f.name for f in frames] == [f"{i:03d}.jpg" for i in range(config.frames)]
        assert frames[-1].read_bytes() == last.read_bytes()  # the annotated frame is the last one
        assert Image.open(last).size == (config.width, config.height)
        assert descriptions[truth.id] == truth.description
    assert load_truth(root)[5].to_dict() == truths[5].to_dict()
    # Nothing of the staging folder is left beside the release.
    assert [p.name for p in root.parent.iterdir()] == [root.name]


def test_frames_of_a_clip_show_motion(world):
    root, truths = world
    for truth in truths[:10]:
        first = np.asarray(Image.open(root / "clips" / truth.id / "000.jpg"), dtype=float)
        last = np.asarray(Image.open(root / "data" / f"{truth.id}.jpg"), dtype=float)
        assert np.abs(first - last).mean() > 1.0, truth.id


def test_annotation_files_join_by_id_and_file_name_to_the_truth(world):
    root, truths = world
    by_file = {f"{t.id}.jpg": t for t in truths}
    order_b = load_reason_order("B")
    seen = set()
    for split in synth.SPLITS:
        actions = json.loads((root / f"{split}_25k_images_actions.json").read_text())
        reasons = json.loads((root / f"{split}_25k_images_reasons.json").read_text())
        images, annotations = actions["images"], actions["annotations"]
        assert images and set(images[0]) == {"file_name", "id", "height", "width"}
        assert all(set(a) == {"id", "category"} for a in annotations)
        # Positions are not ids, and the three lists are in different orders.
        assert [im["id"] for im in images] != list(range(len(images)))
        assert [im["id"] for im in images] != [a["id"] for a in annotations]
        assert [im["file_name"] for im in images] != [r["file_name"] for r in reasons]
        category_by_id = {a["id"]: a["category"] for a in annotations}
        assert len(category_by_id) == len(annotations) == len(images)
        reason_by_file = {r["file_name"]: r["reason"] for r in reasons}
        assert set(reason_by_file) == {im["file_name"] for im in images}
        for image in images:
            truth = by_file[image["file_name"]]
            assert truth.split == split and truth.annotation_id == image["id"]
            category = category_by_id[image["id"]]
            assert len(category) in (4, 5)
            assert category[:4] == truth.actions
            assert (len(category) == 5 and category[4] == 1) == truth.confuse
            assert set(reasons_from_vector(reason_by_file[image["file_name"]], order_b)) == _reasons(truth)
            seen.add(truth.id)
    assert seen == {t.id for t in truths}


def test_splits_and_confuse_samples(world):
    _, truths = world
    counts = {s: sum(t.split == s for t in truths) for s in synth.SPLITS}
    assert counts == {"train": 70, "val": 10, "test": 20}
    assert 1 <= sum(t.confuse for t in truths) <= 3  # 0.4% of 100, at least one


def test_every_sample_is_consistent(world, busy_world):
    for _, truths in (world, busy_world):
        for truth in truths:
            assert inconsistent_reasons(_actions(truth), _reasons(truth)) == [], truth.id
            assert _actions(truth) & {"forward", "stop"}, truth.id


def test_rules_hold_over_many_scenes():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        facts = synth.sample_facts(rng, BUSY)
        actions, reasons = map(set, synth.scene_labels(facts))
        assert not inconsistent_reasons(actions, reasons)
        if facts.light == "red":
            assert {"stop"} <= actions and "stop_traffic_light" in reasons and "forward" not in actions
        if facts.pedestrian:
            assert "stop" in actions and "obstacle_person" in reasons
        if facts.rider:
            assert "obstacle_rider" in reasons
        if facts.car_ahead == "close":
            assert "obstacle_car" in reasons
        if facts.stop_sign:
            assert "stop_traffic_sign" in reasons
        if "stop" not in actions:
            assert "forward" in actions
            assert ("green_light" in reasons) == (facts.light == "green")
            assert ("follow_traffic" in reasons) == (facts.car_ahead == "moderate")
            assert ("road_clear" in reasons) == (facts.car_ahead == "none")
        for side, kind in (("left", facts.left_side), ("right", facts.right_side)):
            assert (f"solid_line_{side}" in reasons) == (kind == "solid")
            assert (f"no_{side}_lane" in reasons) == (kind == "edge")
            if kind != "dashed" or getattr(facts, f"{side}_lane_blocked"):
                assert side not in actions
            if facts.light == f"{side}_arrow" and kind == "dashed" and not getattr(
                facts, f"{side}_lane_blocked"
            ):
                assert side in actions and f"light_allows_{side}" in reasons


def _above_horizon(a: np.ndarray) -> np.ndarray:
    """A mask of the rows above the lowest possible horizon (lamps and signs hang there)."""
    rows = np.arange(a.shape[0])[:, None] < a.shape[0] * (synth.HORIZON_FRACTION - synth.HORIZON_JITTER)
    return np.broadcast_to(rows, a.shape[:2])


# Colours of the cues after a downscale to the model's 64 px, and the labels they must go with.
CUES = {
    "red lamp or sign": (
        lambda a: (a[..., 0] > 180) & (a[..., 1] < 90) & (a[..., 2] < 90) & _above_horizon(a),
        lambda r: bool(r & {"stop_traffic_light", "stop_traffic_sign"}),
    ),
    "pedestrian magenta": (
        lambda a: (a[..., 0] > 170) & (a[..., 2] > 140) & (a[..., 1] < 100),
        lambda r: "obstacle_person" in r,
    ),
    "rider cyan": (
        lambda a: (a[..., 2] > 170) & (a[..., 1] > 150) & (a[..., 0] < 90),
        lambda r: "obstacle_rider" in r,
    ),
}
MIN_CUE_PIXELS = 4  # a cue must stay a blob of a few pixels at 64 px


def _small_last_frame(root: Path, clip_id: str) -> np.ndarray:
    image = Image.open(root / "data" / f"{clip_id}.jpg").convert("RGB")
    scale = MODEL_EDGE / max(image.size)
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    return np.asarray(small).astype(int)


@pytest.mark.parametrize("cue", sorted(CUES))
def test_labels_follow_the_pixels_at_64px(busy_world, cue):
    root, truths = busy_world
    mask_of, labelled = CUES[cue]
    positives = 0
    for truth in truths:
        pixels = int(mask_of(_small_last_frame(root, truth.id)).sum())
        has_label = labelled(_reasons(truth))
        positives += has_label
        if has_label:
            assert pixels >= MIN_CUE_PIXELS, (truth.id, truth.description)
        else:
            assert pixels == 0, (truth.id, truth.description)
    assert 0 < positives < len(truths)  # both sides of the link were checked


def test_green_lamp_pixels_sit_in_the_sky_of_green_light_scenes(busy_world):
    root, truths = busy_world
    checked = 0
    for truth in truths:
        a = _small_last_frame(root, truth.id)
        green = (a[..., 1] > 170) & (a[..., 0] < 120) & (a[..., 2] < 140)
        if "green_light" in _reasons(truth):
            rows = np.nonzero(green)[0]
            assert rows.size >= MIN_CUE_PIXELS and rows.max() < a.shape[0] * synth.HORIZON_FRACTION
            checked += 1
        if truth.scene["light"] == "none":
            assert not green.any(), truth.id
    assert checked


def test_class_balance_matches_the_knobs(world):
    _, truths = world
    expected = synth.expected_action_rates(WorldConfig())
    # Like BDD-OIA: forward and stop common, turns rare.
    assert 0.35 < expected["forward"] < 0.65 and 0.35 < expected["stop"] < 0.65
    assert expected["left"] < 0.15 and expected["right"] < 0.15
    observed = synth.label_rates(truths)
    for key in ACTION_KEYS:
        assert abs(observed[key] - expected[key]) < 0.15, (key, observed[key], expected[key])
    # Many scenes (labels only, no drawing) pin the rates down closely.
    rng = np.random.default_rng(1)
    n = 20000
    counts = dict.fromkeys(ACTION_KEYS, 0)
    for _ in range(n):
        for action in synth.scene_labels(synth.sample_facts(rng, WorldConfig()))[0]:
            counts[action] += 1
    for key in ACTION_KEYS:
        assert abs(counts[key] / n - expected[key]) < 0.015, key


def test_a_knob_changes_the_world():
    rng = np.random.default_rng(2)
    always_red = replace(WorldConfig(), p_light_red=1.0, p_light_green=0.0, p_light_left_arrow=0.0,
                         p_light_right_arrow=0.0)
    for _ in range(50):
        actions, reasons = synth.scene_labels(synth.sample_facts(rng, always_red))
        assert "stop" in actions and "forward" not in actions and "stop_traffic_light" in reasons


def test_descriptions_name_what_is_drawn(world):
    _, truths = world
    for truth in truths:
        words = truth.description.split()
        assert 8 <= len(words) <= 45, truth.description
        scene = truth.scene
        assert ("red traffic light" in truth.description) == (scene["light"] == "red")
        assert ("pedestrian" in truth.description) == scene["pedestrian"]
        assert ("road edge on the left" in truth.description) == (scene["left_side"] == "edge")


def test_invalid_config_names_the_knobs():
    with pytest.raises(ValueError, match="p_light_red.*p_light_green"):
        WorldConfig(p_light_red=0.7, p_light_green=0.5)
    with pytest.raises(ValueError, match="p_rider"):
        WorldConfig(p_rider=1.5)


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "release"
    out.mkdir()
    (out / "keep.txt").write_text("prepared earlier")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(out, 3, progress=False)
    assert synth.main(["--out", str(out), "--clips", "3", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "prepared earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]  # no staging left behind
    assert synth.main(["--out", str(out), "--clips", "3", "--no-progress", "--overwrite",
                       "--frames", "2", "--width", "64", "--height", "36"]) == 0
    assert not (out / "keep.txt").exists()
    assert len(list((out / "clips" / "synth-000000").glob("*.jpg"))) == 2


def test_videos_hold_the_clip_frames(tmp_path):
    av = pytest.importorskip("av")
    config = WorldConfig(frames=3, width=96, height=54)
    truths = generate(tmp_path / "w", 2, config=config, videos=True, progress=False)
    path = tmp_path / "w" / "videos" / f"{truths[0].id}.mp4"
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == config.frames and frames[0].shape == (54, 96, 3)
    last = np.asarray(Image.open(tmp_path / "w" / "data" / f"{truths[0].id}.jpg"), dtype=float)
    assert np.abs(frames[-1].astype(float) - last).mean() < 12  # same picture, lossy codecs


def test_reasons_are_in_canonical_order_in_the_truth(world):
    _, truths = world
    assert all(len(t.reasons) == len(REASON_KEYS) and len(t.actions) == 4 for t in truths)
