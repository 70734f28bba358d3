"""A tiny open_clip model with random weights, saved in open_clip's own local-folder format.

Saved as ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``, the file open_clip
writes for the hub) plus ``open_clip_model.safetensors``. open_clip 3.3 loads such a folder with the
``local-dir:`` schema and no registration or special-casing::

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:work/models/tiny-clip")
    tokenizer = open_clip.get_tokenizer("local-dir:work/models/tiny-clip")

which is the same call a real model takes (``"ViT-B-32"`` with ``pretrained="laion2b_s34b_b79k"``);
``rewards.clip_model.load_clip`` wraps both. The text side uses open_clip's shipped
SimpleTokenizer (the config names no HF tokenizer), so the vocabulary is its 49408 BPE tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

OPEN_CLIP_CONFIG_FILE = "open_clip_config.json"  # the name open_clip's local-dir/hf-hub loaders read
OPEN_CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"  # first in open_clip's preferred checkpoint order
LOCAL_DIR_SCHEMA = "local-dir:"


@dataclass
class TinyClipConfig:
    """Every size of the tiny CLIP. Defaults: 64-px images, 64-d embeddings, ~3.4M parameters
    (3.2M of them the token embedding that SimpleTokenizer's 49408-token vocabulary needs)."""

    seed: int = field(default=0, metadata={"help": "seeds the random weights"})
    embed_dim: int = field(default=64, metadata={"help": "joint image/text embedding size"})
    image_size: int = field(default=64, metadata={"help": "input image side in pixels"})
    patch_size: int = field(default=8, metadata={"help": "vision patch side in pixels"})
    vision_width: int = field(default=64, metadata={"help": "vision transformer width"})
    vision_layers: int = field(default=2, metadata={"help": "vision transformer layers"})
    vision_head_width: int = field(default=32, metadata={"help": "vision width per attention head"})
    text_width: int = field(default=64, metadata={"help": "text transformer width"})
    text_layers: int = field(default=2, metadata={"help": "text transformer layers"})
    text_heads: int = field(default=2, metadata={"help": "text attention heads"})
    context_length: int = field(default=77, metadata={"help": "text tokens read (CLIP's 77)"})
    vocab_size: int = field(default=49408, metadata={"help": "must match the tokenizer (SimpleTokenizer: 49408)"})

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.vision_width % self.vision_head_width:
            raise ValueError(
                f"vision_width {self.vision_width} is not a multiple of vision_head_width {self.vision_head_width}"
            )
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")


def open_clip_model_cfg(cfg: TinyClipConfig) -> dict:
    """The open_clip model config (the schema of open_clip/model_configs/*.json)."""
    return {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {
            "image_size": cfg.image_size,
            "layers": cfg.vision_layers,
            "width": cfg.vision_width,
            "head_width": cfg.vision_head_width,
            "patch_size": cfg.patch_size,
        },
        "text_cfg": {
            "context_length": cfg.context_length,
            "vocab_size": cfg.vocab_size,
            "width": cfg.text_width,
            "heads": cfg.text_heads,
            "layers": cfg.text_layers,
        },
    }


def build_tiny_clip(cfg: TinyClipConfig | None = None):
    """An open_clip CLIP with random weights (deterministic in cfg.seed)."""
    from open_clip.model import CLIP

    cfg = cfg or TinyClipConfig()
    model_cfg = open_clip_model_cfg(cfg)
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = CLIP(**model_cfg)
    return model.eval()


def save_tiny_clip(model, cfg: TinyClipConfig, out_dir: str | Path) -> Path:
    """Write the folder open_clip's ``local-dir:`` schema loads (config + safetensors weights)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # open_clip's default normalisation (OpenAI CLIP's mean/std), written out so the folder says it.
    # squash, not centre-crop: the side lanes, solid lines and cars beside us sit at the edges of 16:9 frames
    preprocess_cfg = {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD), "resize_mode": "squash"}
    config = {"model_cfg": open_clip_model_cfg(cfg), "preprocess_cfg": preprocess_cfg}
    (out_dir / OPEN_CLIP_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    # safetensors refuses shared tensors; open_clip's CLIP has none, contiguous() guards views.
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / OPEN_CLIP_WEIGHTS_FILE))
    return out_dir


def local_dir_name(path: str | Path) -> str:
    """The open_clip model name for a saved folder: ``local-dir:<path>``."""
    return f"{LOCAL_DIR_SCHEMA}{path}"
