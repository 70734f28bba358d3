"""R2 (stage 2): are the actions and reasons right, and does the answer hang together?

For each completion, the answer is read with :func:`taxonomy.answer.parse_answer` (the one parser
evaluation uses) into a predicted action set A and reason set R, compared with the sample's truth
(dataset columns ``actions``: 4 ints [F, S, L, R], ``reasons``: 21 ints in canonical order)::

    R2 = (w_actions * F1(A, A_true) + w_reasons * F1(R, R_true) + w_consistency * C)
         * (1 - w_format * (1 - Q))

Defaults ``w_actions = 0.4, w_reasons = 0.4, w_consistency = 0.2`` (sum 1, so R2 is in [0, 1]; in
general R2 is in [0, w_actions + w_reasons + w_consistency]) and ``w_format = 0.2`` (in [0, 1]).

F1 is set F1 over the fixed vocabulary (4 action keys, 21 reason keys), weighted per label:
``F1 = 2 w(P & T) / (w(P) + w(T))`` with ``w(S)`` the sum of the label weights in S
(``label_weights``, a mapping key -> weight > 0; unlisted labels weigh 1, so by default this is
plain ``2|P & T| / (|P| + |T|)``). Listing every class does not pay: each wrong key adds to w(P).
Weights above 1 on rare labels (AlphaDrive's action weights) make missing or inventing a rare
turn or reason cost more than a frequent one. Such symmetric weights raise the stakes of a rare
label but not the belief at which saying it pays: with plain F1 an answer gains by naming a label
when the label is true with probability above about 1/2, whatever its weight. ``false_alarm_weight``
(a number >= 0; default None: a false alarm weighs its label weight) makes the cost asymmetric: a
named label that is not true adds ``false_alarm_weight`` instead of its label weight, so

    F1 = 2 w(P & T) / (2 w(P & T) + false_alarm_weight * |P - T| + w(T - P))

and with ``label_weights: {right: 4}, false_alarm_weight: 1`` naming "right" pays from a belief of
about 1/3 (a miss costs 4, a false alarm 1). Rare labels are the ones a model is least sure of, so
this is what keeps RL from buying F1_all by giving up the rare classes that macro F1 (mF1) counts
as much as the frequent ones.
When both P and T are empty, F1 = ``empty_match_f1`` (default 1.0: saying "no reason" when none
applies is the right answer; BDD-OIA's own F1_all scores such a sample 0 for every prediction,
which would give GRPO no signal on it). An answer from which the parser reads no action and no
reason (empty, unparseable, garbage) gets R2 = 0, the minimum, whatever the truth.

Consistency C is in [0, 1] and needs no truth::

    C = logic_share * (1 - |inconsistent(A, R)| / |R|) + (1 - logic_share) * |named(R)| / |R|

- ``inconsistent(A, R)``: :func:`taxonomy.labels.inconsistent_reasons`, the reasons that
  contradict the predicted actions (a green light beside "stop" only; a solid line on the left
  beside "turn left").
- ``named(R)``: the predicted reasons that the justification names, by readable phrase or key,
  found by running ``parse_answer`` on the justification text. For a JSON answer the
  justification is its ``justification`` field (also for a JSON answer that does not decode: its
  salvaged justification, "" when that was cut, not the whole text, which holds the reasons list
  and so "names" every reason); for a plain-text answer, whose reasons were read from its text,
  it is the whole text.
- ``logic_share`` defaults to 0.5.
- An answer with no reasons gets C = 0 (otherwise the empty answer would be perfectly consistent).

Format Q is 1 when the answer is exactly one clean, schema-valid JSON object
(:attr:`taxonomy.answer.ParsedAnswer.clean`: it satisfies ``answer.schema.json``, repeats no key
at any depth, has no blank text field, no text around it and no second object), else 0. The
labels of a malformed answer are still read and paid (sloppy output keeps its signal), but at most
``1 - w_format`` of what the clean answer with the same labels gets. A JSON answer cut off before
its justification, a plain-text answer, markdown fences, a repeated key, a duplicated, invented or
non-key reason entry, an unknown action key, actions given as strings, a missing or empty field:
without Q each scored as high as the complete answer, since its label sets are the same.
Multiplying (rather than subtracting) keeps R2 a label reward: among answers of the same form the
labels alone decide, and form alone never pays (an answer with no label in it scores 0 however
clean it is).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from rewards.registry import as_completion_list, column, log_means, register_reward, score_each
from taxonomy.answer import ParsedAnswer, parse_answer
from taxonomy.labels import (
    ACTION_KEYS,
    REASON_BY_KEY,
    REASON_KEYS,
    actions_from_vector,
    inconsistent_reasons,
    reasons_from_vector,
)

NAME = "action_reasoning"
DEFAULT_W_ACTIONS = 0.4
DEFAULT_W_REASONS = 0.4
DEFAULT_W_CONSISTENCY = 0.2
DEFAULT_LOGIC_SHARE = 0.5
DEFAULT_EMPTY_MATCH_F1 = 1.0
DEFAULT_W_FORMAT = 0.2
COMPONENTS = ("actions_f1", "reasons_f1", "consistency", "format")


def set_f1(
    predicted: Iterable[str],
    truth: Iterable[str],
    empty_match: float = DEFAULT_EMPTY_MATCH_F1,
    weights: Mapping[str, float] | None = None,
    false_alarm_weight: float | None = None,
) -> float:
    """Weighted set F1 = 2 w(P & T) / (2 w(P & T) + fa(P - T) + w(T - P)) (weight 1 for labels not
    in ``weights``; fa = w, or ``false_alarm_weight`` per false alarm when given), which is
    2 w(P & T) / (w(P) + w(T)) by default; ``empty_match`` when both sets are empty."""
    pred, true = set(predicted), set(truth)
    if not pred and not true:
        return float(empty_match)
    weights = weights or {}

    def w(labels: set[str]) -> float:
        return sum(weights.get(label, 1.0) for label in labels)

    hits, false_alarms, misses = pred & true, pred - true, true - pred
    false_alarm_cost = w(false_alarms) if false_alarm_weight is None else false_alarm_weight * len(false_alarms)
    denominator = 2.0 * w(hits) + false_alarm_cost + w(misses)
    return 2.0 * w(hits) / denominator if denominator else 0.0


def check_label_weights(label_weights: Any) -> dict[str, float]:
    """``label_weights`` as a {known label key: weight > 0} dict; a clear error otherwise."""
    if label_weights is None:
        return {}
    if not isinstance(label_weights, Mapping):
        raise ValueError(f"reward {NAME!r}: label_weights must map label keys to weights, got {label_weights!r}")
    unknown = sorted(set(label_weights) - set(ACTION_KEYS) - set(REASON_KEYS))
    if unknown:
        raise ValueError(f"reward {NAME!r}: label_weights has unknown label key(s) {unknown}")
    for key, value in label_weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"reward {NAME!r}: label_weights[{key!r}] must be a finite number > 0, got {value!r}")
    return {key: float(value) for key, value in label_weights.items()}


def justification_source(parsed: ParsedAnswer) -> str:
    """The text that should name the reasons: the JSON justification, or a text answer's text.

    A JSON answer that does not decode (cut off) uses its salvaged justification, "" when that
    was cut: its whole text holds the reasons list itself, which would "name" every reason.
    """
    if parsed.is_json or parsed.truncated:
        return parsed.justification
    return parsed.text_outside_json


def consistency(parsed: ParsedAnswer, logic_share: float = DEFAULT_LOGIC_SHARE) -> float:
    """C in [0, 1]: reasons agreeing with the predicted actions, and named by the justification."""
    reasons = {r for r in parsed.reasons if r in REASON_BY_KEY}
    if not reasons:
        return 0.0
    logic = 1.0 - len(inconsistent_reasons(parsed.actions, reasons)) / len(reasons)
    named = parse_answer(justification_source(parsed)).reasons & reasons
    return logic_share * logic + (1.0 - logic_share) * len(named) / len(reasons)


def truth_keys(value: Any, vocabulary: Sequence[str], what: str, row: Any) -> set[str]:
    """Truth labels of one row as a key set: a 0/1 vector in vocabulary order or a list of keys."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"row {row!r}: {what} must be a 0/1 vector or a list of keys, got {value!r}")
    items = list(value)
    if not items:  # an empty key list: no label holds
        return set()
    if all(isinstance(v, str) for v in items):
        unknown = sorted(set(items) - set(vocabulary))
        if unknown:
            raise ValueError(f"row {row!r}: unknown {what} key(s) {unknown}")
        return set(items)
    if len(items) < len(vocabulary) or any(v not in (0, 1) for v in items[: len(vocabulary)]):
        raise ValueError(f"row {row!r}: {what} must be {len(vocabulary)} 0/1 ints, got {items!r}")
    if what == "actions":  # BDD-OIA may carry a 5th "confuse" entry: only the first 4 are actions
        return set(actions_from_vector(items))
    if len(items) != len(vocabulary):
        raise ValueError(f"row {row!r}: {what} must be {len(vocabulary)} 0/1 ints, got {len(items)}")
    return set(reasons_from_vector(items))


def score_components(
    parsed: ParsedAnswer,
    true_actions: set[str],
    true_reasons: set[str],
    *,
    logic_share: float = DEFAULT_LOGIC_SHARE,
    empty_match_f1: float = DEFAULT_EMPTY_MATCH_F1,
    label_weights: Mapping[str, float] | None = None,
    false_alarm_weight: float | None = None,
) -> dict[str, float]:
    """The four R2 components of one parsed answer (all 0 for an answer with no labels).

    ``format`` is Q: 1 for one clean schema-valid JSON object, else 0.
    """
    if parsed.empty:
        return dict.fromkeys(COMPONENTS, 0.0)
    return {
        "actions_f1": set_f1(parsed.actions, true_actions, empty_match_f1, label_weights, false_alarm_weight),
        "reasons_f1": set_f1(parsed.reasons, true_reasons, empty_match_f1, label_weights, false_alarm_weight),
        "consistency": consistency(parsed, logic_share),
        "format": float(parsed.clean),
    }


def combine(
    components: dict[str, float],
    *,
    w_actions: float = DEFAULT_W_ACTIONS,
    w_reasons: float = DEFAULT_W_REASONS,
    w_consistency: float = DEFAULT_W_CONSISTENCY,
    w_format: float = DEFAULT_W_FORMAT,
) -> float:
    """R2 from its components (the module docstring's equation)."""
    labels = (
        w_actions * components["actions_f1"]
        + w_reasons * components["reasons_f1"]
        + w_consistency * components["consistency"]
    )
    return labels * (1.0 - w_format * (1.0 - components["format"]))


def check_weights(reward: str, allow_all_zero: bool = False, **weights: float) -> None:
    """Weights must be finite and >= 0, and not all 0 (a clear error names the parameter)."""
    for name, value in weights.items():
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or not 0 <= value < float("inf"):
            raise ValueError(f"reward {reward!r}: {name} must be a finite number >= 0, got {value!r}")
    if not allow_all_zero and not any(weights.values()):
        raise ValueError(f"reward {reward!r}: all weights are 0 ({', '.join(weights)})")


@register_reward(NAME)
def action_reasoning_reward(
    completions: Any = None,
    *,
    w_actions: float = DEFAULT_W_ACTIONS,
    w_reasons: float = DEFAULT_W_REASONS,
    w_consistency: float = DEFAULT_W_CONSISTENCY,
    logic_share: float = DEFAULT_LOGIC_SHARE,
    empty_match_f1: float = DEFAULT_EMPTY_MATCH_F1,
    w_format: float = DEFAULT_W_FORMAT,
    label_weights: Mapping[str, float] | None = None,
    false_alarm_weight: float | None = None,
    **kwargs: Any,
) -> list[float]:
    """R2 per completion (see the module docstring); needs the columns ``actions`` and ``reasons``."""
    check_weights(NAME, w_actions=w_actions, w_reasons=w_reasons, w_consistency=w_consistency)
    check_weights(NAME, allow_all_zero=True, w_format=w_format)
    if w_format > 1.0:  # the format factor 1 - w_format must not go negative
        raise ValueError(f"reward {NAME!r}: w_format must be in [0, 1], got {w_format!r}")
    label_weights = check_label_weights(label_weights)
    if false_alarm_weight is not None:
        check_weights(NAME, allow_all_zero=True, false_alarm_weight=false_alarm_weight)
    if not 0.0 <= logic_share <= 1.0:
        raise ValueError(f"reward {NAME!r}: logic_share must be in [0, 1], got {logic_share!r}")
    if not 0.0 <= empty_match_f1 <= 1.0:
        raise ValueError(f"reward {NAME!r}: empty_match_f1 must be in [0, 1], got {empty_match_f1!r}")
    completions = as_completion_list(completions)
    n = len(completions)
    ids = kwargs.get("id")
    ids = list(range(n)) if ids is None else list(ids)  # row names for truth errors
    true_actions = [
        truth_keys(v, ACTION_KEYS, "actions", ids[i] if i < len(ids) else i)
        for i, v in enumerate(column(kwargs, "actions", n, NAME))
    ]
    true_reasons = [
        truth_keys(v, REASON_KEYS, "reasons", ids[i] if i < len(ids) else i)
        for i, v in enumerate(column(kwargs, "reasons", n, NAME))
    ]
    parts: dict[str, list[float]] = {key: [] for key in COMPONENTS}

    def score(i: int, text: str) -> float:
        components = score_components(
            parse_answer(text),
            true_actions[i],
            true_reasons[i],
            logic_share=logic_share,
            empty_match_f1=empty_match_f1,
            label_weights=label_weights,
            false_alarm_weight=false_alarm_weight,
        )
        for key, value in components.items():
            parts[key].append(value)
        return combine(
            components,
            w_actions=w_actions,
            w_reasons=w_reasons,
            w_consistency=w_consistency,
            w_format=w_format,
        )

    scores = score_each(
        NAME,
        score,
        completions,
        0.0,
        w_actions + w_reasons + w_consistency,
        log_metric=kwargs.get("log_metric"),
    )
    log_means(kwargs, NAME, parts)
    return scores

