"""The RL stages' driver (stage1, stage2 and stage3 share everything but their rewards and trainer):
the recipe's rewards as TRL callables, then load, train with GRPO (or a subclass), save."""

from __future__ import annotations

import json
from typing import Any, Sequence

from transformers import TrainerCallback
from trl import GRPOTrainer

from recipes.checkpoints import resolve_resume
from recipes.cli import setup_logging
from recipes.config import RLRecipeArguments, apply_precision, recipe_as_dict
from recipes.data import load_split, log_token_budget, oversample_rare_labels
from recipes.errors import RecipeError
from recipes.model_loading import configure_vision_tower, load_model, load_processor, lora_config
from recipes.reward_control import check_groups, scored_against_other_clips
from recipes.saving import save_stage
from rewards.registry import resolve_rewards


def reward_params(recipe: RLRecipeArguments) -> dict[str, dict]:
    """``reward_params`` as a mapping (YAML gives one; the command line gives JSON)."""
    params = recipe.reward_params or {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as err:
            raise RecipeError(f"reward_params must be a mapping (JSON on the command line): {err}") from err
    if not isinstance(params, dict):
        raise RecipeError(f"reward_params must map reward names to their parameters, got {params!r}")
    return params


def build_rewards(recipe: RLRecipeArguments, training_args: Any) -> list:
    """The recipe's rewards as TRL callables, with parameters bound and weights checked."""
    params = reward_params(recipe)
    if not recipe.reward_funcs:
        raise RecipeError("reward_funcs is empty: list at least one reward (see rewards/registry.py)")
    try:
        funcs, weights = resolve_rewards(recipe.reward_funcs, training_args.reward_weights, params)
    except ValueError as err:
        raise RecipeError(f"rewards: {err}") from err
    training_args.reward_weights = weights
    if recipe.reward_control:
        check_reward_control(training_args)
        funcs = [scored_against_other_clips(f, training_args.num_generations) for f in funcs]
    return funcs


def check_reward_control(training_args: Any) -> None:
    """The control scores each group against another group of the same generation batch: it needs two."""
    per_generation = training_args.per_device_train_batch_size * training_args.steps_per_generation
    try:
        check_groups(per_generation, training_args.num_generations)
    except ValueError as err:
        raise RecipeError(
            f"{err}: per_device_train_batch_size x steps_per_generation = {per_generation} completions, "
            f"num_generations = {training_args.num_generations}"
        ) from err


def run_rl_stage(recipe: RLRecipeArguments, training_args: Any, model_args: Any, trainer_cls=None,
                 callbacks: Sequence[TrainerCallback] = (), **trainer_kwargs):
    """Load, build the rewards, train with GRPO (or a subclass), save. Returns the trainer.
    ``callbacks`` are handed to the trainer (a benchmark measures steps through one)."""
    setup_logging(training_args)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)  # before loading
    precision = apply_precision(training_args, recipe.precision)
    reward_funcs = build_rewards(recipe, training_args)  # before loading: a reward error is found fast
    processor = load_processor(model_args, recipe)
    model = load_model(model_args, precision)
    optimizer = configure_vision_tower(model, recipe, training_args, model_args.use_peft)
    train = load_split(recipe, recipe.train_split, recipe.max_train_samples, recipe.reward_columns)
    train = oversample_rare_labels(train, recipe.rare_label_share, recipe.rare_clip_repeats)
    evaluation = load_split(recipe, recipe.eval_split, recipe.max_eval_samples, recipe.reward_columns)
    log_token_budget(processor, train[0])

    trainer = (trainer_cls or GRPOTrainer)(
        model=model,
        args=training_args,
        reward_funcs=reward_funcs,
        train_dataset=train,
        eval_dataset=evaluation if training_args.eval_strategy != "no" else None,
        processing_class=processor,
        peft_config=lora_config(model_args),
        optimizers=(optimizer, None),
        callbacks=list(callbacks) or None,
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume)
    save_stage(trainer, processor, training_args.output_dir, recipe_as_dict(recipe, training_args, model_args))
    return trainer
