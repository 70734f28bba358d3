"""Which characters of an answer a reward judges: its span.

A reward that scores the description must not push on the tokens that say the actions, and the
other way round (an actor-critic puts advantages on the judged span only). Spans:

- ``"description"``: the description's characters inside the answer, plus the character that
  closes it (the closing quote of a JSON answer): choosing where the description ends changes
  what CLIP reads, so the token that ends it is judged too.
- ``"labels"``: from the ``"actions"`` field to the end (actions, reasons, justification).
- ``"answer"``: every character.

When a span cannot be found in the text (no description, a plain-text answer without an actions
field), the whole answer is the span: the reward then judges the answer for lacking it.
"""

from __future__ import annotations

from typing import Sequence

from taxonomy.answer import parse_answer

SPANS = ("description", "labels", "answer")
_LABELS_START = '"actions"'


def locate_description(text: str, description: str) -> int:
    """Where ``description`` starts in ``text``, or -1 when it is not there verbatim.

    In a JSON answer the field value follows a quote; looking for the quote first avoids matching
    the same words earlier in the text.
    """
    if not description:
        return -1
    quoted = text.find('"' + description)
    if quoted >= 0:
        return quoted + 1
    return text.find(description)


def span_chars(text: str, span: str) -> tuple[int, int]:
    """(start, end) character offsets of ``span`` in the answer ``text`` (end exclusive)."""
    if span not in SPANS:
        raise ValueError(f"span must be one of {SPANS}, got {span!r}")
    whole = (0, len(text))
    if span == "answer":
        return whole
    if span == "description":
        description = parse_answer(text).description.strip()
        start = locate_description(text, description)
        if start < 0:
            return whole
        return start, min(len(text), start + len(description) + 1)  # + the closing character
    start = text.find(_LABELS_START)
    return (start, len(text)) if start >= 0 else whole


def token_span_mask(char_ends: Sequence[int], start: int, end: int) -> list[int]:
    """1 for each token whose characters overlap [start, end): token k covers
    [char_ends[k-1], char_ends[k]) (the first token starts at 0)."""
    mask, token_start = [], 0
    for token_end in char_ends:
        overlaps = token_start < end and token_end > start
        # A token with no characters of its own (a special token) sits at one offset.
        touches = token_start == token_end and start <= token_start < end
        mask.append(int(overlaps or touches))
        token_start = token_end
    return mask
