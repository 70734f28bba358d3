"""Experiment tracking for the stage scripts: :func:`configure_tracking` runs before the trainer
is built. The real recipes say ``report_to: wandb``; W&B then logs online when wandb finds a login
(``WANDB_API_KEY``, an identity token file, the netrc entry ``wandb login`` writes, or an api_key in
its settings file) and offline otherwise, so a run never stops at W&B's login prompt. A
``WANDB_MODE`` the user set is left alone. Without the wandb package the run logs to TensorBoard
instead (``<output_dir>/runs``), and says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WANDB_DEFAULT_PROJECT = "smoldrive"  # instead of transformers' "huggingface"
WANDB_DEFAULT_BASE_URL = "https://api.wandb.ai"  # W&B's cloud; WANDB_BASE_URL names another server
WANDB_DEFAULT_CONFIG_DIR = "~/.config/wandb"  # wandb's settings folder unless WANDB_CONFIG_DIR names another
WANDB_RUNS_FOLDER = "wandb"  # wandb writes runs to $WANDB_DIR/wandb (WANDB_DIR defaults to the working dir)
TENSORBOARD_RUNS_FOLDER = "runs"  # transformers' TensorBoardCallback default: <output_dir>/runs/<date>_<host>


def _is_main_process() -> bool:
    """Rank 0, or no launcher at all (read from the environment: no process group is needed)."""
    return int(os.environ.get("RANK", "0")) == 0


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def wandb_login_source() -> str | None:
    """Where wandb would find a login (an environment variable or a file), or None when there is none.

    Asks wandb's own readers what ``wandb.init`` consults before it would prompt: the environment,
    the netrc entry for the server's host, and an ``api_key`` in its settings files.
    """
    # wandb is optional (report_to may not name it) and slow to import: only when it is asked for
    from wandb import env
    from wandb.sdk.lib.settings_file import SettingsFiles
    from wandb.sdk.lib.wbauth import HostUrl
    from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth_with_source

    for variable in (env.API_KEY, env.IDENTITY_TOKEN_FILE):
        if os.environ.get(variable):
            return variable
    host = HostUrl(env.get_base_url() or WANDB_DEFAULT_BASE_URL)
    try:
        found = read_netrc_auth_with_source(host=host)
    except Exception as err:  # noqa: BLE001 - wandb's AuthenticationError: an entry that is no API key
        logger.warning("W&B: the netrc entry for %s is unusable (%s); treating it as no login", host.url, err)
        found = None
    if found is not None:
        return found.source
    global_settings = Path(os.environ.get(env.CONFIG_DIR) or WANDB_DEFAULT_CONFIG_DIR).expanduser() / "settings"
    settings = SettingsFiles(global_settings=global_settings, local_settings=Path(WANDB_RUNS_FOLDER) / "settings")
    if settings.all().get("api_key"):
        return str(settings.sources[0]) if settings.sources else "settings"
    return None


def configure_tracking(training_args: Any) -> list[str]:
    """Make ``training_args.report_to`` safe to run anywhere; returns the resolved list.

    - ``wandb`` listed, package installed: online with a login; with none, ``WANDB_MODE=offline``
      (never a login prompt) and a line saying where the run is written and how to upload it.
      A ``WANDB_MODE`` already set is respected. ``WANDB_PROJECT`` defaults to "smoldrive".
    - ``wandb`` listed, package missing: replaced by ``tensorboard`` (when installed), with a message.
    - ``tensorboard`` in the result: a line saying where the event files go.
    Call it before the trainer is built (the trainer reads ``report_to`` when it starts).
    """
    report_to = list(training_args.report_to or [])
    say = logger.info if _is_main_process() else logger.debug  # one message per run, not per process
    if "wandb" in report_to:
        if not _importable("wandb"):
            replacement = "tensorboard" if _importable("tensorboard") else None
            report_to = [r for r in report_to if r != "wandb"]
            if replacement and replacement not in report_to:
                report_to.append(replacement)
            logger.warning(
                "report_to lists wandb but the wandb package is not installed: %s (pip install wandb for W&B)",
                "logging to TensorBoard instead" if replacement else "no tracker is installed either; the "
                "losses and rewards are still saved in trainer_state.json",
            )
        else:
            os.environ.setdefault("WANDB_PROJECT", WANDB_DEFAULT_PROJECT)
            login = wandb_login_source()
            if os.environ.get("WANDB_MODE"):
                say("W&B: WANDB_MODE=%s (set by you), project %s", os.environ["WANDB_MODE"], os.environ["WANDB_PROJECT"])
            elif login is None:
                os.environ["WANDB_MODE"] = "offline"
                runs = Path(os.environ.get("WANDB_DIR") or ".").resolve() / WANDB_RUNS_FOLDER
                say(
                    "W&B: no login found (WANDB_API_KEY, or `wandb login`): logging OFFLINE to %s/offline-run-*. "
                    "Upload later with `wandb sync %s/offline-run-<date>-<id>` (after `wandb login`); "
                    "set WANDB_MODE=online to force online, or report_to: tensorboard|none.",
                    runs, runs,
                )
            else:
                say("W&B: logging online (login from %s), project %s", login, os.environ["WANDB_PROJECT"])
    if "tensorboard" in report_to:
        logdir = os.environ.get("TENSORBOARD_LOGGING_DIR") or str(Path(training_args.output_dir) / TENSORBOARD_RUNS_FOLDER)
        say("TensorBoard: event files in %s (view with `tensorboard --logdir %s`)", logdir, logdir)
    training_args.report_to = report_to
    return report_to
