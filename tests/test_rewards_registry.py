"""rewards.registry: names resolve, bad config gets clear errors, callables are TRL-ready."""

from __future__ import annotations

import pickle

import pytest
from trl.trainer.utils import get_callable_name

from rewards import build_reward, completion_text, get_reward, registered_rewards, registry, resolve_rewards
from rewards.registry import ConfiguredReward, register_reward, reward_parameters
from taxonomy.answer import format_answer

PARTS = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
BUILTIN = {"action_reasoning", "structure", "clip_alignment", "description_match"}


def test_every_builtin_reward_is_registered_and_resolves():
    assert BUILTIN <= set(registered_rewards())
    for name in registered_rewards():
        assert callable(get_reward(name))
        funcs, weights = resolve_rewards([name])
        assert [get_callable_name(f) for f in funcs] == [name]  # what TRL logs
        assert weights is None


def test_unknown_names_and_parameters_are_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown reward 'acton_reasoning'.*action_reasoning.*structure"):
        get_reward("acton_reasoning")
    with pytest.raises(ValueError, match="unknown reward"):
        resolve_rewards(["structure", "nope"])
    with pytest.raises(ValueError, match="no parameter.*w_action\\b.*accepted:.*w_actions"):
        build_reward("action_reasoning", w_action=0.5)
    with pytest.raises(ValueError, match="unknown reward.*bogus"):
        resolve_rewards(["structure"], params={"bogus": {}})


def test_parameters_bind_from_config_and_weights_pass_through():
    answer = format_answer("A road.", ["forward", "stop"], ["road_clear"])
    truth = {"actions": [[1, 0, 0, 0]], "reasons": [[0, 1] + [0] * 19]}
    funcs, weights = resolve_rewards(
        ["action_reasoning", {"name": "action_reasoning", "w_actions": 1.0, "w_reasons": 0, "w_consistency": 0}],
        weights=[1, 0.5],
        params={"action_reasoning": {"w_actions": 0.0, "w_reasons": 1.0, "w_consistency": 0.0}},
    )
    assert [f.__name__ for f in funcs] == ["action_reasoning", "action_reasoning_2"]
    assert funcs[0](completions=[answer], **truth) == [pytest.approx(1.0)]  # reasons F1 only
    assert funcs[1](completions=[answer], **truth) == [pytest.approx(2 / 3)]  # actions F1 only
    assert weights == [1.0, 0.5]


@pytest.mark.parametrize(
    "weights, message",
    [([1.0], "2 rewards"), ([1.0, float("nan")], "finite"), ([1.0, "high"], "finite")],
)
def test_bad_weights_are_rejected(weights, message):
    with pytest.raises(ValueError, match=message):
        resolve_rewards(["structure", "action_reasoning"], weights=weights)


def test_configured_rewards_pickle_and_describe_themselves():
    configured = build_reward("structure", w_outside=0.5)
    restored = pickle.loads(pickle.dumps(configured))
    answer = format_answer("A road.", ["forward"], ["road_clear"])
    chatty = "Sure: " + answer
    assert restored([chatty]) == configured([chatty])
    assert restored([chatty]) != get_reward("structure")([chatty])  # the binding took effect
    assert "w_outside=0.5" in repr(configured)
    assert isinstance(configured, ConfiguredReward) and configured.keywords == {"w_outside": 0.5}
    assert "w_outside" in reward_parameters("structure")


def test_registering_a_new_reward_makes_it_resolvable(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave no trace

    @register_reward("test_length")
    def length_reward(completions, *, per_char: float = 1.0, **kwargs):
        return [per_char * len(completion_text(c)) for c in completions]

    [configured], _ = resolve_rewards([{"name": "test_length", "per_char": 2.0}])
    assert configured(["abc", [{"role": "assistant", "content": "de"}]]) == [6.0, 4.0]
    with pytest.raises(ValueError, match="already registered"):
        register_reward("structure")(length_reward)


@pytest.mark.parametrize(
    "completion, text",
    [
        ("plain", "plain"),
        ([{"role": "assistant", "content": "a"}], "a"),
        (
            [{"role": "assistant", "content": PARTS}],
            "ab",
        ),
        ([{"role": "user", "content": "question"}, {"role": "assistant", "content": "answer"}], "answer"),
        ({"role": "assistant", "content": "one message"}, "one message"),
        ([{"content": "no role"}], "no role"),
        (None, ""),
        (42, ""),
        ([{"role": "assistant", "content": None}], ""),
    ],
)
def test_completion_text_reads_every_completion_form(completion, text):
    assert completion_text(completion) == text


# --- scorer failures are counted, logged and reported, not only floored ----------------------


@pytest.fixture
def fresh_failures(monkeypatch):
    """Empty failure counts and log budget, restored afterwards (other tests' counts stay apart)."""
    monkeypatch.setattr(registry, "_failure_counts", {})
    monkeypatch.setattr(registry, "_failures_logged", {})


def failing_scorer(i: int, text: str) -> float:
    if text == "boom":
        raise RuntimeError("scorer bug")
    return 0.5


def test_score_each_counts_every_failure_per_reward_and_scores_the_floor(fresh_failures):
    scores = registry.score_each("test_fails", failing_scorer, ["ok", "boom", "boom"], -1.0, 1.0)
    assert scores == [0.5, -1.0, -1.0]
    registry.score_each("test_fails_too", failing_scorer, ["boom"], 0.0, 1.0)
    assert registry.failure_counts() == {"test_fails": 2, "test_fails_too": 1}
    registry.failure_counts()["test_fails"] = 0  # a copy: callers cannot change the counts
    assert registry.failure_counts()["test_fails"] == 2
    registry.reset_failure_counts()
    assert registry.failure_counts() == {}


def test_score_each_reports_failures_through_trl_log_metric(fresh_failures):
    logged = []
    registry.score_each("test_fails", failing_scorer, ["boom", "ok", "boom"], 0.0, 1.0,
                        log_metric=lambda name, value: logged.append((name, value)))
    registry.score_each("test_fails", failing_scorer, ["ok"], 0.0, 1.0,
                        log_metric=lambda name, value: logged.append((name, value)))
    assert logged == [("test_fails/failures", 2.0), ("test_fails/failures", 0.0)]  # per batch

    def broken_log_metric(name, value):
        raise RuntimeError("logging is down")

    # a broken logger does not break scoring
    assert registry.score_each("test_fails", failing_scorer, ["ok"], 0.0, 1.0, log_metric=broken_log_metric) == [0.5]


def test_score_each_logs_the_first_failures_with_their_traceback(fresh_failures, caplog):
    many = ["boom"] * (registry.MAX_LOGGED_FAILURES + 3)
    with caplog.at_level("ERROR", logger=registry.__name__):
        registry.score_each("test_fails", failing_scorer, many, 0.0, 1.0)
    records = [r for r in caplog.records if "test_fails" in r.getMessage()]
    assert len(records) == registry.MAX_LOGGED_FAILURES
    assert all(r.exc_info and "scorer bug" in str(r.exc_info[1]) for r in records)
    assert registry.failure_counts()["test_fails"] == len(many)  # counted beyond the logged ones


def test_a_registered_reward_that_raises_is_counted_under_its_name(fresh_failures, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_reward("test_raising")
    def raising_reward(completions, **kwargs):
        def score(i, text):
            raise ValueError("bad scorer")

        return registry.score_each("test_raising", score, completions, 0.0, 1.0,
                                   log_metric=kwargs.get("log_metric"))

    logged = {}
    configured = build_reward("test_raising")
    assert configured(["a", "b"], log_metric=lambda n, v: logged.__setitem__(n, v)) == [0.0, 0.0]
    assert registry.failure_counts() == {"test_raising": 2}
    assert logged == {"test_raising/failures": 2.0}
