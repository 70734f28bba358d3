"""The conversation the model sees: M frames and no text from the user, the JSON answer from the
assistant. Training builds its dataset from these turns and evaluation prompts with the same user
turn, so what a model learnt and what it is asked are the same format."""

from __future__ import annotations


def image_prompt(num_frames: int) -> list[dict]:
    """The prompt-free user turn: the frames and no text."""
    return [{"role": "user", "content": [{"type": "image"} for _ in range(num_frames)]}]


def answer_turn(text: str) -> list[dict]:
    """The assistant turn saying ``text`` (what SFT teaches)."""
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
