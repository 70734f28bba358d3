"""The answer format: what the model is trained to say, and the one parser that reads it.

Rewards and evaluation both read answers through :func:`parse_answer`, so training optimises
exactly what is scored. An answer is a JSON object (``answer.schema.json``)::

    {"description": "...", "actions": {"forward": true, "stop": false, "left": false, "right": false},
     "reasons": ["green_light", "solid_line_left"], "justification": "..."}

When the text holds no JSON object, a tolerant parser looks for the canonical action and reason
keys and phrases instead, so sloppy output still yields label sets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from taxonomy.labels import ACTIONS, ACTION_KEYS, REASON_BY_KEY, REASONS, SUPPORTS

SCHEMA_PATH = Path(__file__).with_name("answer.schema.json")


@lru_cache(maxsize=1)
def answer_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------------------------------------
# Writing answers (targets for training, the justification text)


def justification_text(actions: Iterable[str], reasons: Iterable[str]) -> str:
    """A sentence per action group naming the reasons, e.g. "Move forward: the road is clear."

    Every reason's readable phrase appears verbatim, which is what the consistency reward checks.
    """
    action_set, reason_list = set(actions), list(reasons)
    parts = []
    for action in ACTIONS:
        for effect, verb in ((SUPPORTS, action.phrase), ("rules_out", f"cannot {action.phrase}")):
            phrases = [
                REASON_BY_KEY[k].phrase
                for k in reason_list
                if k in REASON_BY_KEY
                and REASON_BY_KEY[k].action == action.key
                and REASON_BY_KEY[k].effect == effect
            ]
            if phrases:
                parts.append(f"{verb.capitalize()}: {', '.join(phrases)}.")
    if not parts:  # no reasons given: still say what was decided
        chosen = [a.phrase for a in ACTIONS if a.key in action_set]
        parts.append(f"{', '.join(chosen).capitalize() or 'No action'}.")
    return " ".join(parts)


def format_answer(description: str, actions: Iterable[str], reasons: Iterable[str]) -> str:
    """The canonical JSON answer (compact, keys in schema order, reasons in taxonomy order)."""
    action_set = set(actions)
    reason_set = set(reasons)
    ordered_reasons = [r.key for r in REASONS if r.key in reason_set]
    obj = {
        "description": description,
        "actions": {k: k in action_set for k in ACTION_KEYS},
        "reasons": ordered_reasons,
        "justification": justification_text(action_set, ordered_reasons),
    }
    return json.dumps(obj, ensure_ascii=False)


def format_text_answer(description: str, actions: Iterable[str], reasons: Iterable[str]) -> str:
    """The same content as plain text (an alternative SFT target; the parser reads both)."""
    action_set = set(actions)
    reason_set = set(reasons)
    chosen = [a.phrase for a in ACTIONS if a.key in action_set]
    reason_phrases = [r.phrase for r in REASONS if r.key in reason_set]
    return (
        f"Scene: {description}\n"
        f"Actions: {', '.join(chosen) or 'none'}\n"
        f"Reasons: {'; '.join(reason_phrases) or 'none'}"
    )


# ---------------------------------------------------------------------------------------------
# Reading answers


@dataclass
class ParsedAnswer:
    """Label sets read from a model answer. ``is_json`` tells which parser produced them."""

    actions: set[str] = field(default_factory=set)
    reasons: set[str] = field(default_factory=set)
    description: str = ""
    justification: str = ""
    is_json: bool = False  # a JSON object was found and decoded
    json_object: dict | None = None  # the decoded object, for schema checks
    text_outside_json: str = ""  # characters around the first JSON object (stripped)
    json_objects_found: int = 0  # how many top-level JSON objects the text holds

    @property
    def empty(self) -> bool:
        return not self.actions and not self.reasons


_DECODER = json.JSONDecoder()
# Matching is on lower-cased text with runs of whitespace, "_", "-" folded to one space, so that
# "road_clear", "road clear" and "Road-Clear" all match.
_FOLD = re.compile(r"[\s_\-]+")


def _fold(text: str) -> str:
    return _FOLD.sub(" ", text.lower())


# The fields of an answer object; a JSON object with none of them is not an answer (e.g. the
# nested "actions" object of an answer cut off before its closing brace).
ANSWER_FIELDS = ("description", "actions", "reasons", "justification")


def _json_objects(text: str, limit: int = 8) -> list[tuple[int, int, Any]]:
    """JSON answer objects in the text as (start, end, value), at most ``limit``."""
    found, pos = [], 0
    while len(found) < limit:
        start = text.find("{", pos)
        if start < 0:
            break
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            pos = start + 1
            continue
        if isinstance(value, dict) and any(k in value for k in ANSWER_FIELDS):
            found.append((start, end, value))
            pos = end
        else:
            pos = start + 1
    return found


def _as_key_set(value: Any, vocabulary: tuple[str, ...]) -> set[str]:
    """Keys from a JSON field given as {key: bool}, a list of keys, or free text."""
    if isinstance(value, dict):
        return {k for k, v in value.items() if k in vocabulary and v is True}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, str) and v in vocabulary}
    if isinstance(value, str):
        return _phrases_in(value, vocabulary)
    return set()


@lru_cache(maxsize=None)
def _patterns(vocabulary: tuple[str, ...]) -> tuple[tuple[str, re.Pattern], ...]:
    """For each key, one regex matching its key or its readable phrase as whole words."""
    phrase_of = {a.key: a.phrase for a in ACTIONS} | {r.key: r.phrase for r in REASONS}
    out = []
    for key in vocabulary:
        spellings = {_fold(key), _fold(phrase_of[key])}
        alternatives = "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True))
        out.append((key, re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")))
    return tuple(out)


def _phrases_in(text: str, vocabulary: tuple[str, ...]) -> set[str]:
    folded = _fold(text)
    return {key for key, pattern in _patterns(vocabulary) if pattern.search(folded)}


_NEGATED_ACTION = re.compile(r"(?:cannot|can't|can not|not|no)\s+(move forward|turn left|turn right)")


def _text_actions(text: str) -> set[str]:
    """Actions named in free text, ignoring negated mentions ("cannot turn left")."""
    # Remove reason phrases first: "the traffic light allows turning left" is not the action.
    folded = _fold(text)
    for _, pattern in _patterns(tuple(r.key for r in REASONS)):
        folded = pattern.sub(" ", folded)
    folded = _NEGATED_ACTION.sub(" ", folded)
    return _phrases_in(folded, ACTION_KEYS)


_SALVAGE_ACTIONS = re.compile(r'"actions"\s*:\s*(\{[^{}]*\})')
_SALVAGE_REASONS = re.compile(r'"reasons"\s*:\s*\[([^\]]*)')
_SALVAGE_STRING = {
    name: re.compile(rf'"{name}"\s*:\s*"((?:[^"\\]|\\.)*)"') for name in ("description", "justification")
}
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _salvage_json_fields(text: str) -> ParsedAnswer | None:
    """Fields of a JSON answer that is not valid JSON (cut off at the length limit, say).

    Reads only complete pieces: the ``actions`` object, the complete strings of ``reasons`` and
    the complete description/justification strings. None when no field is found.
    """
    actions: set[str] = set()
    reasons: set[str] = set()
    found = False
    match = _SALVAGE_ACTIONS.search(text)
    if match:
        try:
            actions = _as_key_set(json.loads(match.group(1)), ACTION_KEYS)
            found = True
        except json.JSONDecodeError:
            pass
    match = _SALVAGE_REASONS.search(text)
    if match:
        listed = _QUOTED.findall(match.group(1))
        reasons = {r for r in listed if r in REASON_BY_KEY}
        found = True
    strings = {}
    for name, pattern in _SALVAGE_STRING.items():
        match = pattern.search(text)
        if match:
            try:
                strings[name] = json.loads(f'"{match.group(1)}"')
                found = True
            except json.JSONDecodeError:
                strings[name] = match.group(1)
    if not found:
        return None
    return ParsedAnswer(
        actions=actions,
        reasons=reasons,
        description=strings.get("description", ""),
        justification=strings.get("justification", ""),
        text_outside_json=text,
    )


def parse_answer(text: Any, max_chars: int = 20_000) -> ParsedAnswer:
    """Read label sets from a model answer. Never raises; garbage gives an empty answer.

    JSON first: the first JSON object with an answer field is read by its fields. A JSON answer
    that does not decode (cut off at the length limit) gives its complete fields (``is_json``
    False). Otherwise the canonical keys and phrases of actions and reasons are searched for in
    the text.
    ``max_chars`` bounds the work on runaway generations.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text[:max_chars].strip()
    objects = _json_objects(text)
    if objects:
        start, end, obj = objects[0]
        description = obj.get("description")
        justification = obj.get("justification")
        return ParsedAnswer(
            actions=_as_key_set(obj.get("actions"), ACTION_KEYS),
            reasons=_as_key_set(obj.get("reasons"), tuple(REASON_BY_KEY)),
            description=description if isinstance(description, str) else "",
            justification=justification if isinstance(justification, str) else "",
            is_json=True,
            json_object=obj,
            text_outside_json=(text[:start] + text[end:]).strip(),
            json_objects_found=len(objects),
        )
    # A JSON answer that does not decode (cut off): read its complete fields, not its words.
    salvaged = _salvage_json_fields(text)
    if salvaged is not None:
        return salvaged
    # Plain text: "Scene: ...\nActions: ...\nReasons: ..." or anything else.
    scene = re.search(r"scene:\s*(.*)", text, flags=re.IGNORECASE)
    actions_line = re.search(r"actions?:\s*(.*)", text, flags=re.IGNORECASE)
    reasons_line = re.search(r"reasons?:\s*(.*)", text, flags=re.IGNORECASE)
    action_text = actions_line.group(1) if actions_line else text
    reason_text = reasons_line.group(1) if reasons_line else text
    return ParsedAnswer(
        actions=_text_actions(action_text),
        reasons=_phrases_in(reason_text, tuple(REASON_BY_KEY)),
        description=(scene.group(1).strip() if scene else text),
        text_outside_json=text,
    )


def description_span(text: Any) -> str:
    """The part of an answer that describes the scene (what CLIP scores)."""
    return parse_answer(text).description
