"""The answer format: what the model is trained to say, and the one parser that reads it.

Rewards and evaluation both read answers through :func:`parse_answer`, so training optimises
exactly what is scored. An answer is a JSON object (``answer.schema.json``)::

    {"description": "...", "actions": {"forward": true, "stop": false, "left": false, "right": false},
     "reasons": ["green_light", "solid_line_left"], "justification": "..."}

When the text holds no JSON object, a tolerant parser looks for the canonical action and reason
keys and phrases instead, so sloppy output still yields label sets.

Besides the label sets, :class:`ParsedAnswer` records how the answer deviates from the format, so
that rewards and evaluation read the same facts: keys repeated inside an object (``json.loads``
keeps the last one silently, so a second ``"actions"`` would go unnoticed), unknown or duplicated
entries of the label lists, a JSON answer that does not decode (``truncated``), text around the
object, several objects; and, from these, ``schema_valid`` and ``clean``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from taxonomy.labels import ACTIONS, ACTION_KEYS, REASON_BY_KEY, REASON_KEYS, REASONS, SUPPORTS, Action

SCHEMA_PATH = Path(__file__).with_name("answer.schema.json")
# Where the labels begin in a JSON answer: the first label field's key.
LABELS_KEY = '"actions":'


@lru_cache(maxsize=1)
def answer_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@lru_cache(maxsize=1)
def answer_validator():
    """The schema's Draft 2020-12 validator, built once (the schema itself is checked first).

    jsonschema is imported here, not at module level: reading labels must stay cheap.
    """
    from jsonschema import Draft202012Validator

    schema = answer_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def is_schema_valid(obj: Any) -> bool:
    """Whether ``obj`` satisfies the answer schema; never raises (pathological objects are invalid)."""
    try:
        return answer_validator().is_valid(obj)
    except RecursionError:
        return False


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


def answer_through_description(description: str) -> str:
    """The canonical answer up to where its labels begin: ``{"description": "...", "actions":``.

    A model continues it with the labels it reads from that description (the labels come after
    the description in every answer). The cut falls after the key's colon, where the tokenizers
    split the canonical answer, so the model continues from a token boundary it was trained on."""
    text = format_answer(description, (), ())
    return text[: text.index(LABELS_KEY) + len(LABELS_KEY)]


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
    # Format faults (all 0/False for a canonical answer). Counted in the answer object that was
    # read (the first one, or the fields salvaged from one that does not decode).
    duplicate_keys: int = 0  # names repeated inside an object, at any depth (json keeps the last)
    unknown_actions: int = 0  # keys (or list entries) of the actions field that are no action key
    unknown_reasons: int = 0  # entries of the reasons list that are no reason key (non-strings too)
    duplicate_reasons: int = 0  # entries of the reasons list that repeat an earlier reason key
    truncated: bool = False  # a JSON answer that does not decode (cut off): fields were salvaged

    @property
    def empty(self) -> bool:
        return not self.actions and not self.reasons

    @property
    def schema_valid(self) -> bool:
        """A JSON object was read, repeats no key and satisfies ``answer.schema.json``.

        A repeated key fails: the object then has no single meaning (``json.loads`` keeps the last
        value silently, while other readers keep the first), which the schema cannot see.
        """
        return self.is_json and self.duplicate_keys == 0 and is_schema_valid(self.json_object)

    @property
    def clean(self) -> bool:
        """The answer is exactly one schema-valid JSON object: nothing around it, no second one,
        and its text fields say something (the schema's ``minLength`` counts a lone space)."""
        return (
            self.schema_valid
            and self.json_objects_found == 1
            and not self.text_outside_json
            and all(text.strip() for text in (self.description, self.justification))
        )


class _RepeatedKeyCounter:
    """A json ``object_pairs_hook`` that builds objects as ``json.loads`` does (the last value of a
    repeated name wins) and counts the repeated names that ``json.loads`` drops silently."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        self.count += len(pairs) - len(obj)
        return obj


def _counting_decoder() -> tuple[json.JSONDecoder, _RepeatedKeyCounter]:
    """A decoder and the counter of the repeated keys it meets (one pair per parse: no shared state)."""
    counter = _RepeatedKeyCounter()
    return json.JSONDecoder(object_pairs_hook=counter), counter

# Matching is on lower-cased text with runs of whitespace, "_", "-" folded to one space, so that
# "road_clear", "road clear" and "Road-Clear" all match.
_FOLD = re.compile(r"[\s_\-]+")


def _fold(text: str) -> str:
    return _FOLD.sub(" ", text.lower())


# The fields of an answer object; a JSON object with none of them is not an answer (e.g. the
# nested "actions" object of an answer cut off before its closing brace).
ANSWER_FIELDS = ("description", "actions", "reasons", "justification")


def _json_objects(text: str, limit: int = 8) -> list[tuple[int, int, Any, int]]:
    """JSON answer objects in the text as (start, end, value, repeated keys), at most ``limit``."""
    decoder, repeated = _counting_decoder()
    found, pos = [], 0
    while len(found) < limit:
        start = text.find("{", pos)
        if start < 0:
            break
        repeated.count = 0  # count the keys of this object only
        try:
            value, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):
            pos = start + 1
            continue
        if isinstance(value, dict) and any(k in value for k in ANSWER_FIELDS):
            found.append((start, end, value, repeated.count))
            pos = end
        else:
            pos = start + 1
    return found


def _list_faults(entries: list, vocabulary: tuple[str, ...]) -> tuple[int, int]:
    """(unknown, duplicate): entries that are not keys of ``vocabulary``, and keys listed again."""
    known = [v for v in entries if isinstance(v, str) and v in vocabulary]
    return len(entries) - len(known), len(known) - len(set(known))


def _field_faults(value: Any, vocabulary: tuple[str, ...]) -> tuple[int, int]:
    """(unknown, duplicate) keys of a JSON label field given as {key: bool} or a list of keys.

    Free text has no keys to count (the schema rejects it anyway): (0, 0).
    """
    if isinstance(value, dict):
        return _list_faults(list(value), vocabulary)
    if isinstance(value, list):
        return _list_faults(value, vocabulary)
    return 0, 0


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


# Negations, as whole words of folded text: "not" (do not, should not, can not), "no", "never",
# "cannot" and the contractions ("don't", "can't", "shouldn't", straight or curly apostrophe).
_NEGATION = r"(?:not|no|never|cannot|cant|dont|[a-z]+n['\u2019]t)"
# Words that may stand between a negation and the action it negates: "not allowed to turn left",
# "don't go forward", "it is not possible to stop". Bounded, so that a negation far away does not
# reach an action.
_NEGATION_FILLER = r"(?:(?:be|able|allowed|permitted|possible|safe|to|go|going|try|trying)\s+){0,4}"
# The -ing form of the verbs that start the action phrases of taxonomy.labels ("no turning left").
_GERUNDS = {"move": "moving", "turn": "turning", "stop": "stopping", "slow": "slowing"}


def _action_spellings(action: Action) -> set[str]:
    """Folded ways free text names an action: key, phrase, each "/" alternative of the phrase
    ("stop", "slow down"), their -ing forms ("stopping"), and "left turn" for "turn left"."""
    forms = {action.key, action.phrase, *action.phrase.split("/")}
    for form in list(forms):
        verb, _, rest = form.partition(" ")
        if verb in _GERUNDS:
            forms.add(f"{_GERUNDS[verb]} {rest}".strip())
        if verb == "turn" and rest:
            forms.add(f"{rest} turn")
    return {_fold(form) for form in forms}


def _negated_action_pattern() -> re.Pattern:
    """A negation, optional filler and an action, plus actions joined to it by "or"/"nor"
    ("cannot turn left or right"): the span to drop before looking for the actions named."""
    spellings = set().union(*(_action_spellings(a) for a in ACTIONS))
    action = "(?:" + "|".join(re.escape(s) for s in sorted(spellings, key=len, reverse=True)) + ")"
    return re.compile(
        rf"(?<![a-z0-9]){_NEGATION}\s+{_NEGATION_FILLER}{action}(?:\s+(?:or|nor)\s+{action})*(?![a-z0-9])"
    )


_NEGATED_ACTION = _negated_action_pattern()


def _text_actions(text: str) -> set[str]:
    """Actions named in free text, ignoring negated mentions ("cannot turn left", "do not stop",
    "no turning left", "don't move forward")."""
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
    unknown_actions = unknown_reasons = duplicate_reasons = 0
    decoder, repeated = _counting_decoder()
    found = False
    match = _SALVAGE_ACTIONS.search(text)
    if match:
        try:
            actions_field = decoder.decode(match.group(1))
            actions = _as_key_set(actions_field, ACTION_KEYS)
            unknown_actions = _field_faults(actions_field, ACTION_KEYS)[0]
            found = True
        except json.JSONDecodeError:
            pass
    match = _SALVAGE_REASONS.search(text)
    if match:
        listed = _QUOTED.findall(match.group(1))
        reasons = {r for r in listed if r in REASON_BY_KEY}
        unknown_reasons, duplicate_reasons = _list_faults(listed, REASON_KEYS)
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
        duplicate_keys=repeated.count,
        unknown_actions=unknown_actions,
        unknown_reasons=unknown_reasons,
        duplicate_reasons=duplicate_reasons,
        truncated=True,
    )


def parse_answer(text: Any, max_chars: int = 20_000) -> ParsedAnswer:
    """Read label sets from a model answer. Never raises; garbage gives an empty answer.

    JSON first: the first JSON object with an answer field is read by its fields. A JSON answer
    that does not decode (cut off at the length limit) gives its complete fields (``is_json``
    False, ``truncated`` True). Otherwise the canonical keys and phrases of actions and reasons
    are searched for in the text (negated actions, "do not stop", do not count).
    The format faults (repeated keys, unknown or duplicated label entries) are counted in the
    object read; ``schema_valid`` and ``clean`` sum them up.
    ``max_chars`` bounds the work on runaway generations.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text[:max_chars].strip()
    objects = _json_objects(text)
    if objects:
        start, end, obj, duplicate_keys = objects[0]
        description = obj.get("description")
        justification = obj.get("justification")
        unknown_reasons, duplicate_reasons = _field_faults(obj.get("reasons"), REASON_KEYS)
        return ParsedAnswer(
            actions=_as_key_set(obj.get("actions"), ACTION_KEYS),
            reasons=_as_key_set(obj.get("reasons"), tuple(REASON_BY_KEY)),
            description=description if isinstance(description, str) else "",
            justification=justification if isinstance(justification, str) else "",
            is_json=True,
            json_object=obj,
            text_outside_json=(text[:start] + text[end:]).strip(),
            json_objects_found=len(objects),
            duplicate_keys=duplicate_keys,
            unknown_actions=_field_faults(obj.get("actions"), ACTION_KEYS)[0],
            unknown_reasons=unknown_reasons,
            duplicate_reasons=duplicate_reasons,
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
