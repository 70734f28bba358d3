"""prepare: the saved DatasetDict's contract, reuse, --skip-bad, atomic writes, clip sources."""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets import Features, Image, List, Value, load_from_disk

from data_prep.bddoia import SPLITS, AnnotationError, template_description
from data_prep.frames import FrameError
from data_prep.prepare import FINGERPRINT_FILE, SKIPPED_FILE, PrepareError, main, prepare
from data_prep.synth import WorldConfig, generate, load_truth
from taxonomy.answer import format_answer, parse_answer
from taxonomy.labels import REASON_KEYS, actions_from_vector, reasons_from_vector

SMALL = dict(frames=2, stride=1, image_size=24, num_proc=1)

# The team contract (BRIEF.md, "Prepared dataset"), written out independently of prepare.py.
CONTRACT = Features(
    {
        "id": Value("string"),
        "frames": List(Image()),
        "actions": List(Value("int64")),
        "reasons": List(Value("int64")),
        "description": Value("string"),
        "prompt": List({"role": Value("string"), "content": List({"type": Value("string")})}),
        "completion": List(
            {"role": Value("string"),
             "content": List({"type": Value("string"), "text": Value("string")})}
        ),
        "answer_json": Value("string"),
        "answer_text": Value("string"),
    }
)


WORLD_CLIPS = 40  # enough for all three splits and a confuse sample; small to copy per test


@pytest.fixture(scope="module")
def module_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare_world") / "world"
    generate(root, WORLD_CLIPS, seed=2, config=WorldConfig(width=64, height=36), progress=False)
    return root


@pytest.fixture
def world(module_world, tmp_path):
    """A private copy each test may damage."""
    root = tmp_path / "world"
    shutil.copytree(module_world, root)
    return root


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name]


def some_train_id(root: Path) -> str:
    return next(t.id for t in load_truth(root) if t.split == "train" and not t.confuse)


# ---------------------------------------------------------------------------------------------
# The saved dataset


def test_saved_dataset_has_the_contract_columns_and_the_truth(small_prepared_dataset, small_synth_world):
    dataset = load_from_disk(str(small_prepared_dataset))
    assert set(dataset) == set(SPLITS)
    truth = {t.id: t for t in load_truth(small_synth_world) if not t.confuse}
    seen = set()
    for split in SPLITS:
        part = dataset[split]
        assert part.features == CONTRACT
        for row in part:
            t = truth[row["id"]]
            seen.add(row["id"])
            assert t.split == split
            assert row["actions"] == t.actions and row["reasons"] == t.reasons
            assert row["description"] == t.description
            assert len(row["frames"]) == 3
            assert all(max(im.size) == 32 and im.mode == "RGB" for im in row["frames"])
            [turn] = row["prompt"]
            assert turn["role"] == "user" and turn["content"] == [{"type": "image"}] * 3
            [answer] = row["completion"]
            assert answer["role"] == "assistant"
            assert answer["content"] == [{"type": "text", "text": row["answer_json"]}]
            parsed = parse_answer(row["answer_json"])
            assert parsed.actions == set(actions_from_vector(t.actions))
            assert parsed.reasons == set(reasons_from_vector(t.reasons))
            assert row["answer_json"] == format_answer(
                t.description, actions_from_vector(t.actions), reasons_from_vector(t.reasons))
            assert parse_answer(row["answer_text"]).reasons == parsed.reasons
    assert seen == set(truth)


def test_frames_end_on_the_annotated_frame(world, tmp_path):
    """Stored losslessly, the last frame is exactly data/<id>.jpg resized (the synth writes the
    clip's last frame there), and the earlier ones are not."""
    from data_prep.frames import load_image

    result = prepare(world, tmp_path / "out", **{**SMALL, "frames": 3}, image_format="png")
    for row in result.load()["val"]:
        annotated = np.asarray(load_image(world / "data" / f"{row['id']}.jpg", SMALL["image_size"]))
        assert np.array_equal(np.asarray(row["frames"][-1]), annotated)
        earlier = np.asarray(load_image(world / "clips" / row["id"] / "002.jpg", SMALL["image_size"]))
        assert np.array_equal(np.asarray(row["frames"][0]), earlier)


def test_template_descriptions_when_the_source_has_none(world, tmp_path):
    (world / "descriptions.json").unlink()
    result = prepare(world, tmp_path / "out", **SMALL)
    for row in result.load()["test"]:
        assert row["description"].strip()
        assert row["description"] == template_description(row["actions"], row["reasons"])


# ---------------------------------------------------------------------------------------------
# Re-runs


def test_rerun_reuses_and_any_change_rebuilds(world, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="data_prep")
    out = tmp_path / "out"
    first = prepare(world, out, **SMALL)
    assert not first.reused
    manifest = json.loads((out / FINGERPRINT_FILE).read_text())
    again = prepare(world, out, **SMALL)
    assert again.reused and again.fingerprint == first.fingerprint
    assert "up to date" in caplog.text
    assert json.loads((out / FINGERPRINT_FILE).read_text()) == manifest  # nothing rewritten

    with pytest.raises(PrepareError, match="--overwrite"):
        prepare(world, out, **{**SMALL, "stride": 2})  # another option
    frame = sorted((world / "clips" / some_train_id(world)).iterdir())[-1]
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    with pytest.raises(PrepareError, match="--overwrite"):
        prepare(world, out, **SMALL)  # a frame file changed
    rebuilt = prepare(world, out, **SMALL, overwrite=True)
    assert not rebuilt.reused and rebuilt.fingerprint != first.fingerprint
    assert prepare(world, out, **SMALL).reused


def test_overwrite_never_replaces_a_folder_that_is_not_a_dataset(world, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="does not hold a prepared dataset"):
        prepare(world, out, **SMALL, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# Bad input: validation first, --skip-bad, atomic writes


def test_bad_annotations_fail_before_anything_is_written(world, tmp_path):
    path = world / "val_25k_images_reasons.json"
    entries = json.loads(path.read_text())
    entries[0]["reason"] = entries[0]["reason"][:-1]
    path.write_text(json.dumps(entries))
    with pytest.raises(AnnotationError, match=entries[0]["file_name"]):
        prepare(world, tmp_path / "out", **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_skip_bad_writes_skipped_json(world, tmp_path):
    truth = [t for t in load_truth(world) if not t.confuse]
    bad_frame_id = next(t.id for t in truth if t.split == "train")
    bad_label_id = next(t.id for t in truth if t.split == "test")
    bad_frame = world / "clips" / bad_frame_id / "004.jpg"
    bad_frame.write_bytes(b"not a jpeg")
    path = world / "test_25k_images_actions.json"
    doc = json.loads(path.read_text())
    image_id = next(im["id"] for im in doc["images"] if im["file_name"] == f"{bad_label_id}.jpg")
    next(a for a in doc["annotations"] if a["id"] == image_id)["category"] = [1, 0, 3, 0]
    path.write_text(json.dumps(doc))

    reasons_path = world / "test_25k_images_reasons.json"  # the same sample's reasons are bad too
    reasons = json.loads(reasons_path.read_text())
    next(r for r in reasons if r["file_name"] == f"{bad_label_id}.jpg")["reason"] = [0] * 20
    reasons_path.write_text(json.dumps(reasons))

    result = prepare(world, tmp_path / "out", **{**SMALL, "num_proc": 2}, skip_bad=True)
    skipped = json.loads((tmp_path / "out" / SKIPPED_FILE).read_text())
    assert len(skipped) == 2  # samples, not problems: one sample has two
    by_file = {problem["file"]: (entry, problem) for entry in skipped for problem in entry["problems"]}
    frame_sample, frame_problem = by_file[str(bad_frame)]
    assert frame_sample["record"] == f"id={bad_frame_id!r}" and "corrupt" in frame_problem["message"]
    label_sample, _ = by_file[str(path)]
    assert label_sample["split"] == "test" and f"{bad_label_id}.jpg" in label_sample["record"]
    assert {p["file"] for p in label_sample["problems"]} == {str(path), str(reasons_path)}
    dataset = result.load()
    ids = {i for split in SPLITS for i in dataset[split]["id"]}
    assert bad_frame_id not in ids and bad_label_id not in ids
    assert len(ids) == len(truth) - 2


@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_corrupt_frame_midway_leaves_no_dataset(world, tmp_path, num_proc):
    truth = [t for t in load_truth(world) if not t.confuse and t.split == "test"]
    bad = world / "clips" / truth[-1].id / "004.jpg"  # the last test sample: train and val are done
    bad.write_bytes(bad.read_bytes()[:30])
    out = tmp_path / "out"
    with pytest.raises(FrameError) as info:
        prepare(world, out, **{**SMALL, "num_proc": num_proc})
    assert str(bad) in str(info.value) and truth[-1].id in str(info.value)
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_failed_rebuild_leaves_the_old_dataset_intact(world, tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare(world, out, **SMALL)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr("datasets.DatasetDict.save_to_disk", fail)
    with pytest.raises(OSError, match="simulated"):
        prepare(world, out, **{**SMALL, "stride": 2}, overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and leftovers(tmp_path) == []
    assert load_from_disk(str(out))["train"].num_rows > 0


def test_a_killed_runs_leftovers_are_cleaned_up(world, tmp_path):
    stale = tmp_path / ".out.partial-999999999-deadbeef"  # no such process
    (stale / "cache").mkdir(parents=True)
    live = tmp_path / f".out.partial-{os.getpid()}-cafecafe"  # a running process: kept
    live.mkdir()
    prepare(world, tmp_path / "out", **SMALL)
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------------------------------------
# Clip sources


def test_more_than_one_frame_needs_clips(world, tmp_path):
    shutil.rmtree(world / "clips")
    with pytest.raises(FrameError, match="no clip frames were found") as info:
        prepare(world, tmp_path / "out", **SMALL)
    assert str(world / "data") in str(info.value)
    assert not (tmp_path / "out").exists()
    result = prepare(world, tmp_path / "out", **{**SMALL, "frames": 1})  # last frames suffice
    assert all(len(f) == 1 for f in result.load()["val"]["frames"])


def test_video_input(tmp_path):
    root = tmp_path / "vworld"
    generate(root, 12, seed=1, config=WorldConfig(width=64, height=36), videos=True, progress=False)
    from_clips = prepare(root, tmp_path / "from_clips", frames=3, stride=2, image_size=32).load()
    shutil.rmtree(root / "clips")
    from_videos = prepare(root, tmp_path / "from_videos", frames=3, stride=2, image_size=32).load()
    for split in SPLITS:
        for a, b in zip(from_clips[split], from_videos[split]):
            assert a["id"] == b["id"] and len(b["frames"]) == 3
            # Same frames from the folder and from the video, up to compression.
            for fa, fb in zip(a["frames"], b["frames"]):
                assert fa.size == fb.size
                diff = np.abs(np.asarray(fa, dtype=float) - np.asarray(fb, dtype=float)).mean()
                assert diff < 12


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli(world, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="data_prep")
    out = tmp_path / "out"
    args = ["--root", str(world), "--out", str(out), "--frames", "2", "--image-size", "24"]
    assert main(args) == 0 and (out / "dataset_dict.json").is_file()
    assert main(args) == 0 and "up to date" in caplog.text
    assert main(["--root", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 1
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "--reason-order" in capsys.readouterr().out


def test_reason_order_option_reaches_the_dataset(world, tmp_path):
    """A file order is applied: reading B data as if reversed gives reversed canonical vectors."""
    order_file = tmp_path / "reversed.json"
    order_file.write_text(json.dumps(list(reversed(REASON_KEYS))))
    result = prepare(world, tmp_path / "out", **SMALL, reason_order=str(order_file))
    truth = {t.id: t for t in load_truth(world)}
    for row in result.load()["val"]:
        assert row["reasons"] == list(reversed(truth[row["id"]].reasons))


# --- clip frames beside the annotated frame, the annotated frame checked, empty splits refused ---


def _flatten_clips_into_data(world):
    """Move clips/<id>/00k.jpg to data/<id>_k.jpg: the layout some BDD-OIA derivatives ship."""
    for folder in (world / "clips").iterdir():
        for k, frame in enumerate(sorted(folder.iterdir())):
            frame.rename(world / "data" / f"{folder.name}_{k}.jpg")
    shutil.rmtree(world / "clips")


def test_clip_frames_named_id_k_beside_the_annotated_frame_are_found_without_flags(world, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="data_prep")
    _flatten_clips_into_data(world)
    result = prepare(world, tmp_path / "out", **SMALL)
    assert f"frames from {(world / 'data').resolve()}" in caplog.text
    dataset = result.load()
    assert all(len(frames) == SMALL["frames"] for frames in dataset["train"]["frames"])


def test_a_corrupt_annotated_frame_is_caught_when_the_clip_frames_come_from_elsewhere(world, tmp_path):
    truth = next(t for t in load_truth(world) if not t.confuse and t.split == "val")
    annotated = world / "data" / f"{truth.id}.jpg"
    annotated.write_bytes(b"not a jpeg")
    with pytest.raises(FrameError, match=str(annotated)):
        prepare(world, tmp_path / "out", **SMALL)


def test_skip_bad_that_would_empty_a_split_is_an_error(world, tmp_path):
    for t in load_truth(world):
        if t.split == "val" and not t.confuse:
            (world / "clips" / t.id / "004.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FrameError, match=r"split .val. empty"):
        prepare(world, tmp_path / "out", **SMALL, skip_bad=True)
    assert not (tmp_path / "out").exists()
