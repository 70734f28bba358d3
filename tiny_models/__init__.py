"""Tiny offline stand-ins for the real models: a SmolVLM-shaped Idefics3 and a small open_clip.

Build both with ``python -m tiny_models.build --out work/models --seed 0``; see :mod:`tiny_models.vlm`
and :mod:`tiny_models.clip`. Loading them needs nothing from here: they load exactly like
``HuggingFaceTB/SmolVLM-Instruct`` (``AutoProcessor``/``AutoModelForImageTextToText``) and like an
open_clip model (``rewards.clip_model.load_clip("local-dir:<out>/tiny-clip")``).
"""

from tiny_models.clip import TinyClipConfig, build_tiny_clip, local_dir_name, save_tiny_clip
from tiny_models.vlm import (
    END_OF_UTTERANCE,
    IMAGE_TOKEN,
    REAL_SIZES,
    SMOLVLM_CHAT_TEMPLATE,
    TinyVLMConfig,
    build_tiny_vlm,
    config_parameter_count,
    count_parameters,
    image_tokens_per_tile,
    real_size_config,
    real_size_image_processor_kwargs,
    save_tiny_vlm,
)

VLM_DIR_NAME = "tiny-smolvlm"  # <out>/tiny-smolvlm
CLIP_DIR_NAME = "tiny-clip"  # <out>/tiny-clip

__all__ = [
    "CLIP_DIR_NAME",
    "END_OF_UTTERANCE",
    "IMAGE_TOKEN",
    "REAL_SIZES",
    "SMOLVLM_CHAT_TEMPLATE",
    "TinyClipConfig",
    "TinyVLMConfig",
    "VLM_DIR_NAME",
    "build_tiny_clip",
    "build_tiny_vlm",
    "config_parameter_count",
    "count_parameters",
    "image_tokens_per_tile",
    "local_dir_name",
    "real_size_config",
    "real_size_image_processor_kwargs",
    "save_tiny_clip",
    "save_tiny_vlm",
]
