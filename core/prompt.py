"""The conversation the model sees: M frames and no text from the user, the JSON answer from the
assistant. Training builds its dataset from these turns and evaluation prompts with the same user
turn, so what a model learnt and what it is asked are the same format; and what one such
conversation costs in tokens."""

from __future__ import annotations

from typing import Any


def image_prompt(num_frames: int) -> list[dict]:
    """The prompt-free user turn: the frames and no text."""
    return [{"role": "user", "content": [{"type": "image"} for _ in range(num_frames)]}]


def answer_turn(text: str) -> list[dict]:
    """The assistant turn saying ``text`` (what SFT teaches)."""
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def tokens_per_sample(processor: Any, sample: dict) -> dict[str, int]:
    """How many tokens one sample costs: image tokens, answer tokens, total (the budget to watch)."""
    text = processor.apply_chat_template(sample["prompt"], add_generation_prompt=True)
    encoded = processor(text=[text], images=[sample["images"]], return_tensors="pt")
    prompt_tokens = int(encoded["input_ids"].shape[1])
    image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    image_tokens = int((encoded["input_ids"] == image_token_id).sum())
    answer = sample.get("completion")
    answer_text = answer[0]["content"][0]["text"] if isinstance(answer, list) else (answer or "")
    answer_tokens = len(processor.tokenizer(answer_text, add_special_tokens=False)["input_ids"])
    return {
        "frames": len(sample["images"]),
        "image_tokens": image_tokens,
        "prompt_tokens": prompt_tokens,
        "answer_tokens": answer_tokens,
        "total_tokens": prompt_tokens + answer_tokens,
    }
