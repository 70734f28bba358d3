"""The null-reward control (recipes/reward_control.py): each reward reads another clip's truth."""

from __future__ import annotations

import pytest

from recipes import reward_control as rc
from recipes.errors import RecipeError

GROUP = 2


def own_truth_reward(completions, *, description, **kwargs):
    """1 where the completion repeats its row's description: 1 everywhere on the policy's own clip."""
    return [1.0 if c == d else 0.0 for c, d in zip(completions, description)]


own_truth_reward.span = "description"


def test_other_clip_gives_each_group_the_group_before_it():
    rows = ["a", "a", "b", "b", "c", "c"]
    assert rc.other_clip(rows, GROUP) == ["c", "c", "a", "a", "b", "b"]


def test_other_clip_refuses_a_batch_of_one_clip_or_of_broken_groups():
    with pytest.raises(ValueError, match="at least 2 clips"):
        rc.other_clip(["a", "a"], GROUP)
    with pytest.raises(ValueError, match="groups of 2"):
        rc.other_clip(["a", "a", "b"], GROUP)


def test_a_reward_scored_against_other_clips_loses_its_information_but_not_its_name_or_span():
    completions = ["x", "x", "y", "y"]
    columns = {"description": ["x", "x", "y", "y"], "id": ["1", "1", "2", "2"]}
    assert own_truth_reward(completions, **columns) == [1.0] * 4
    control = rc.scored_against_other_clips(own_truth_reward, GROUP)
    assert control(completions=completions, **columns) == [0.0] * 4
    assert control.__name__ == "own_truth_reward" and control.span == "description"


def test_the_control_rolls_dataset_columns_only():
    seen = {}

    def spy(completions, **kwargs):
        seen.update(kwargs, completions=completions)
        return [0.0] * len(completions)

    completions = ["p", "p", "q", "q"]
    prompts = ["P", "P", "Q", "Q"]
    rc.scored_against_other_clips(spy, GROUP)(
        prompts=prompts, completions=completions, completion_ids=[[1], [1], [2], [2]],
        images=["I", "I", "J", "J"], trainer_state="state",
    )
    assert seen["completions"] == completions and seen["prompts"] == prompts
    assert seen["completion_ids"] == [[1], [1], [2], [2]]
    assert seen["images"] == ["J", "J", "I", "I"] and seen["trainer_state"] == "state"


def test_dense_token_rewards_read_another_clips_rows_and_keep_their_attributes():
    seen = []

    def dense(texts, completion_ids, inputs):
        seen.extend(row["id"] for row in inputs)
        return [[0.0] * len(ids) for ids in completion_ids]

    dense.span, dense.pays = "description", "clip_alignment"
    control = rc.token_rewards_against_other_clips(dense, GROUP)
    control(["t"] * 4, [[1]] * 4, [{"id": "1"}, {"id": "1"}, {"id": "2"}, {"id": "2"}])
    assert seen == ["2", "2", "1", "1"]
    assert (control.span, control.pays) == ("description", "clip_alignment")


def _recipe_and_args(*overrides: str):
    from recipes.config import parse_recipe
    from recipes.stage1 import stage1

    return parse_recipe(stage1.RECIPE_TYPES, ["--config", "recipes/stage1/stage1_demo.yaml", *overrides])


def test_build_rewards_wraps_every_reward_when_the_recipe_asks_for_the_control():
    from recipes.rl import build_rewards

    recipe, training_args, _ = _recipe_and_args("--reward_control", "true")
    (reward,) = build_rewards(recipe, training_args)
    assert getattr(reward, "__wrapped__", None) is not None and reward.__name__ == "clip_alignment"
    recipe, training_args, _ = _recipe_and_args()
    (reward,) = build_rewards(recipe, training_args)
    assert getattr(reward, "__wrapped__", None) is None


def test_the_control_needs_two_clips_per_generation_batch_and_says_so_before_training():
    from recipes.rl import build_rewards

    recipe, training_args, _ = _recipe_and_args(
        "--reward_control", "true", "--per_device_train_batch_size", "8", "--num_generations", "8"
    )
    with pytest.raises(RecipeError, match="at least 2 clips per generation batch"):
        build_rewards(recipe, training_args)


def test_stage1_hands_the_control_to_its_trainer(monkeypatch):
    """Stage 1's dense increments are built inside the trainer factory: the switch must reach it."""
    from recipes.stage1 import stage1

    captured = {}
    monkeypatch.setattr(stage1, "run_rl_stage", lambda *a, trainer_cls, **k: captured.update(trainer_cls.keywords))
    stage1.main(["--config", "recipes/stage1/stage1_demo.yaml", "--reward_control", "true"])
    assert captured["reward_control"] is True


def test_build_rl_trainer_feeds_the_dense_rewards_another_clip(tiny_vlm_dir, tmp_path):
    import numpy as np
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from recipes import actor_critic as ac

    seen = []

    def dense(texts, completion_ids, inputs):
        seen.extend(row["id"] for row in inputs)
        return [[0.0] * len(ids) for ids in completion_ids]

    generations, rng = 2, np.random.default_rng(0)
    prompt = [{"role": "user", "content": [{"type": "image"}]}]
    clips = Dataset.from_list([
        {"id": f"clip-{i}", "prompt": prompt, "images": [Image.fromarray(rng.integers(0, 256, (48, 64, 3), np.uint8))]}
        for i in range(2)
    ])
    args = ac.ActorCriticConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2 * generations, num_generations=generations,
        max_completion_length=4, max_steps=1, report_to="none", bf16=False, use_cpu=True, save_strategy="no",
        disable_tqdm=True, seed=0,
    )
    trainer = ac.build_rl_trainer(
        "actor_critic", model=AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir), args=args,
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions), train_dataset=clips,
        processing_class=AutoProcessor.from_pretrained(tiny_vlm_dir), token_reward_fn=dense, reward_control=True,
    )
    trainer.model.train()
    trainer._generate_and_score_completions([clips[0]] * generations + [clips[1]] * generations)
    assert seen == ["clip-1"] * generations + ["clip-0"] * generations
