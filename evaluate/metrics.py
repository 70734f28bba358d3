"""BDD-OIA's official label metrics, and the best constant prediction as a floor for the report.

The definitions follow the official ``test.py`` of BDD-OIA (Xu et al., CVPR 2020):

- ``f1_all``: scikit-learn ``f1_score(y_true, y_pred, average="samples")``, the per-sample F1
  averaged over samples. (The original averages per-batch values with batch size 1, which is the
  same number.)
- ``mf1``: the mean over classes of the per-class binary F1 computed over the whole set
  (``average=None``, then the mean): macro F1 over the 4 actions or the 21 reasons.
- ``per_class``: those per-class F1 values, by class name.
- ``accuracy``: (TP + TN) / (number of label entries), i.e. over all N*K entries.

Zero division. scikit-learn's default ``zero_division="warn"`` scores an ill-defined F1 as 0 and
warns. We pass ``zero_division=0`` explicitly: the same numbers as the official script, without
the warning. Two cases meet it: a sample with no true and no predicted label (its F1 is 0 in
``f1_all``), and a class with no true and no predicted positive (its F1 is 0 in ``mf1``).
"""

from __future__ import annotations

from itertools import product
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import f1_score

from rewards.description_match import description_words, word_f1
from taxonomy.answer import ParsedAnswer, parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS, actions_to_vector, as_label_matrix, reasons_to_vector

# The official script's value for an ill-defined F1 (scikit-learn's default behaviour, made explicit).
ZERO_DIVISION = 0.0
# The two label groups an answer is scored on: (short name, answer field, class names, field -> 0/1 vector).
LABEL_GROUPS = (("act", "actions", ACTION_KEYS, actions_to_vector), ("expl", "reasons", REASON_KEYS, reasons_to_vector))
# Decimals F1 differences are printed with (the records and the comparison tools).
DIFFERENCE_DECIMALS = 4
# Up to this many classes, best_constant_baseline tries every constant 0/1 vector (2**K of them);
# above it, the K "top-k most frequent classes" vectors (21 reasons would be 2 million vectors).
EXHAUSTIVE_MAX_CLASSES = 10


def label_metrics(y_true: Any, y_pred: Any, names: Sequence[str]) -> dict:
    """F1_all, mF1, per-class F1 and accuracy of binary predictions, as BDD-OIA's test.py.

    ``y_true`` and ``y_pred`` are (N, K) 0/1 arrays (lists, bools accepted); ``names`` gives the K
    class names in column order. Returns ``{"f1_all", "mf1", "accuracy", "per_class", "n_samples"}``.
    """
    names = list(names)
    truth = as_label_matrix(y_true, "y_true", len(names))
    pred = as_label_matrix(y_pred, "y_pred", len(names))
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has shape {truth.shape} but y_pred has shape {pred.shape}")
    per_class = f1_score(truth, pred, average=None, zero_division=ZERO_DIVISION)
    return {
        "f1_all": float(f1_score(truth, pred, average="samples", zero_division=ZERO_DIVISION)),
        "mf1": float(np.mean(per_class)),
        "accuracy": float((truth == pred).mean()),
        "per_class": {name: float(value) for name, value in zip(names, per_class)},
        "n_samples": int(truth.shape[0]),
    }


def answer_metrics(
    parsed_answers: Sequence[ParsedAnswer | str | None], actions_true: Any, reasons_true: Any
) -> dict:
    """Metrics of model answers against truth: ``{"actions": ..., "reasons": ..., rates}``.

    ``parsed_answers`` holds :class:`ParsedAnswer` objects or raw answer strings (parsed here with
    the one parser, :func:`taxonomy.answer.parse_answer`). ``actions_true`` is (N, 4) in
    ``[F, S, L, R]`` order and ``reasons_true`` (N, 21) in canonical order. An answer the parser
    reads nothing from predicts no label, which the metrics score as it deserves.
    Also returned: ``json_rate`` (answers holding a JSON object) and ``empty_rate`` (answers with no
    action and no reason).
    """
    answers = [a if isinstance(a, ParsedAnswer) else parse_answer(a) for a in parsed_answers]
    actions = as_label_matrix(actions_true, "actions_true", len(ACTION_KEYS))
    reasons = as_label_matrix(reasons_true, "reasons_true", len(REASON_KEYS))
    if not (len(answers) == actions.shape[0] == reasons.shape[0]):
        raise ValueError(
            f"{len(answers)} answers but {actions.shape[0]} action rows and "
            f"{reasons.shape[0]} reason rows: they must match one to one"
        )
    actions_pred = [actions_to_vector(a.actions) for a in answers]
    reasons_pred = [reasons_to_vector(a.reasons) for a in answers]
    return {
        "actions": label_metrics(actions, actions_pred, ACTION_KEYS),
        "reasons": label_metrics(reasons, reasons_pred, REASON_KEYS),
        "json_rate": float(np.mean([a.is_json for a in answers])),
        "empty_rate": float(np.mean([a.empty for a in answers])),
        "n_samples": len(answers),
    }


def description_metrics(predicted: Sequence[str | None], reference: Sequence[str]) -> dict:
    """How true the answers' descriptions are, against the split's reference descriptions: the
    truth-based check on stage 1, whose CLIP reward only approximates it.

    - ``exact_match``: share of answers whose description has the reference's words in the
      reference's order (case and punctuation ignored); a missing description never matches.
    - ``word_f1``: mean over answers of the bag-of-words F1 against the reference (SQuAD's answer
      F1), partial credit for a description that gets some details right.

    Returns ``{"exact_match", "word_f1", "n_samples"}``; ``None`` values when there is nothing to
    compare (no reference descriptions).
    """
    if len(predicted) != len(reference):
        raise ValueError(f"{len(predicted)} descriptions but {len(reference)} references: they must match one to one")
    pairs = [(description_words(p), description_words(r)) for p, r in zip(predicted, reference)]
    pairs = [(p, r) for p, r in pairs if r]  # a clip without a reference description cannot be judged
    if not pairs:
        return {"exact_match": None, "word_f1": None, "n_samples": 0}
    return {
        "exact_match": float(np.mean([p == r for p, r in pairs])),
        "word_f1": float(np.mean([word_f1(p, r) for p, r in pairs])),
        "n_samples": len(pairs),
    }


def signed(value: float) -> str:
    """An F1 difference as printed: sign always shown, DIFFERENCE_DECIMALS places, and a value that
    rounds to zero printed +0.0000 (``+ 0.0`` turns a rounded -0.0 into 0.0)."""
    return f"{round(value, DIFFERENCE_DECIMALS) + 0.0:+.{DIFFERENCE_DECIMALS}f}"


def _sample_f1_of_counts(overlap: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per-sample F1 = 2*TP / (2*TP + FP + FN) = 2|t & p| / (|t| + |p|), and ZERO_DIVISION where
    |t| + |p| = 0: scikit-learn's definition, which the tests check against f1_score."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sizes > 0, 2.0 * overlap / np.maximum(sizes, 1), ZERO_DIVISION)


def sample_f1(y_true: Any, y_pred: Any) -> np.ndarray:
    """Each sample's F1, shape (N,): F1_all is their mean (``average="samples"``), so a difference
    in F1_all between two models on the same samples is the mean of their per-sample differences."""
    truth = as_label_matrix(y_true, "y_true", None)
    pred = as_label_matrix(y_pred, "y_pred", truth.shape[1])
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has shape {truth.shape} but y_pred has shape {pred.shape}")
    return _sample_f1_of_counts((truth * pred).sum(axis=1), truth.sum(axis=1) + pred.sum(axis=1))


def _f1_all_of_constants(truth: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """F1_all of each constant prediction (rows of ``candidates``), vectorised."""
    overlap = truth @ candidates.T  # (N, C): |t & c|
    sizes = truth.sum(axis=1, keepdims=True) + candidates.sum(axis=1)[None, :]
    return _sample_f1_of_counts(overlap, sizes).mean(axis=0)


def _describe_constant(vector: np.ndarray, prevalence: np.ndarray) -> str:
    """A readable name for a constant prediction: all ones, majority, top-k by frequency, other."""
    k = int(vector.sum())
    if k == len(vector):
        return "all ones"
    if k == 0:
        return "all zeros"
    if np.array_equal(vector, (prevalence > 0.5).astype(int)):
        return "majority vector (prevalence > 0.5)"
    if prevalence[vector == 1].min() >= prevalence[vector == 0].max():
        return f"top-{k} most frequent classes"
    return f"{k} classes"


def best_constant_baseline(
    y_true: Any,
    names: Sequence[str] | None = None,
    exhaustive_max_classes: int = EXHAUSTIVE_MAX_CLASSES,
) -> dict:
    """The constant prediction (one 0/1 vector for every sample) with the best F1_all on ``y_true``.

    Candidates: every 0/1 vector when K <= ``exhaustive_max_classes``; otherwise the K+1 vectors
    "the k most frequent classes" (k = 0..K, so all-zeros and all-ones included) and the majority
    vector (classes with prevalence > 0.5). The winner is chosen by F1_all on the same set (an
    optimistic floor: a model must beat it to have learnt anything beyond label frequencies);
    ``rule`` says which vector won (all ones, majority, top-k most frequent, ...).
    Returns ``{"rule", "vector", "positive_classes", "f1_all", "mf1", "accuracy", "per_class",
    "n_samples", "candidates_tried", "all_ones": {...metrics of predicting every class...}}``.
    ``mf1`` of a constant is highest for all-ones (each class's F1 only depends on its own column),
    hence that row is reported too.
    """
    truth = as_label_matrix(y_true, "y_true", None if names is None else len(names))
    num_classes = truth.shape[1]
    names = list(names) if names is not None else [f"class_{k}" for k in range(num_classes)]
    prevalence = truth.mean(axis=0)
    if num_classes <= exhaustive_max_classes:
        vectors = np.array(list(product((0, 1), repeat=num_classes)), dtype=int)
        search = "all constant vectors"
    else:
        by_frequency = np.argsort(-prevalence, kind="stable")
        rows = [
            np.isin(np.arange(num_classes), by_frequency[:k]).astype(int)
            for k in range(num_classes + 1)
        ]
        rows.append((prevalence > 0.5).astype(int))
        vectors = np.unique(np.array(rows, dtype=int), axis=0)
        search = "top-k most frequent classes and the majority vector"
    scores = _f1_all_of_constants(truth, vectors)
    best_vector = vectors[int(np.argmax(scores))]  # first of ties
    rule = f"{_describe_constant(best_vector, prevalence)} (best F1_all among {search})"
    ones = np.ones_like(truth)
    return {
        "rule": rule,
        "vector": best_vector.tolist(),
        "positive_classes": [n for n, v in zip(names, best_vector) if v],
        **label_metrics(truth, np.tile(best_vector, (truth.shape[0], 1)), names),
        "candidates_tried": int(len(vectors)),
        "all_ones": label_metrics(truth, ones, names),
    }
