"""Stage "stage2": actions and their justification, by GRPO on R2 (action F1 + reason F1 +
consistency; rewards/action_reasoning.py), optionally mixed with R1 (CLIP alignment).

    python -m recipes.stage2.stage2 --config recipes/stage2/stage2.yaml [--key value ...]
"""

from trl import GRPOConfig, ModelConfig

from recipes import common


# The dataclasses this stage's recipe YAML is parsed onto (also read by tests/test_readme.py).
RECIPE_TYPES = (common.RLRecipeArguments, GRPOConfig, ModelConfig)


def main(argv: list[str] | None = None) -> None:
    recipe, training_args, model_args = common.parse_recipe(RECIPE_TYPES, argv)
    common.run_rl_stage(recipe, training_args, model_args)


if __name__ == "__main__":
    common.run_cli(main)
