"""Stage "stage2": actions and their justification, by GRPO on R2 (action F1 + reason F1 +
consistency; rewards/action_reasoning.py), optionally mixed with R1 (CLIP alignment).

    python -m recipes.stage2.stage2 --config recipes/stage2/stage2.yaml [--key value ...]
"""

from typing import Sequence

from transformers import TrainerCallback
from trl import GRPOConfig, ModelConfig

from recipes.cli import run_cli
from recipes.config import RLRecipeArguments, parse_recipe
from recipes.rl import run_rl_stage


# The dataclasses this stage's recipe YAML is parsed onto (also read by tests/test_readme.py).
RECIPE_TYPES = (RLRecipeArguments, GRPOConfig, ModelConfig)


def main(argv: list[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> None:
    recipe, training_args, model_args = parse_recipe(RECIPE_TYPES, argv)
    run_rl_stage(recipe, training_args, model_args, callbacks=callbacks)


if __name__ == "__main__":
    run_cli(main)
