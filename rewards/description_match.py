"""Description match (stage 1, beside or instead of R1): does the description say what the
reference description says?

    words(T)  = the text cased-folded, split on spaces and , ; .
    F1        = bag-of-words F1 of words(description) against words(reference) (SQuAD's answer F1)
    E         = 1 when the two word sequences are equal, else 0
    R_match   = (1 - w_exact) * F1 + w_exact * E                      in [0, 1]

The description is the answer's description span (:func:`taxonomy.answer.parse_answer`); the
reference is the dataset's ``description`` column. Why a truth reward for the description: an
answer's labels follow its description. Given the reference description, the demo's SFT models
name the right labels on 98% of the held-out clips where their own description is wrong
(``BENCHMARKS.md``, "Ninth look"), so a description reward that ranks truth ranks the labels too.
CLIP (R1) ranks descriptions by what its image and text embeddings share, which is not always the
truth. ``E`` is there because one wrong word ("red" for "green") can flip a label while it costs
bag-of-words F1 only a few hundredths.

Defaults: ``w_exact = 0.5``. A missing description, or no reference, scores 0. On real BDD-OIA the
reference description is the label template (``data_prep.bddoia.template_description``), so this
reward then rewards saying the true reasons in the description. Needs the column ``description``.

:func:`description_words` and :func:`word_f1` are also the evaluation's description metrics
(:func:`evaluate.metrics.description_metrics`): training and evaluation compare descriptions alike.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from rewards.registry import as_completion_list, column, log_means, register_reward, score_each
from taxonomy.answer import parse_answer

NAME = "description_match"
DEFAULT_W_EXACT = 0.5
_SEPARATORS = str.maketrans({",": " ", ";": " ", ".": " "})


def description_words(text: str | None) -> list[str]:
    """The words compared: case and the separators , ; . ignored."""
    return (text or "").casefold().translate(_SEPARATORS).split()


def word_f1(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """Bag-of-words F1 of two word lists (0 when they share no word)."""
    common = sum((Counter(predicted) & Counter(reference)).values())
    return 0.0 if common == 0 else 2 * common / (len(predicted) + len(reference))


@register_reward(NAME, span="description")
def description_match_reward(completions: Any = None, *, w_exact: float = DEFAULT_W_EXACT, **kwargs: Any) -> list[float]:
    """R_match per completion (see the module docstring); needs the column ``description``."""
    if not 0.0 <= w_exact <= 1.0:
        raise ValueError(f"reward {NAME!r}: w_exact must be in [0, 1], got {w_exact!r}")
    completions = as_completion_list(completions)
    references = [description_words(r if isinstance(r, str) else "")
                  for r in column(kwargs, "description", len(completions), NAME)]
    parts: dict[str, list[float]] = {"word_f1": [], "exact": []}

    def score(i: int, text: str) -> float:
        said, truth = description_words(parse_answer(text).description), references[i]
        f1 = word_f1(said, truth) if said and truth else 0.0
        exact = float(bool(truth) and said == truth)
        parts["word_f1"].append(f1)
        parts["exact"].append(exact)
        return (1.0 - w_exact) * f1 + w_exact * exact

    scores = score_each(NAME, score, completions, 0.0, 1.0, log_metric=kwargs.get("log_metric"))
    log_means(kwargs, NAME, parts)
    return scores
