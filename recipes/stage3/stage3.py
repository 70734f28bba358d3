"""Stage "stage3": the full JSON answer, by GRPO on R3 (schema validity, completeness,
consistency, no text outside the JSON; rewards/structure.py), optionally mixed with R1 and R2.

    python -m recipes.stage3.stage3 --config recipes/stage3/stage3.yaml [--key value ...]
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
