"""Stage "sft": the supervised warm start. The model sees M frames (no text) and learns to answer
with the target answer (by default the full JSON). The loss covers the answer only: with a
prompt/completion dataset, TRL masks the prompt (completion_only_loss).

    python -m recipes.sft.sft --config recipes/sft/sft.yaml [--key value ...]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from transformers import TrainerCallback
from trl import ModelConfig, SFTConfig, SFTTrainer

from recipes.checkpoints import resolve_resume
from recipes.cli import run_cli, setup_logging
from recipes.config import RecipeArguments, apply_precision, parse_recipe, recipe_as_dict
from recipes.data import load_split, log_token_budget, with_answer_turn
from recipes.model_loading import configure_vision_tower, load_model, load_processor, lora_config
from recipes.saving import save_stage


@dataclass
class SFTRecipeArguments(RecipeArguments):
    target_column: str = field(
        default="answer_json",
        metadata={"help": "Dataset column the model learns to say: answer_json or answer_text."},
    )


# The dataclasses this stage's recipe YAML is parsed onto (also read by tests/test_readme.py).
RECIPE_TYPES = (SFTRecipeArguments, SFTConfig, ModelConfig)


def main(argv: list[str] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> None:
    """Parse, load, train, save. ``callbacks`` are handed to the trainer (a benchmark measures
    steps through one)."""
    recipe, training_args, model_args = parse_recipe(RECIPE_TYPES, argv)
    setup_logging(training_args)
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)  # before loading
    precision = apply_precision(training_args, recipe.precision)

    processor = load_processor(model_args, recipe)
    model = load_model(model_args, precision)
    optimizer = configure_vision_tower(model, recipe, training_args, model_args.use_peft)

    datasets = {
        name: load_split(recipe, split, limit, [recipe.target_column])
        for name, split, limit in (
            ("train", recipe.train_split, recipe.max_train_samples),
            ("eval", recipe.eval_split, recipe.max_eval_samples),
        )
    }
    datasets = {name: with_answer_turn(data, recipe.target_column) for name, data in datasets.items()}
    log_token_budget(processor, datasets["train"][0])

    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["eval"],
        processing_class=processor,
        peft_config=lora_config(model_args),
        optimizers=(optimizer, None),
        callbacks=list(callbacks) or None,
    )
    trainer.train(resume_from_checkpoint=resume)
    save_stage(trainer, processor, training_args.output_dir, recipe_as_dict(recipe, training_args, model_args))


if __name__ == "__main__":
    run_cli(main)
