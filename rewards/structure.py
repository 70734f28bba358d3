"""R3 (stage 3): is the answer one clean, complete, schema-valid, self-consistent JSON object?

Graded, so that a policy that is almost there is told so. Read with
:func:`taxonomy.answer.parse_answer` (which strips surrounding whitespace, so the leading space
SmolVLM's chat template leaves costs nothing)::

    R3 = clip_[0,1]( w_parse * P + w_valid * V + w_complete * K + w_consistency * C
                     - w_outside * O - w_repeat * D )

- P = 1 when a JSON object was found and decoded, else 0 (then every other term is 0 too, except
  O: a text answer scores 0 overall).
- V = 1 when the object validates against ``taxonomy/answer.schema.json`` (Draft 2020-12) and
  repeats no key at any depth, else 0 (:attr:`taxonomy.answer.ParsedAnswer.schema_valid`).
  ``json.loads`` keeps the last of a repeated key silently, so without the key check an object
  with two ``"actions"`` (or two ``"forward"``) validated and scored as high as the clean one.
- K = completeness: the fraction of the schema's required fields (description, actions, reasons,
  justification) present and non-empty (a non-empty string or mapping; for ``reasons`` a list,
  empty included: "no reason applies" is a complete answer, the truthful one for such a clip).
- C = consistency, exactly R2's (:func:`rewards.action_reasoning.consistency`): reasons that agree
  with the predicted actions and are named by the justification; 0 without reasons.
- O = the fraction of the answer's characters outside the first JSON object (chatter, a second
  object, a runaway tail).
- D = repeated objects: (n - 1) / n for n top-level JSON objects in the answer (0 for one object;
  the parser counts at most 8).

Defaults: ``w_parse = 0.2, w_valid = 0.3, w_complete = 0.3, w_consistency = 0.2`` (sum 1) and
penalties ``w_outside = 0.2, w_repeat = 0.3``. Needs no dataset column.
"""

from __future__ import annotations

from typing import Any, Mapping

from jsonschema import Draft202012Validator

from rewards.action_reasoning import DEFAULT_LOGIC_SHARE, check_weights, consistency
from rewards.registry import as_completion_list, log_means, register_reward, score_each
from taxonomy.answer import ParsedAnswer, answer_schema, answer_validator as _answer_validator
from taxonomy.answer import is_schema_valid, parse_answer

NAME = "structure"
DEFAULT_W_PARSE = 0.2
DEFAULT_W_VALID = 0.3
DEFAULT_W_COMPLETE = 0.3
DEFAULT_W_CONSISTENCY = 0.2
DEFAULT_W_OUTSIDE = 0.2
DEFAULT_W_REPEAT = 0.3
# Characters of an answer that are read (the parser's own default bound): a runaway generation's
# tail past it is not parsed, yet still counts as text outside the object through the cut.
DEFAULT_MAX_CHARS = 20_000
TERMS = ("parse", "valid", "complete", "consistency", "outside", "repeat")
# The one field whose empty value is an answer: "reasons": [] says that no reason applies.
EMPTY_LIST_FIELD = "reasons"


# Kept names for callers: the validator and the check live in the parser's module, so that
# rewards and evaluation judge validity alike.
def answer_validator() -> Draft202012Validator:
    """The schema validator, built once (:func:`taxonomy.answer.answer_validator`)."""
    return _answer_validator()


def is_valid(obj: Any) -> bool:
    """Whether ``obj`` satisfies the answer schema; never raises (pathological objects are invalid).

    A decoded object cannot show repeated keys; :attr:`ParsedAnswer.schema_valid` checks both.
    """
    return is_schema_valid(obj)


def completeness(obj: Any) -> float:
    """Fraction of the schema's required fields that are present and non-empty."""
    required = answer_schema()["required"]
    if not isinstance(obj, Mapping):
        return 0.0
    filled = 0
    for field in required:
        value = obj.get(field)
        if isinstance(value, str):
            filled += bool(value.strip())
        elif isinstance(value, Mapping):
            filled += bool(value)
        elif isinstance(value, list):
            filled += bool(value) or field == EMPTY_LIST_FIELD  # [] says "no reason applies"
    return filled / len(required)


def score_components(parsed: ParsedAnswer, text_length: int, logic_share: float) -> dict[str, float]:
    """The six R3 terms of one parsed answer; ``text_length`` is the stripped answer's length."""
    if not parsed.is_json:
        no_object = {"parse": 0.0, "valid": 0.0, "complete": 0.0, "consistency": 0.0, "repeat": 0.0}
        return {**no_object, "outside": 1.0 if text_length else 0.0}
    outside = len(parsed.text_outside_json)
    objects = max(parsed.json_objects_found, 1)
    return {
        "parse": 1.0,
        "valid": float(parsed.schema_valid),
        "complete": completeness(parsed.json_object),
        "consistency": consistency(parsed, logic_share),
        "outside": min(1.0, outside / max(text_length, 1)),
        "repeat": (objects - 1) / objects,
    }


@register_reward(NAME)
def structure_reward(
    completions: Any = None,
    *,
    w_parse: float = DEFAULT_W_PARSE,
    w_valid: float = DEFAULT_W_VALID,
    w_complete: float = DEFAULT_W_COMPLETE,
    w_consistency: float = DEFAULT_W_CONSISTENCY,
    w_outside: float = DEFAULT_W_OUTSIDE,
    w_repeat: float = DEFAULT_W_REPEAT,
    logic_share: float = DEFAULT_LOGIC_SHARE,
    max_chars: int = DEFAULT_MAX_CHARS,
    **kwargs: Any,
) -> list[float]:
    """R3 per completion in [0, 1] (see the module docstring). Uses no dataset column."""
    check_weights(
        NAME, w_parse=w_parse, w_valid=w_valid, w_complete=w_complete, w_consistency=w_consistency
    )
    check_weights(NAME, allow_all_zero=True, w_outside=w_outside, w_repeat=w_repeat)
    completions = as_completion_list(completions)
    parts: dict[str, list[float]] = {k: [] for k in TERMS}

    def score(i: int, text: str) -> float:
        text = text[:max_chars]
        parsed = parse_answer(text, max_chars=max_chars)
        terms = score_components(parsed, len(text.strip()), logic_share)
        for key, value in terms.items():
            parts[key].append(value)
        return (
            w_parse * terms["parse"]
            + w_valid * terms["valid"]
            + w_complete * terms["complete"]
            + w_consistency * terms["consistency"]
            - w_outside * terms["outside"]
            - w_repeat * terms["repeat"]
        )

    scores = score_each(NAME, score, completions, 0.0, 1.0, log_metric=kwargs.get("log_metric"))
    log_means(kwargs, NAME, parts)
    return scores
