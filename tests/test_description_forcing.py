"""evaluate.description_forcing: the forced prompt is the trained conversation cut at a token
boundary, and only the wrongly described clips get the reference description forced."""

from __future__ import annotations

import json

import pytest
from test_evaluate import CLIPS, FRAMES_PER_CLIP, make_dataset

from evaluate import description_forcing
from evaluate.generate import EvaluationError, Generated, forced_prompt, generate_answers, load_model_and_processor
from core.prompt import answer_turn, image_prompt
from taxonomy.answer import answer_through_description, format_answer


def test_the_forced_prompt_is_a_token_prefix_of_the_trained_conversation(tiny_vlm_dir):
    """The model continues from the tokens training showed it, not from a re-split text."""
    _, processor = load_model_and_processor(tiny_vlm_dir)
    for _, actions, reasons, description in CLIPS:
        answer = format_answer(description, actions, reasons)
        conversation = processor.apply_chat_template(image_prompt(FRAMES_PER_CLIP) + answer_turn(answer))
        prompt = forced_prompt(processor, FRAMES_PER_CLIP, answer_through_description(description))
        whole = processor.tokenizer(conversation, add_special_tokens=False)["input_ids"]
        cut = processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert whole[: len(cut)] == cut and len(cut) < len(whole)


def test_a_forced_answer_starts_with_what_was_forced(tiny_vlm_dir):
    from test_evaluate import _frames

    model, processor = load_model_and_processor(tiny_vlm_dir)
    start = answer_through_description("A clear road.")
    result = generate_answers(model, processor, [_frames(0), _frames(1)], batch_size=2, max_new_tokens=4,
                              progress=False, answer_starts=[start, start])
    assert all(text.startswith(start) and len(text) > len(start) for text in result.texts)
    with pytest.raises(EvaluationError, match="do not combine"):
        generate_answers(model, processor, [_frames(0)], max_new_tokens=2, progress=False,
                         answer_starts=[start], constraint=object())


def _reads_labels_off(description: str) -> str:
    """A model that reads its labels off the description it was given (stands in for generation)."""
    actions, reasons = next(((a, r) for _, a, r, d in CLIPS if d == description), (["forward"], []))
    return format_answer(description, actions, reasons)


def test_only_the_wrong_descriptions_are_replaced_by_the_reference(tmp_path, monkeypatch):
    dataset = make_dataset(tmp_path / "data")
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    records = []
    for k, (clip_id, actions, reasons, description) in enumerate(CLIPS):
        said = description if k < 3 else "Something else entirely."  # clips d and e described wrong
        text = _reads_labels_off(said)
        records.append({"id": clip_id, "text": text, "parsed": {"description": said},
                        "truth": {"description": description}})
    (eval_dir / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    forced_with = []

    def fake_generate(model, processor, rows, batch_size, max_new_tokens, answer_starts, desc):
        assert len(rows) == len(answer_starts)
        forced_with.extend(answer_starts)
        return Generated(texts=[_reads_labels_off(json.loads(s + " {}}")["description"]) for s in answer_starts])

    monkeypatch.setattr(description_forcing, "load_model_and_processor", lambda model_dir: (None, None))
    monkeypatch.setattr(description_forcing, "generate_for_split", fake_generate)
    result = description_forcing.force_descriptions("m", str(eval_dir), str(dataset), "test", check_clips=2)

    references = [answer_through_description(d) for *_, d in CLIPS]
    assert forced_with == references[:2] + references[3:]  # the check's own descriptions, then d and e's truth
    assert result["described_wrong"] == 2 and result["check"] == {"clips": 2, "same_labels": 2}
    assert result["own"]["actions"]["f1_all"] < 1.0 == result["forced"]["actions"]["f1_all"]
    assert result["wrong_clips"]["forced"]["reasons"]["f1_all"] == pytest.approx(1.0)
    assert json.loads((eval_dir / description_forcing.OUTPUT_FILE).read_text()) == result


def test_predictions_of_another_split_are_refused(tmp_path):
    dataset = make_dataset(tmp_path / "data")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "predictions.jsonl").write_text(json.dumps(
        {"id": "other", "text": "", "parsed": {}, "truth": {"description": ""}}))
    with pytest.raises(description_forcing.EvaluationError, match="ids differ"):
        description_forcing.force_descriptions("m", str(tmp_path / "eval"), str(dataset), "test")
