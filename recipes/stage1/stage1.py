"""Stage "stage1": prompt-free scene description, rewarded by CLIP alignment R1 between the mean of
the frames' CLIP embeddings and the description. Trained actor-critic (a value head on the policy's
hidden states, GAE over per-token incremental rewards; recipes/actor_critic.py) or, with
``algorithm: grpo``, by plain critic-free GRPO on the same reward.

    python -m recipes.stage1.stage1 --config recipes/stage1/stage1.yaml [--key value ...]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence

from transformers import TrainerCallback
from trl import ModelConfig

from recipes.actor_critic import ALGORITHMS, ActorCriticConfig, build_rl_trainer
from recipes.cli import run_cli
from recipes.config import RLRecipeArguments, parse_recipe
from recipes.rl import reward_params, run_rl_stage

CLIP_REWARD = "clip_alignment"


@dataclass
class Stage1RecipeArguments(RLRecipeArguments):
    algorithm: str = field(default="actor_critic", metadata={"help": f"One of {ALGORITHMS}."})


# The dataclasses this stage's recipe YAML is parsed onto (also read by tests/test_readme.py).
RECIPE_TYPES = (Stage1RecipeArguments, ActorCriticConfig, ModelConfig)


def main(argv: list[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> None:
    recipe, training_args, model_args = parse_recipe(RECIPE_TYPES, argv)
    # The dense per-token rewards are the increments of the same CLIP reward the recipe lists.
    trainer_factory = functools.partial(
        build_rl_trainer, recipe.algorithm, clip_token_reward_params=reward_params(recipe).get(CLIP_REWARD, {}),
        reward_control=recipe.reward_control,
    )
    run_rl_stage(recipe, training_args, model_args, trainer_cls=trainer_factory, callbacks=callbacks)


if __name__ == "__main__":
    run_cli(main)
