"""Stage "stage3": the full JSON answer, by GRPO on R3 (schema validity, completeness,
consistency, no text outside the JSON; rewards/structure.py), optionally mixed with R1 and R2.

    python -m recipes.stage3.stage3 --config recipes/stage3/stage3.yaml [--key value ...]
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
