"""recipes.data.oversample_rare_labels: which clips an RL stage sees more often, and the errors."""
import logging

import pytest
from datasets import Dataset

from recipes.data import oversample_rare_labels
from recipes.errors import RecipeError
from taxonomy.labels import REASON_KEYS, actions_to_vector, reasons_to_vector


def clips(*labelled):
    """A split whose row i says the actions and reasons of labelled[i] (the 5th action entry is
    BDD-OIA's "confuse" flag, which is no action)."""
    return Dataset.from_dict({
        "id": [f"clip-{i}" for i in range(len(labelled))],
        "actions": [actions_to_vector(a) + [0] for a, _ in labelled],
        "reasons": [reasons_to_vector(r) for _, r in labelled],
    })


COMMON = (["forward"], ["green_light", "road_clear"])
STOPPED = (["stop"], ["stop_traffic_light"])
LEFT_ARROW = (["stop", "left"], ["stop_traffic_light", "light_allows_left"])
PEDESTRIAN = (["stop"], ["obstacle_person"])


def split_with_two_rare_clips():
    # 10 clips: "left", "light_allows_left" and "obstacle_person" are true on 1 each (10%)
    return clips(*[COMMON] * 4, *[STOPPED] * 4, LEFT_ARROW, PEDESTRIAN)


def test_each_clip_with_a_rare_label_appears_repeats_times_and_the_others_once():
    data = split_with_two_rare_clips()
    out = oversample_rare_labels(data, rare_label_share=0.15, rare_clip_repeats=3)
    ids = out["id"]
    assert ids.count("clip-8") == 3 and ids.count("clip-9") == 3
    assert all(ids.count(f"clip-{i}") == 1 for i in range(8))
    assert len(out) == 14


def test_a_label_at_the_threshold_is_not_rare():
    data = split_with_two_rare_clips()  # the rare labels sit at exactly 10%
    assert len(oversample_rare_labels(data, rare_label_share=0.10, rare_clip_repeats=3)) == 10
    # "stop" (50%) is common however often it co-occurs: only the rare label makes a clip repeat
    out = oversample_rare_labels(data, rare_label_share=0.11, rare_clip_repeats=2)
    assert out["id"].count("clip-4") == 1 and out["id"].count("clip-8") == 2


def test_the_confuse_flag_is_no_label():
    data = clips(*[COMMON] * 9, COMMON)
    flagged = data.map(lambda row, i: {"actions": row["actions"][:4] + [int(i == 9)]}, with_indices=True)
    assert len(oversample_rare_labels(flagged, rare_label_share=0.5, rare_clip_repeats=4)) == 10


def test_off_by_default_and_with_one_repeat():
    data = split_with_two_rare_clips()
    assert oversample_rare_labels(data, None, 1) is data
    assert oversample_rare_labels(data, None, 3) is data
    assert oversample_rare_labels(data, 0.15, 1) is data


def test_the_log_names_the_rare_labels_and_the_row_count(caplog):
    with caplog.at_level(logging.INFO, logger="recipes.data"):
        oversample_rare_labels(split_with_two_rare_clips(), 0.15, 3)
    message = caplog.text
    assert "left, obstacle_person, light_allows_left" in message and "14 rows" in message
    assert "stop_traffic_light" not in message


@pytest.mark.parametrize("share, repeats, key", [
    (0.0, 3, "rare_label_share"), (1.5, 3, "rare_label_share"), (-0.1, 3, "rare_label_share"),
    (0.1, 0, "rare_clip_repeats"), (0.1, 2.5, "rare_clip_repeats"), (0.1, True, "rare_clip_repeats"),
    (None, 0, "rare_clip_repeats"),
])
def test_bad_settings_name_their_key(share, repeats, key):
    with pytest.raises(RecipeError, match=key):
        oversample_rare_labels(split_with_two_rare_clips(), share, repeats)


def test_missing_label_columns_are_named():
    data = split_with_two_rare_clips().remove_columns("reasons")
    with pytest.raises(RecipeError, match=r"\['reasons'\].*reward_columns"):
        oversample_rare_labels(data, 0.15, 3)


@pytest.mark.parametrize("bad_reasons", [[[0] * (len(REASON_KEYS) - 1)] * 10, [[2] * len(REASON_KEYS)] * 10])
def test_label_vectors_of_the_wrong_shape_or_values_are_refused(bad_reasons):
    data = split_with_two_rare_clips().remove_columns("reasons").add_column("reasons", bad_reasons)
    with pytest.raises(RecipeError, match="0/1 label vectors"):
        oversample_rare_labels(data, 0.15, 3)



class _Built(Exception):
    """Raised by the stand-in trainer once it has been handed its train split."""


def test_an_rl_stage_trains_on_the_oversampled_split(small_prepared_dataset, tiny_vlm_dir, tmp_path):
    from datasets import load_from_disk

    from recipes.config import parse_recipe
    from recipes.rl import run_rl_stage
    from recipes.stage2.stage2 import RECIPE_TYPES

    handed = {}

    def trainer(**kwargs):
        handed["train"] = kwargs["train_dataset"]
        raise _Built

    recipe, training_args, model_args = parse_recipe(RECIPE_TYPES, [
        "--config", "recipes/stage2/stage2_demo.yaml", "--model_name_or_path", str(tiny_vlm_dir),
        "--dataset_path", str(small_prepared_dataset), "--output_dir", str(tmp_path / "out"),
        "--rare_label_share", "0.1", "--rare_clip_repeats", "4"])
    with pytest.raises(_Built):
        run_rl_stage(recipe, training_args, model_args, trainer_cls=trainer)
    train = load_from_disk(str(small_prepared_dataset))["train"]
    expected = oversample_rare_labels(train, 0.1, 4)
    assert len(expected) > len(train)
    assert handed["train"]["id"] == expected["id"]
