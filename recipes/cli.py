"""What a stage script's process does around its ``main``: logging and tracking set up once, and a
user's mistake reported as one line instead of a traceback."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from core.logs import configure_logging
from core.model_source import ModelSourceError
from recipes.errors import RecipeError
from recipes.tracking import configure_tracking

# what a user can fix from the message alone: a wrong recipe or input, a model that cannot be found
USER_ERRORS = (RecipeError, ModelSourceError)


def setup_logging(training_args: Any) -> None:
    """The project's loggers at INFO, or at the trainer's ``log_level`` when one is set ("passive",
    the default, leaves transformers' verbosity alone); then the trackers ``report_to`` names."""
    explicit = training_args.log_level != "passive"
    configure_logging(training_args.get_process_log_level() if explicit else logging.INFO)
    configure_tracking(training_args)  # W&B offline without a login (never a prompt); TensorBoard without wandb


def run_cli(main: Callable[[], Any]) -> None:
    """Run a stage script's ``main``: a user error (a bad recipe, a missing model, a bad resume
    setting) is one line on stderr and exit status 2, not a chained traceback; anything else is a
    bug and keeps its traceback."""
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
