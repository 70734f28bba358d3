"""Where a model comes from: a local folder saved with ``save_pretrained`` or a hub id at a
revision. Checked before anything loads, so a wrong path or an unreachable hub fails at once with
what to do, instead of minutes of the hub client's retries or a loader error deep in transformers."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, snapshot_download
from safetensors import SafetensorError, safe_open

# Seconds to wait for the model hub's host before calling it unreachable (an offline machine
# otherwise spends minutes in the hub client's retries before saying so).
HUB_CONNECT_TIMEOUT_S = 3.0
# the one file fetched to prove a hub model (at a revision) exists and is readable
PROBE_FILE = "config.json"
ADVICE = (
    "Point the recipe at a local model folder with --model_name_or_path /path/to/SmolVLM-Instruct (a folder "
    "saved with save_pretrained), or run `make demo`, which builds a tiny SmolVLM-shaped model offline."
)


class ModelSourceError(ValueError):
    """The model cannot be loaded from where it was named; the message names it and says what to do."""


def looks_local(name_or_path: str) -> bool:
    """A path, not a hub id ("org/name"): starts with ./ ../ / ~, has more or fewer than one
    slash, or its first component is a folder here (``work/nope`` when ``work/`` exists)."""
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") != 1:
        return True
    return Path(name_or_path).parent.is_dir()


def hub_reachable(timeout: float = HUB_CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds."""
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_model_source(name_or_path: str, revision: str | None = None) -> None:
    """Fail at once, with what to do, when the model cannot be loaded: a local folder that is not
    there, or a hub model (at ``revision``) that is neither cached nor reachable."""
    if Path(name_or_path).expanduser().is_dir():
        return
    if looks_local(name_or_path):
        raise ModelSourceError(
            f"model folder not found: {name_or_path} (train the stage before it first, e.g. `make sft`, or "
            "point --model_name_or_path at a folder saved with save_pretrained)"
        )
    try:  # cached: nothing to reach
        snapshot_download(name_or_path, revision=revision, allow_patterns=[PROBE_FILE], local_files_only=True)
        return
    except Exception:  # noqa: BLE001 - not cached (hub client errors vary)
        pass
    at = f" at revision {revision!r}" if revision else ""
    if constants.HF_HUB_OFFLINE or not hub_reachable():
        raise ModelSourceError(
            f"cannot load {name_or_path!r}{at}: it is not in the local cache and the model hub "
            f"({constants.ENDPOINT}) is not reachable from here. {ADVICE}"
        )
    try:
        snapshot_download(name_or_path, revision=revision, allow_patterns=[PROBE_FILE])
    except Exception as err:  # noqa: BLE001 - hub errors vary (no such repo or revision, gated, network)
        raise ModelSourceError(
            f"cannot load {name_or_path!r}{at} from the model hub ({type(err).__name__}: {err}). {ADVICE}"
        ) from err


def check_weight_files(folder: str | Path) -> None:
    """Every ``*.safetensors`` in a local model folder opens (a copy cut short, a corrupt
    download): a clear error naming the file instead of a loader error deep in transformers."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ModelSourceError(
                f"{path} is truncated or corrupt ({err}); copy or download the model again, or re-run the stage "
                "that wrote it"
            ) from None
