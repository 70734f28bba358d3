"""Stage "sft": the supervised warm start. The model sees M frames (no text) and learns to answer
with the target answer (by default the full JSON). The loss covers the answer only: with a
prompt/completion dataset, TRL masks the prompt (completion_only_loss).

    python -m recipes.sft.sft --config recipes/sft/sft.yaml [--key value ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig, SFTTrainer

from recipes import common
from recipes.checkpoints import resolve_resume


@dataclass
class SFTRecipeArguments(common.RecipeArguments):
    target_column: str = field(
        default="answer_json",
        metadata={"help": "Dataset column the model learns to say: answer_json or answer_text."},
    )


# The dataclasses this stage's recipe YAML is parsed onto (also read by tests/test_readme.py).
RECIPE_TYPES = (SFTRecipeArguments, SFTConfig, ModelConfig)


def main(argv: list[str] | None = None) -> None:
    recipe, training_args, model_args = common.parse_recipe(RECIPE_TYPES, argv)
    common.setup_logging(training_args)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)  # before loading
    precision = common.apply_precision(training_args, recipe.precision)

    processor = common.load_processor(model_args, recipe)
    model = common.load_model(model_args, precision)
    optimizer = common.configure_vision_tower(model, recipe, training_args, model_args.use_peft)

    datasets = {
        name: common.load_split(recipe, split, limit, [recipe.target_column])
        for name, split, limit in (
            ("train", recipe.train_split, recipe.max_train_samples),
            ("eval", recipe.eval_split, recipe.max_eval_samples),
        )
    }
    datasets = {name: common.with_answer_turn(data, recipe.target_column) for name, data in datasets.items()}
    common.log_token_budget(processor, datasets["train"][0])

    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["eval"],
        processing_class=processor,
        peft_config=common.lora_config(model_args),
        optimizers=(optimizer, None),
    )
    trainer.train(resume_from_checkpoint=resume)
    common.save_stage(trainer, processor, training_args.output_dir, common.recipe_as_dict(recipe, training_args, model_args))


if __name__ == "__main__":
    common.run_cli(main)
