"""The BDD-OIA reader on the synthetic world: joins, confuse drop, reason order, every bad input."""

import json
import random
import shutil
from pathlib import Path

import pytest

from data_prep.bddoia import (
    SPLITS,
    AnnotationError,
    read_bddoia,
    template_description,
)
from data_prep.synth import load_truth
from taxonomy.labels import REASON_KEYS, REASONS, reasons_to_vector


def actions_file(root: Path, split: str) -> Path:
    return root / f"{split}_25k_images_actions.json"


def reasons_file(root: Path, split: str) -> Path:
    return root / f"{split}_25k_images_reasons.json"


def read_json(path: Path):
    return json.loads(path.read_text())


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


@pytest.fixture
def world(small_synth_world, tmp_path):
    """A private copy (annotations and data/ only: the reader never opens clips)."""
    root = tmp_path / "world"
    shutil.copytree(small_synth_world, root, ignore=shutil.ignore_patterns("clips", "videos"))
    return root


def truth_by_id(root: Path) -> dict:
    return {t.id: t for t in load_truth(root)}


def assert_matches_truth(records, truth: dict) -> None:
    kept = {k: t for k, t in truth.items() if not t.confuse}
    assert {r.id for r in records} == set(kept)
    for r in records:
        t = kept[r.id]
        assert r.split == t.split
        assert list(r.actions) == t.actions
        assert list(r.reasons) == t.reasons
        assert r.image_path.is_file()


def test_reader_recovers_the_generators_truth(small_synth_world):
    data = read_bddoia(small_synth_world)
    truth = truth_by_id(small_synth_world)
    assert_matches_truth(data.records, truth)
    for split in SPLITS:
        expected_confuse = sum(t.confuse and t.split == split for t in truth.values())
        assert data.dropped_confuse[split] == expected_confuse
    assert sum(data.dropped_confuse.values()) >= 1  # the synth always writes one
    assert data.skipped == []


def test_joins_survive_shuffled_lists_new_ids_and_files_inside_data(world):
    rng = random.Random(7)
    for split in SPLITS:
        doc = read_json(actions_file(world, split))
        # New integer ids (a bijection) applied to both images and annotations, then every list
        # shuffled independently: only a join by value can pair them again.
        old_ids = [im["id"] for im in doc["images"]]
        new_ids = rng.sample(range(50_000, 90_000), len(old_ids))
        remap = dict(zip(old_ids, new_ids))
        for im in doc["images"]:
            im["id"] = remap[im["id"]]
        for ann in doc["annotations"]:
            ann["id"] = remap[ann["id"]]
        rng.shuffle(doc["images"])
        rng.shuffle(doc["annotations"])
        reasons = read_json(reasons_file(world, split))
        rng.shuffle(reasons)
        actions_file(world, split).unlink()
        reasons_file(world, split).unlink()
        write_json(world / "data" / actions_file(world, split).name, doc)
        write_json(world / "data" / reasons_file(world, split).name, reasons)
    data = read_bddoia(world)
    assert_matches_truth(data.records, truth_by_id(world))
    assert all(p.parent.name == "data" for p in data.annotation_files.values())


def test_reason_vectors_are_mapped_from_a_given_file_order(world, tmp_path):
    order = list(REASON_KEYS)
    random.Random(3).shuffle(order)
    order_file = tmp_path / "order.json"
    order_file.write_text(json.dumps(order))
    truth = truth_by_id(world)
    for split in SPLITS:
        entries = read_json(reasons_file(world, split))
        for e in entries:
            canonical = truth[Path(e["file_name"]).stem].reasons
            keys = [k for k, v in zip(REASON_KEYS, canonical) if v]
            e["reason"] = reasons_to_vector(keys, order)
        write_json(reasons_file(world, split), entries)
    assert_matches_truth(read_bddoia(world, reason_order=order_file).records, truth)
    # Read with the wrong order, the canonical vectors differ from the truth.
    wrong = read_bddoia(world, reason_order="B").records
    assert any(list(r.reasons) != truth[r.id].reasons for r in wrong)


# ---------------------------------------------------------------------------------------------
# Bad inputs: each one is named (file and record) in the error


def first(root: Path, split: str = "train") -> tuple[dict, dict]:
    """The first image entry of a split and its annotation."""
    doc = read_json(actions_file(root, split))
    image = doc["images"][0]
    ann = next(a for a in doc["annotations"] if a["id"] == image["id"])
    return image, ann


def edit_actions(root: Path, edit, split: str = "train") -> None:
    doc = read_json(actions_file(root, split))
    edit(doc)
    write_json(actions_file(root, split), doc)


def edit_reasons(root: Path, edit, split: str = "train") -> None:
    entries = read_json(reasons_file(root, split))
    edit(entries)
    write_json(reasons_file(root, split), entries)


def expect_error(root: Path, *fragments: str) -> AnnotationError:
    with pytest.raises(AnnotationError) as info:
        read_bddoia(root)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def test_missing_image_file_is_named(world):
    image, _ = first(world)
    (world / "data" / image["file_name"]).unlink()
    err = expect_error(world, image["file_name"], "image file missing", str(world / "data"))
    assert len(err.problems) == 1


def test_malformed_json_names_the_file(world):
    reasons_file(world, "val").write_text('[{"file_name": "x.jpg", "reason": [0, 1')
    expect_error(world, str(reasons_file(world, "val")), "malformed JSON")


def test_annotation_for_unknown_image_id(world):
    edit_actions(world, lambda d: d["annotations"].append({"id": 999_999, "category": [1, 0, 0, 0]}))
    expect_error(world, str(actions_file(world, "train")), "id=999999", "no image entry")


@pytest.mark.parametrize(
    "kind, vector, message",
    [
        ("actions", [1, 0, 0], "category has 3 entries, expected 4 or 5"),
        ("actions", [1, 0, 2, 0], "values other than 0/1"),
        ("reasons", [0] * 20, "reason has 20 entries, expected 21"),
        ("reasons", [0] * 20 + ["1"], "values other than 0/1"),
    ],
)
def test_bad_vectors_are_named(world, kind, vector, message):
    image, ann = first(world)

    def set_category(doc):
        next(a for a in doc["annotations"] if a["id"] == ann["id"])["category"] = vector

    def set_reason(entries):
        next(e for e in entries if e["file_name"] == image["file_name"])["reason"] = vector

    if kind == "actions":
        edit_actions(world, set_category)
        path = actions_file(world, "train")
    else:
        edit_reasons(world, set_reason)
        path = reasons_file(world, "train")
    expect_error(world, str(path), image["file_name"], message)


def test_duplicates_are_named(world):
    image, _ = first(world)
    edit_actions(world, lambda d: d["images"].append({"file_name": "other.jpg", "id": image["id"]}))
    edit_reasons(world, lambda e: e.append(dict(next(x for x in e if x["file_name"] == image["file_name"]))))
    err = expect_error(world, "duplicate image id", "duplicate reasons entry", image["file_name"])
    assert len(err.problems) >= 2  # one error lists every problem


def test_missing_partners_are_named(world):
    image, _ = first(world, "test")
    edit_reasons(world, lambda e: e.remove(next(x for x in e if x["file_name"] == image["file_name"])),
                 split="test")
    edit_reasons(world, lambda e: e.append({"file_name": "ghost.jpg", "reason": [0] * 21}), split="val")
    err = expect_error(world, "actions without reasons", image["file_name"],
                       "reasons without actions", "ghost.jpg")
    assert {p.split for p in err.problems} == {"test", "val"}


def test_missing_annotation_file_says_where_it_looked(world):
    actions_file(world, "val").unlink()
    expect_error(world, "val_25k_images_actions.json", str(world / "data"))


def test_two_different_copies_of_a_file_are_ambiguous(world):
    write_json(world / "data" / reasons_file(world, "val").name, [])
    expect_error(world, "exists twice")


def test_skip_bad_leaves_out_only_the_bad_records(world):
    image, _ = first(world)
    (world / "data" / image["file_name"]).unlink()
    bad_reason = first(world, "val")[0]["file_name"]
    edit_reasons(world, lambda e: next(x for x in e if x["file_name"] == bad_reason).update(reason=[7] * 21),
                 split="val")
    data = read_bddoia(world, skip_bad=True)
    skipped_names = {p.record for p in data.skipped}
    assert len(data.skipped) == 2
    assert any(image["file_name"] in r for r in skipped_names)
    assert any(bad_reason in r for r in skipped_names)
    truth = {k: t for k, t in truth_by_id(world).items()
             if Path(image["file_name"]).stem != k and Path(bad_reason).stem != k}
    assert_matches_truth(data.records, truth)


def test_template_description_says_the_labels():
    reasons = reasons_to_vector(["green_light", "solid_line_left"])
    text = template_description([1, 0, 0, 0], reasons)
    by_key = {r.key: r for r in REASONS}
    assert by_key["green_light"].phrase in text and by_key["solid_line_left"].phrase in text
    assert "move forward" in text
    assert template_description([0, 0, 0, 0], [0] * 21).strip()  # never empty
