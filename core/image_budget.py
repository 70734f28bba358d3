"""The processor's image budget: Idefics3's image splitting (13 tiles for a 1280x720 frame instead
of one) and the longest edge frames are resized to (docs/smolvlm.md, token budget). The recipes set
it from their YAML and save it with the model; evaluation uses what was saved unless told otherwise."""

from __future__ import annotations

from typing import Any


def configure_image_budget(processor: Any, image_splitting: bool | None = None,
                           image_longest_edge: int | None = None) -> Any:
    """Apply the image-budget knobs to a processor (None keeps what the processor has)."""
    image_processor = processor.image_processor
    if image_splitting is not None:
        image_processor.do_image_splitting = image_splitting
    if image_longest_edge is not None:
        image_processor.size = {"longest_edge": int(image_longest_edge)}
    return processor


def image_budget(processor: Any) -> dict:
    """The image budget in use, recorded beside every evaluation."""
    image_processor = processor.image_processor
    return {
        "image_splitting": bool(getattr(image_processor, "do_image_splitting", False)),
        "image_longest_edge": (getattr(image_processor, "size", None) or {}).get("longest_edge"),
    }
