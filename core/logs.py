"""The project's one logging set-up. Every module logs through ``logging.getLogger(__name__)``;
an entry point (a stage script, ``evaluate.record``, ``data_prep.prepare``) calls
:func:`configure_logging` once, which sets the format and the level of the project's packages."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the top-level packages whose loggers (``logging.getLogger(__name__)`` in their modules) are ours
PROJECT_PACKAGES = ("core", "taxonomy", "data_prep", "tiny_models", "rewards", "recipes", "evaluate", "benchmarks")


def configure_logging(level: int = logging.INFO) -> None:
    """INFO (or ``level``) for the project's messages; other libraries keep their own verbosity."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)
    for package in PROJECT_PACKAGES:
        logging.getLogger(package).setLevel(level)
