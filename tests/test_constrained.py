"""evaluate/constrained.py: the grammar derived from the answer schema, the shortest closing path,
and constrained generation on the demo's tiny model: every answer validates, even at a small cap."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from benchmarks.constrained import CANONICAL_ANSWERS, faulty_answers
from evaluate import constrained
from evaluate.generate import generate_answers, load_eval_split, load_model_and_processor
from taxonomy.answer import answer_validator, parse_answer

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 8
# Just above the shortest schema-valid answer (~40 tokens with the tiny tokenizer): the untrained
# model never closes a string by itself, so every answer needs the cap guard to end.
SMALL_CAP = 48
ANSWERS = CANONICAL_ANSWERS  # a stop with two reasons; every action and reason; two actions, one reason


def assert_valid(text: str) -> None:
    """Valid by the project's parser and by jsonschema against taxonomy/answer.schema.json."""
    assert parse_answer(text).schema_valid, text
    answer_validator().validate(json.loads(text))


@pytest.fixture(scope="module")
def tiny(tiny_vlm_dir):
    model, processor = load_model_and_processor(tiny_vlm_dir)
    return model, processor, constrained.ConstrainedDecoder.for_model(model, processor)


def accepts(decoder, text: str) -> bool:
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(decoder.compiled)
    return matcher.accept_string(text) and matcher.accept_token(decoder.eos_token_id)


@pytest.mark.parametrize("answer", ANSWERS)
def test_grammar_accepts_canonical_answers(tiny, answer):
    decoder = tiny[2]
    assert accepts(decoder, answer)
    assert accepts(decoder, " " + answer)  # the space SmolVLM's prompt leaves before the answer


@pytest.mark.parametrize("fault", sorted(faulty_answers()))
def test_grammar_rejects_what_the_schema_rejects(tiny, fault):
    broken = faulty_answers()[fault]  # the schema (and parse_answer) reject it: checked there
    assert not parse_answer(broken).schema_valid
    assert not accepts(tiny[2], broken)


@pytest.mark.parametrize("answer", ANSWERS)
def test_every_prefix_closes_into_a_valid_answer(tiny, answer):
    pieces = tiny[2].pieces
    for text in (answer, " " + answer):
        for cut in range(len(text) + 1):
            closed = text[:cut] + constrained.shortest_completion(pieces, text[:cut])
            assert accepts(tiny[2], closed), closed
            assert_valid(closed.strip())
    assert constrained.shortest_completion(pieces, answer) == ""


def test_unsupported_schema_is_named():
    with pytest.raises(constrained.ConstrainedDecodingError, match=r"answer.schema.json: \$\.n"):
        constrained.answer_pieces({"type": "object", "additionalProperties": False, "required": ["n"],
                                   "properties": {"n": {"type": "number"}}})


def generate(tiny, dataset_dir, max_new_tokens, decoding="constrained"):
    model, processor, decoder = tiny
    data = load_eval_split(dataset_dir, "test", SAMPLES)
    return generate_answers(model, processor, [row["frames"] for row in data], batch_size=4,
                            max_new_tokens=max_new_tokens, progress=False,
                            constraint=decoder if decoding == "constrained" else None)


@pytest.mark.parametrize("max_new_tokens", [SMALL_CAP, 96])
def test_every_constrained_answer_on_the_demo_model_validates(tiny, small_prepared_dataset, max_new_tokens):
    generated = generate(tiny, small_prepared_dataset, max_new_tokens)
    assert len(generated.texts) == SAMPLES
    for text, count, hit_limit in zip(generated.texts, generated.token_counts, generated.hit_limit):
        assert_valid(text)
        assert not hit_limit and count < max_new_tokens  # closed and ended by the EOS within the cap


def test_cap_guard_forces_the_close(tiny, small_prepared_dataset):
    """At the small cap the untrained model would run on inside a string: the guard closes it."""
    model, processor, decoder = tiny
    guards = []
    processors = decoder.processors

    def recording(prompt_length, max_new_tokens):
        made = processors(prompt_length, max_new_tokens)
        guards.append(made[-1].processors[-1])  # the guard runs last
        return made

    decoder.processors = recording
    try:
        generate(tiny, small_prepared_dataset, SMALL_CAP)
    finally:
        del decoder.processors
    assert sum(guard.forced_steps for guard in guards) > 0


def test_cap_below_the_shortest_answer_is_refused(tiny):
    decoder = tiny[2]
    with pytest.raises(constrained.ConstrainedDecodingError, match="max_new_tokens=10"):
        decoder.processors(prompt_length=5, max_new_tokens=10)


def test_make_eval_and_predict_pass_decoding():
    for target in ("eval", "predict INPUT=clip.mp4"):
        # --no-print-directory: under `make test` this make is nested and would end with "Leaving directory"
        printed = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/.installed", *shlex.split(target),
                                  "DECODING=constrained"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        words = shlex.split(printed.splitlines()[-1])
        assert words[words.index("--decoding") + 1] == "constrained"


def test_make_decoding_record_evaluates_each_model_in_both_modes(tmp_path):
    for model in ("sft", "stage3"):
        (tmp_path / model).mkdir()
    printed = subprocess.run(["make", "-n", "-o", ".venv/.installed", "decoding-record", f"WORK={tmp_path}"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    evaluations = [shlex.split(line) for line in printed.splitlines() if "-m evaluate.run" in line]
    found = {(words[words.index("--model") + 1], words[words.index("--decoding") + 1]) for words in evaluations}
    assert found == {(str(tmp_path / m), d) for m in ("sft", "stage3") for d in ("free", "constrained")}
    assert "-m evaluate.decoding_record" in printed
