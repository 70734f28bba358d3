"""Reward registry and the plumbing every reward shares.

TRL 1.16's GRPOTrainer calls each reward as
``f(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=..., log_extra=...,
log_metric=...)`` where every dataset column (``actions``, ``reasons``, ``images``, ``id``, ...) is a
list with one entry per completion, and logs it under the name ``trl.trainer.utils.get_callable_name``
gives: a function's ``__name__``, the wrapped function's for a ``functools.partial``, else the
object's ``__name__`` attribute or class name.

Registered rewards are plain functions ``f(completions, *, <params with defaults>, **columns)``.
:func:`build_reward` binds parameters (from YAML) and returns a :class:`ConfiguredReward`: a
picklable callable with ``.func``/``.keywords`` like a partial and a stable ``__name__`` (a real
``functools.partial`` would be logged under the wrapped function's name, which hides the binding).

Shared helpers: :func:`completion_text` reads a completion that is a string or a conversational
message list; :func:`score_each` runs a per-completion scorer so that model output can never raise.
A scorer that raises anyway is counted per reward (:func:`failure_counts`, reported to TRL as the
metric ``<reward>/failures``): a failure scores the floor, which would otherwise look exactly like
a legitimately bad answer.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list]

# Modules that register the built-in rewards; imported on first lookup so that importing the
# registry (or one reward) never drags in torch/open_clip.
BUILTIN_REWARD_MODULES = ("rewards.action_reasoning", "rewards.structure", "rewards.clip_alignment",
                          "rewards.description_match")
# Bound on the exception messages logged per reward when a scorer fails on model output.
MAX_LOGGED_FAILURES = 5

_REGISTRY: dict[str, RewardFn] = {}
# Scorer failures per reward name since the last reset_failure_counts() (process-wide).
_failure_counts: dict[str, int] = {}
# Failures logged with a traceback per reward; never reset, so that a reset cannot flood the log.
_failures_logged: dict[str, int] = {}


def register_reward(name: str, span: str = "answer") -> Callable[[RewardFn], RewardFn]:
    """Decorator: register a reward function under ``name`` (the name YAML files and logs use).

    ``span`` says which part of an answer the reward judges (``taxonomy.spans.SPANS``: the
    description, the labels, the whole answer); an actor-critic puts advantages there only.
    """

    def decorate(func: RewardFn) -> RewardFn:
        if name in _REGISTRY and _REGISTRY[name] is not func:
            existing = _REGISTRY[name]
            if (existing.__module__, existing.__qualname__) != (func.__module__, func.__qualname__):
                raise ValueError(f"reward name {name!r} is already registered to {existing.__qualname__}")
        _REGISTRY[name] = func
        func.reward_name = name  # type: ignore[attr-defined]
        func.span = span  # type: ignore[attr-defined]
        return func

    return decorate


def reward_span(reward: Any) -> str:
    """The span a reward callable judges: its ``span`` attribute, or its wrapped function's (a
    :class:`ConfiguredReward`); ``"answer"`` when it does not say."""
    return getattr(reward, "span", None) or getattr(getattr(reward, "func", None), "span", None) or "answer"


def _load_builtins() -> None:
    for module in BUILTIN_REWARD_MODULES:
        importlib.import_module(module)


def registered_rewards() -> list[str]:
    """Names of every registered reward (built-ins included)."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_reward(name: str) -> RewardFn:
    """The registered reward function with its default parameters."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown reward {name!r}; known rewards: {', '.join(sorted(_REGISTRY))}"
        ) from None


def reward_parameters(name: str) -> dict[str, Any]:
    """The configurable parameters of a reward and their defaults (its keyword-only arguments)."""
    func = get_reward(name)
    return {
        p.name: p.default
        for p in inspect.signature(func).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


class ConfiguredReward:
    """A registered reward with bound parameters: a TRL-ready callable with a stable ``__name__``.

    Behaves like ``functools.partial(func, **keywords)`` (``.func``, ``.keywords``) but is not one,
    so that TRL logs it as ``__name__`` rather than unwrapping it to the function's own name.
    """

    def __init__(self, func: RewardFn, keywords: Mapping[str, Any], name: str):
        self.func = func
        self.keywords = dict(keywords)
        self.__name__ = name
        self.__qualname__ = name
        self.__doc__ = func.__doc__

    def __call__(self, completions: Any = None, **kwargs: Any) -> list:
        # Configured parameters win over same-named dataset columns: the YAML is the intent.
        return self.func(completions, **{**kwargs, **self.keywords})

    def __repr__(self) -> str:
        bound = ", ".join(f"{k}={v!r}" for k, v in self.keywords.items())
        return f"<reward {self.__name__}: {self.func.__qualname__}({bound})>"


def build_reward(name: str, *, display_name: str | None = None, **params: Any) -> ConfiguredReward:
    """The reward ``name`` with parameters bound, e.g. ``build_reward("action_reasoning", w_actions=.5)``.

    Unknown parameter names raise a ValueError listing the accepted ones (a typo in a YAML file
    must not silently fall back to a default). ``display_name`` overrides the logged name.
    """
    accepted = reward_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"reward {name!r} has no parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted)) or '(none)'}"
        )
    return ConfiguredReward(get_reward(name), params, display_name or name)


def resolve_rewards(
    names: Sequence[str | Mapping[str, Any]],
    weights: Sequence[float] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[ConfiguredReward], list[float] | None]:
    """TRL-ready reward callables and their weights (``GRPOConfig.reward_weights``) from config.

    ``names`` lists reward names, or mappings ``{"name": ..., **params}``; ``params`` maps a
    reward name to its parameters (both forms may be combined; a mapping entry wins). ``weights``
    is one finite float per reward, or None (TRL then weighs every reward 1). Names logged by TRL
    are made unique (``name``, ``name_2``, ...) when a reward is listed twice.
    """
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise ValueError(f"reward names must be a list, got {names!r}")
    params = dict(params or {})
    _load_builtins()
    unknown_params = sorted(set(params) - set(_REGISTRY))
    if unknown_params:
        raise ValueError(
            f"reward parameters given for unknown reward(s) {', '.join(unknown_params)}; "
            f"known rewards: {', '.join(sorted(_REGISTRY))}"
        )
    funcs: list[ConfiguredReward] = []
    seen: dict[str, int] = {}
    for entry in names:
        if isinstance(entry, Mapping):
            entry = dict(entry)
            if "name" not in entry:
                raise ValueError(f"reward entry {entry!r} has no 'name'")
            name = entry.pop("name")
            bound = {**params.get(name, {}), **entry}
        elif isinstance(entry, str):
            name, bound = entry, dict(params.get(entry, {}))
        else:
            raise ValueError(f"reward entry must be a name or a mapping, got {entry!r}")
        seen[name] = seen.get(name, 0) + 1
        display = name if seen[name] == 1 else f"{name}_{seen[name]}"
        funcs.append(build_reward(name, display_name=display, **bound))
    if weights is None:
        return funcs, None
    weights = list(weights)
    if len(weights) != len(funcs):
        raise ValueError(f"{len(funcs)} rewards ({[f.__name__ for f in funcs]}) but {len(weights)} weights")
    for func, weight in zip(funcs, weights):
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight):
            raise ValueError(f"reward weight for {func.__name__} must be a finite number, got {weight!r}")
    return funcs, [float(w) for w in weights]


# ---------------------------------------------------------------------------------------------
# Shared helpers for reward implementations


def _content_text(content: Any) -> str:
    """Text of a message content: a string, or a list of parts ``{"type": "text", "text": ...}``."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    return ""


def completion_text(completion: Any) -> str:
    """The text of one completion as TRL passes it; never raises.

    A string is returned as is; a conversational completion (a list of messages ``{"role",
    "content"}``, or one such message) gives the concatenated text of its assistant messages (of
    all messages when none is marked assistant). Anything else gives "".
    """
    try:
        if completion is None:
            return ""
        if isinstance(completion, str):
            return completion
        if isinstance(completion, Mapping):
            completion = [completion]
        if isinstance(completion, (list, tuple)):
            messages = [m for m in completion if isinstance(m, Mapping)]
            assistant = [m for m in messages if m.get("role") == "assistant"]
            return "".join(_content_text(m.get("content")) for m in (assistant or messages))
    except Exception:  # noqa: BLE001 - model output must never raise
        return ""
    return ""


def column(kwargs: Mapping[str, Any], name: str, size: int, reward: str) -> list:
    """Dataset column ``name`` from the reward kwargs, checked to hold one entry per completion.

    A missing or misaligned column is a configuration error (not model output): it raises a
    ValueError that names the reward and the column.
    """
    values = kwargs.get(name)
    if values is None:
        raise ValueError(
            f"reward {reward!r} needs the dataset column {name!r}; columns received: "
            f"{sorted(k for k in kwargs if k not in ('trainer_state', 'log_extra', 'log_metric'))}"
        )
    values = list(values)
    if len(values) != size:
        raise ValueError(
            f"reward {reward!r}: column {name!r} has {len(values)} entries for {size} completions"
        )
    return values


def as_completion_list(completions: Any) -> list:
    """The completions as a list (None or a single string count as one completion)."""
    if completions is None:
        return []
    if isinstance(completions, (str, Mapping)):
        return [completions]
    try:
        return list(completions)
    except TypeError:
        return [completions]


def clip(value: float, low: float, high: float) -> float:
    """``value`` clipped to [low, high]; NaN gives ``low`` (the minimum)."""
    if not isinstance(value, (int, float)) or math.isnan(value):
        return low
    return float(min(high, max(low, value)))


def failure_counts() -> dict[str, int]:
    """Scorer failures per reward name since the last :func:`reset_failure_counts` (a copy)."""
    return dict(_failure_counts)


def reset_failure_counts() -> None:
    """Forget the failure counts (tests reset them before exercising a reward)."""
    _failure_counts.clear()


def _record_failure(reward: str, index: int, low: float) -> None:
    """Count a scorer failure; log the first few per reward with their traceback."""
    _failure_counts[reward] = _failure_counts.get(reward, 0) + 1
    logged = _failures_logged.get(reward, 0)
    if logged < MAX_LOGGED_FAILURES:
        _failures_logged[reward] = logged + 1
        logger.exception("reward %s failed on completion %d; scoring it %s", reward, index, low)


def score_each(
    reward: str,
    scorer: Callable[[int, str], float],
    completions: Sequence[Any],
    low: float,
    high: float,
    *,
    log_metric: Any = None,
) -> list[float]:
    """``scorer(i, text)`` for each completion, clipped to [low, high]; a failure scores ``low``.

    A scorer raising on some model output is a bug to fix, but training must not die of it. So a
    failure is counted under ``reward`` (:func:`failure_counts`), the first few per reward are
    logged with their traceback, and, given TRL's ``log_metric``, the batch's failure count is
    logged as ``<reward>/failures`` (0 included, so a silent reward shows as a flat line at 0).
    """
    scores, failures = [], 0
    for i, completion in enumerate(completions):
        try:
            value = scorer(i, completion_text(completion))
        except Exception:  # noqa: BLE001 - rewards never raise on model output
            _record_failure(reward, i, low)
            failures += 1
            value = low
        scores.append(clip(value, low, high))
    log_means({"log_metric": log_metric}, reward, {"failures": [float(failures)]})
    return scores


def log_means(kwargs: Mapping[str, Any], reward: str, parts: Mapping[str, Sequence[float]]) -> None:
    """Log the batch mean of each reward component through TRL's ``log_metric`` when given."""
    log_metric = kwargs.get("log_metric")
    if not callable(log_metric):
        return
    for part, values in parts.items():
        if len(values):
            try:
                log_metric(f"{reward}/{part}", float(sum(values) / len(values)))
            except Exception:  # noqa: BLE001 - logging must not break training
                logger.debug("log_metric failed for %s/%s", reward, part, exc_info=True)
