"""Stage "stage1": prompt-free scene description, rewarded by CLIP alignment R1 between the mean of
the frames' CLIP embeddings and the description. Trained actor-critic (a value head on the policy's
hidden states, GAE over per-token incremental rewards; recipes/actor_critic.py) or, with
``algorithm: grpo``, by plain critic-free GRPO on the same reward.

    python -m recipes.stage1.stage1 --config recipes/stage1/stage1.yaml [--key value ...]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from trl import ModelConfig

from recipes import common
from recipes.actor_critic import ALGORITHMS, ActorCriticConfig, build_rl_trainer

CLIP_REWARD = "clip_alignment"


@dataclass
class Stage1RecipeArguments(common.RLRecipeArguments):
    algorithm: str = field(default="actor_critic", metadata={"help": f"One of {ALGORITHMS}."})


# The dataclasses this stage's recipe YAML is parsed onto (also read by tests/test_readme.py).
RECIPE_TYPES = (Stage1RecipeArguments, ActorCriticConfig, ModelConfig)


def main(argv: list[str] | None = None) -> None:
    recipe, training_args, model_args = common.parse_recipe(RECIPE_TYPES, argv)
    reward_params = common.reward_params(recipe)
    # The dense per-token rewards are the increments of the same CLIP reward the recipe lists.
    trainer_factory = functools.partial(
        build_rl_trainer, recipe.algorithm, clip_token_reward_params=reward_params.get(CLIP_REWARD, {})
    )
    common.run_rl_stage(recipe, training_args, model_args, trainer_cls=trainer_factory)


if __name__ == "__main__":
    common.run_cli(main)
