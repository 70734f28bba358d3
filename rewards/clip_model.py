"""Load an open_clip model once, and embed frames and texts with it (the CLIP scorer's base).

A model is named the way open_clip names it, so a real model and the offline tiny one take the same
code path:

- a built-in architecture plus a pretrained tag or checkpoint file:
  ``load_clip("ViT-B-32", "laion2b_s34b_b79k")`` or ``load_clip("ViT-B-32", "/ckpt/model.bin")``
- a saved folder (``open_clip_config.json`` + weights; what ``tiny_models.build`` writes):
  ``load_clip("local-dir:work/models/tiny-clip")`` (``pretrained`` must be None then)
- a hub repo: ``load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")`` (needs the network)

Embeddings are L2-normalised, so a cosine similarity is a dot product:
``(encode_images(...) * encode_texts(...)).sum(-1)`` scores matching (frame, text) pairs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

IMAGE_BATCH_SIZE = 32  # frames per forward pass: bounds memory on long reward batches
TEXT_BATCH_SIZE = 64


SCHEMAS_WITH_WEIGHTS = ("local-dir:", "hf-hub:")  # open_clip names that bring their own weights


@lru_cache(maxsize=4)
def load_clip(
    model_name: str, pretrained: str | None = None, device: str = "cpu", allow_random_weights: bool = False
):
    """Return ``(model, preprocess, tokenizer)``; cached, so rewards load the model once per process.

    ``preprocess`` is open_clip's evaluation transform (PIL image -> tensor); the model is in eval
    mode. Raises ValueError naming the model when open_clip cannot find or load it, and for a bare
    architecture name without ``pretrained`` (open_clip would only warn and score with random
    weights) unless ``allow_random_weights`` (benchmarks).
    """
    import open_clip

    has_own_weights = model_name.startswith(SCHEMAS_WITH_WEIGHTS)
    if has_own_weights and pretrained:
        raise ValueError(
            f"clip model {model_name!r} carries its own weights; drop pretrained={pretrained!r} "
            "(open_clip would silently ignore it)"
        )
    if not has_own_weights and not pretrained and not allow_random_weights:
        raise ValueError(
            f"clip model {model_name!r} has no weights: give a pretrained tag or checkpoint file "
            f"(e.g. {model_name!r} + 'laion2b_s34b_b79k' for ViT-B-32), or a 'local-dir:PATH' folder"
        )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(model_name)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"cannot load CLIP model {model_name!r} (pretrained={pretrained!r}): {err}. Use a folder as "
            "'local-dir:PATH' (built by `python -m tiny_models.build`), or an open_clip architecture "
            "with a pretrained tag or checkpoint file"
        ) from err
    model.eval()
    return model, preprocess, tokenizer


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_images(model, preprocess, images: Sequence, batch_size: int = IMAGE_BATCH_SIZE) -> torch.Tensor:
    """(N, D) L2-normalised float32 embeddings of N PIL images (on CPU)."""
    images = list(images)
    if not images:
        raise ValueError("encode_images needs at least one image")
    device = _device_of(model)
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack([preprocess(im.convert("RGB")) for im in images[start : start + batch_size]])
        out.append(model.encode_image(pixels.to(device), normalize=True).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = TEXT_BATCH_SIZE) -> torch.Tensor:
    """(N, D) L2-normalised float32 embeddings of N texts (on CPU); the tokenizer truncates at its
    context length (77 tokens for CLIP), so pass only the span that should be scored."""
    texts = list(texts)
    if not texts:
        raise ValueError("encode_texts needs at least one text")
    device = _device_of(model)
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start : start + batch_size])
        out.append(model.encode_text(tokens.to(device), normalize=True).float().cpu())
    return torch.cat(out)
