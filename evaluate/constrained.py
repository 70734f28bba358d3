"""Grammar-constrained decoding: at each step only tokens that keep the answer valid under
``taxonomy/answer.schema.json``, so every finished answer is schema-valid by construction.

The library is xgrammar (``xgr.contrib.hf.LogitsProcessor`` plugs into ``model.generate``); why it
and not outlines, llguidance or lm-format-enforcer is measured by ``python -m benchmarks.constrained``
(BENCHMARKS.md, "Constrained decoding").

The grammar is derived from the schema here (:func:`answer_pieces`, :func:`answer_grammar`) rather
than by the library's own JSON-schema compiler, for two reasons the benchmark shows:

- no candidate library enforces ``uniqueItems`` (xgrammar and outlines accept a repeated reason,
  llguidance reports the key as unimplemented), and jsonschema rejects such an answer. Here the
  ``reasons`` array is an *ordered subset* of its ``enum``: each reason at most once, in taxonomy
  order, which is the order :func:`taxonomy.answer.format_answer` writes and the model was trained on;
- the layout is the canonical one (keys in ``required`` order, ``", "`` and ``": "`` separators,
  strings of printable ASCII without escapes), so every token's text has at least one character and
  a short way to close an answer from any prefix is computable (:func:`shortest_completion`).

The token cap. A constrained answer must never be cut mid-object by ``max_new_tokens``.
:class:`CapGuard` (after the grammar's processor) keeps the invariant "the tokens left can still
close the object": before each step it looks at the token greedy decoding is about to pick; when
taking it would leave fewer tokens than the closing path needs (its greedy tokenization,
plus the EOS), it forces the first token of the closing path instead. An answer therefore always
ends with a complete object and the EOS, at worst with a short description or justification
closed early. The guard reads the argmax, so it assumes greedy decoding (what evaluation does).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import torch
from transformers import LogitsProcessor

from taxonomy.answer import SCHEMA_PATH, answer_schema

DECODING_MODES = ("free", "constrained")
DEFAULT_DECODING = "free"
# The JSON layout format_answer writes (json.dumps' default separators): the model was trained on it.
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "
# Characters a string may hold: printable ASCII except the quote and the backslash (no escapes), so
# a string of n characters is at most n tokens. As an EBNF character class and as a Python test.
STRING_CHAR_CLASS = r"[ !#-\[\]-~]"
# What a string forced shut by the cap is padded with to reach its minLength, and what a boolean
# forced by the cap says: "false" claims no action (one character longer than "true").
CLOSING_FILLER = "."
CLOSING_BOOLEAN = "false"
# SmolVLM's generation prompt ends with "Assistant:" and no space, so the trained answer starts with
# one (generate strips it): the grammar allows it, or the model's own first token would be banned.
LEADING_SPACE = " "


class ConstrainedDecodingError(ValueError):
    """The schema, tokenizer or token cap cannot be used; the message names which and why."""


def _string_char(char: str) -> bool:
    return " " <= char <= "~" and char not in '"\\'


# ---------------------------------------------------------------------------------------------
# The answer's shape, from the schema


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class StringSlot:
    min_length: int


@dataclass(frozen=True)
class BoolSlot:
    pass


@dataclass(frozen=True)
class SubsetSlot:
    """A JSON array of distinct ``items`` (strings) in the order given: ``"a", "c"``, no brackets."""

    items: tuple[str, ...]


Piece = Literal | StringSlot | BoolSlot | SubsetSlot
BOOLEAN_WORDS = ("true", "false")


def _schema_pieces(schema: dict, where: str) -> list[Piece]:
    kind = schema.get("type")
    if kind == "object":
        properties, required = schema.get("properties", {}), schema.get("required", [])
        if schema.get("additionalProperties", True) is not False or set(required) != set(properties):
            raise ConstrainedDecodingError(
                f"{SCHEMA_PATH}: {where}: constrained decoding needs additionalProperties false and every "
                "property required (the answer's keys are then fixed, in `required` order)")
        pieces: list[Piece] = [Literal("{")]
        for position, key in enumerate(required):
            separator = ITEM_SEPARATOR if position else ""
            pieces.append(Literal(f"{separator}{json.dumps(key)}{KEY_SEPARATOR}"))
            pieces += _schema_pieces(properties[key], f"{where}.{key}")
        return pieces + [Literal("}")]
    if kind == "string":
        return [Literal('"'), StringSlot(int(schema.get("minLength", 0))), Literal('"')]
    if kind == "boolean":
        return [BoolSlot()]
    if kind == "array" and "enum" in schema.get("items", {}) and schema.get("uniqueItems"):
        items = tuple(schema["items"]["enum"])
        if not all(isinstance(i, str) and all(map(_string_char, i)) for i in items):
            raise ConstrainedDecodingError(f"{SCHEMA_PATH}: {where}.items.enum: printable ASCII strings only")
        return [Literal("["), SubsetSlot(items), Literal("]")]
    raise ConstrainedDecodingError(
        f"{SCHEMA_PATH}: {where}: unsupported for constrained decoding ({json.dumps(schema)[:80]}); "
        "supported: objects with fixed keys, strings, booleans, arrays of unique enum strings")


def _merge_literals(pieces: Sequence[Piece]) -> tuple[Piece, ...]:
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, Literal) and merged and isinstance(merged[-1], Literal):
            merged[-1] = Literal(merged[-1].text + piece.text)
        else:
            merged.append(piece)
    return tuple(merged)


def answer_pieces(schema: dict | None = None) -> tuple[Piece, ...]:
    """The answer as literal text and slots, in order (default: taxonomy/answer.schema.json)."""
    return _merge_literals(_schema_pieces(schema if schema is not None else answer_schema(), "$"))


# ---------------------------------------------------------------------------------------------
# The grammar (xgrammar's EBNF)


def _ebnf_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid EBNF string literal


def answer_grammar(pieces: Sequence[Piece] | None = None) -> str:
    """The EBNF grammar of the answers ``pieces`` describe (default: the answer schema's)."""
    pieces = pieces if pieces is not None else answer_pieces()
    root, rules = [], []
    for number, piece in enumerate(pieces):
        if isinstance(piece, Literal):
            root.append(_ebnf_string(piece.text))
        elif isinstance(piece, StringSlot):
            root.append(" ".join([STRING_CHAR_CLASS] * piece.min_length + [f"{STRING_CHAR_CLASS}*"]))
        elif isinstance(piece, BoolSlot):
            root.append("(" + " | ".join(_ebnf_string(w) for w in BOOLEAN_WORDS) + ")")
        else:
            # after_i: what may follow item i (a later item, or the end): each item once, in order.
            name = f"subset{number}"
            quoted = [_ebnf_string(json.dumps(item)) for item in piece.items]

            def choices(first: int) -> str:
                later = [f"{_ebnf_string(ITEM_SEPARATOR)} {quoted[j]} {name}_after{j}"
                         for j in range(first, len(quoted))]
                return " | ".join(['""'] + later)

            for i in range(len(quoted)):
                rules.append(f"{name}_after{i} ::= {choices(i + 1)}")
            first_items = [f"{quoted[j]} {name}_after{j}" for j in range(len(quoted))]
            rules.append(f"{name} ::= " + " | ".join(['""'] + first_items))
            root.append(name)
    return "\n".join([f"root ::= {_ebnf_string(LEADING_SPACE)}? {' '.join(root)}"] + rules)


# ---------------------------------------------------------------------------------------------
# The shortest way to close an answer


def _shortest_rest(pieces: Sequence[Piece]) -> str:
    """The closing text of the pieces: empty lists, minLength fillers, CLOSING_BOOLEAN."""
    parts = []
    for piece in pieces:
        if isinstance(piece, Literal):
            parts.append(piece.text)
        elif isinstance(piece, StringSlot):
            parts.append(CLOSING_FILLER * piece.min_length)
        elif isinstance(piece, BoolSlot):
            parts.append(CLOSING_BOOLEAN)
    return "".join(parts)


def _finish_subset(items: tuple[str, ...], text: str) -> tuple[int, str | None]:
    """Read a subset slot from ``text``: (characters it takes, None) when it is complete in the
    text, or (len(text), the shortest text that closes it) when the text ends inside it."""
    position, next_item = 0, 0
    while True:
        rest = text[position:]
        if next_item:  # after an item: the end of the slot, or ", " and a later item
            if not rest:
                return position, ""
            if not rest.startswith(ITEM_SEPARATOR):
                if ITEM_SEPARATOR.startswith(rest):  # cut inside ", ": the shortest later item
                    later = min(items[next_item:], key=len)
                    return len(text), ITEM_SEPARATOR[len(rest):] + json.dumps(later)
                return position, None
            position += len(ITEM_SEPARATOR)
            rest = text[position:]
        if not rest:
            if next_item:  # cut right after ", "
                return len(text), json.dumps(min(items[next_item:], key=len))
            return position, ""
        if rest[0] != '"':
            return position, None
        closing = rest.find('"', 1)
        if closing < 0:  # cut inside an item: the shortest later item it can still become
            started = rest[1:]
            fits = [i for i in items[next_item:] if i.startswith(started)]
            return len(text), min(fits, key=len)[len(started):] + '"'
        item = rest[1:closing]
        next_item = items.index(item, next_item) + 1
        position += closing + 1


def shortest_completion(pieces: Sequence[Piece], text: str) -> str:
    """The shortest text that makes ``text`` (a prefix the grammar accepts) a complete answer
    (booleans not yet begun close as CLOSING_BOOLEAN, one character more than the shortest)."""
    position = len(LEADING_SPACE) if text.startswith(LEADING_SPACE) else 0
    for number, piece in enumerate(pieces):
        rest = text[position:]
        following = pieces[number + 1:]
        if isinstance(piece, Literal):
            if rest.startswith(piece.text):
                position += len(piece.text)
                continue
            return piece.text[len(rest):] + _shortest_rest(following)
        if isinstance(piece, StringSlot):
            end = next((k for k, char in enumerate(rest) if not _string_char(char)), None)
            if end is None:  # cut inside the string
                return CLOSING_FILLER * max(0, piece.min_length - len(rest)) + _shortest_rest(following)
            position += end
        elif isinstance(piece, BoolSlot):
            word = next((w for w in BOOLEAN_WORDS if rest.startswith(w)), None)
            if word is None:
                started = CLOSING_BOOLEAN if CLOSING_BOOLEAN.startswith(rest) else next(
                    w for w in BOOLEAN_WORDS if w.startswith(rest))
                return started[len(rest):] + _shortest_rest(following)
            position += len(word)
        else:
            taken, closing = _finish_subset(piece.items, rest)
            if closing is not None:  # the text ends inside the list
                return closing + _shortest_rest(following)
            position += taken
    return ""


# ---------------------------------------------------------------------------------------------
# Tokens


class TokenTexts:
    """Each vocabulary token's text, and the greedy longest-match tokenization of a text into
    ordinary tokens (an achievable path: every printable ASCII character is a token of a
    byte-level vocabulary; checked when built)."""

    def __init__(self, tokenizer: Any):
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self.id_of: dict[str, int] = {}
        self.text_of: dict[int, str] = {}  # the tokens the grammar can emit: printable ASCII text
        for token_id in range(len(tokenizer)):
            if token_id in special:
                continue
            text = tokenizer.decode([token_id])
            if text and all(" " <= char <= "~" for char in text):
                self.id_of.setdefault(text, token_id)
                self.text_of[token_id] = text
        missing = [chr(c) for c in range(ord(" "), ord("~") + 1) if chr(c) not in self.id_of]
        if missing:
            raise ConstrainedDecodingError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r}: no single-character token for "
                f"{''.join(missing)!r}: the cap guard needs one per printable ASCII character")
        self.longest = max(map(len, self.id_of))
        self.tokenize = lru_cache(maxsize=4096)(self._tokenize)
        self.banned = lru_cache(maxsize=4)(self._banned)

    def _banned(self, vocab_size: int, eos_token_id: int) -> torch.Tensor:
        """The ids an answer must not use: special and added tokens (the grammar reads
        "<row_1_col_1>" as text, but decoding drops it), partial UTF-8 bytes, the model's padding ids."""
        banned = torch.ones(vocab_size, dtype=torch.bool)
        banned[list(self.text_of)] = False
        banned[eos_token_id] = False
        return banned

    def _tokenize(self, text: str) -> tuple[int, ...]:
        ids, position = [], 0
        while position < len(text):
            for length in range(min(self.longest, len(text) - position), 0, -1):
                token_id = self.id_of.get(text[position:position + length])
                if token_id is not None:
                    ids.append(token_id)
                    position += length
                    break
        return tuple(ids)


class CapGuard(LogitsProcessor):
    """Keeps a greedy, grammar-constrained answer closable within ``max_new_tokens`` (module doc).

    One instance per ``generate`` call (it reads the prompt length), placed after the grammar's
    processor so it sees the grammar-masked scores. It also bans the tokens whose text is not what
    they decode to (special tokens), which the grammar alone would let into a string."""

    def __init__(self, pieces: Sequence[Piece], tokens: TokenTexts, tokenizer: Any, prompt_length: int,
                 max_new_tokens: int, eos_token_id: int):
        self.pieces, self.tokens, self.tokenizer = pieces, tokens, tokenizer
        self.prompt_length, self.max_new_tokens, self.eos_token_id = prompt_length, max_new_tokens, eos_token_id
        self.needed = lru_cache(maxsize=8192)(self._needed)
        minimum = self.needed("")
        if max_new_tokens < minimum:
            raise ConstrainedDecodingError(
                f"max_new_tokens={max_new_tokens} cannot hold the shortest schema-valid answer "
                f"({minimum} tokens with the EOS); raise --max-new-tokens")
        self.forced_steps = 0
        self.texts: list[str | None] = []  # each row's answer so far (its tokens' texts concatenate: ASCII)

    def _needed(self, text: str) -> int:
        """Tokens still needed after ``text``: its shortest closing path and the EOS."""
        return len(self.tokens.tokenize(shortest_completion(self.pieces, text))) + 1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_length
        left = self.max_new_tokens - generated  # this step included
        if not self.texts:
            self.texts = [""] * scores.shape[0]
        scores[:, self.tokens.banned(scores.shape[1], self.eos_token_id).to(scores.device)] = float("-inf")
        choices = scores.argmax(dim=-1).tolist()
        for row, choice in enumerate(choices):
            if generated:
                last = int(input_ids[row, -1])
                if last == self.eos_token_id or self.texts[row] is None:
                    self.texts[row] = None  # finished: generate pads the row
                    continue
                self.texts[row] += self.tokens.text_of[last]
            text = self.texts[row]
            if choice == self.eos_token_id or left - 1 >= self.needed(text + self.tokens.text_of[choice]):
                continue
            closing = self.tokens.tokenize(shortest_completion(self.pieces, text))
            forced = closing[0] if closing else self.eos_token_id
            scores[row] = torch.where(torch.arange(scores.shape[1], device=scores.device) == forced,
                                      scores[row].new_zeros(()), scores[row].new_full((), float("-inf")))
            self.forced_steps += 1
        return scores


# ---------------------------------------------------------------------------------------------
# What generation uses


class _Timed(LogitsProcessor):
    """Runs the processors in order and adds their wall time and the rows they served to ``owner``."""

    def __init__(self, processors: Sequence[LogitsProcessor], owner: "ConstrainedDecoder"):
        self.processors, self.owner = processors, owner

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        started = time.perf_counter()
        for processor in self.processors:
            scores = processor(input_ids, scores)
        self.owner.seconds += time.perf_counter() - started
        self.owner.row_steps += scores.shape[0]
        return scores


class ConstrainedDecoder:
    """The compiled answer grammar for one tokenizer; ``processors`` gives the logits processors
    for one ``generate`` call. Build once per model (compiling takes milliseconds, the token table
    a pass over the vocabulary). ``ms_per_token``: the time the constraint added per generated
    token (per row and step) over every call so far."""

    def __init__(self, tokenizer: Any, vocab_size: int, schema: dict | None = None):
        # Imported here, once: only constrained decoding needs xgrammar (~0.2 s that free decoding,
        # and every `evaluate` import, would otherwise pay).
        import xgrammar as xgr

        self.grammar_processor_cls = xgr.contrib.hf.LogitsProcessor
        self.pieces = answer_pieces(schema)
        self.tokenizer = tokenizer
        self.eos_token_id = tokenizer.eos_token_id
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=[self.eos_token_id])
        self.compiled = xgr.GrammarCompiler(info).compile_grammar(answer_grammar(self.pieces))
        self.tokens = TokenTexts(tokenizer)
        self.seconds, self.row_steps = 0.0, 0

    @property
    def ms_per_token(self) -> float | None:
        return 1000 * self.seconds / self.row_steps if self.row_steps else None

    @classmethod
    def for_model(cls, model: Any, processor: Any) -> "ConstrainedDecoder":
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        return cls(processor.tokenizer, int(config.vocab_size))

    def processors(self, prompt_length: int, max_new_tokens: int) -> list:
        guard = CapGuard(self.pieces, self.tokens, self.tokenizer, prompt_length, max_new_tokens,
                         self.eos_token_id)
        return [_Timed([self.grammar_processor_cls(self.compiled), guard], self)]
