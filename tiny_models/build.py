"""Build the tiny offline models: ``<out>/tiny-smolvlm`` (Idefics3 + processor) and ``<out>/tiny-clip``.

    python -m tiny_models.build --out work/models --seed 0 [--corpus work/synth/descriptions.json]
    python -m tiny_models.build --out work/models --only vlm --vlm-text-hidden-size 256

Every size is a flag (``--vlm-*`` from :class:`tiny_models.vlm.TinyVLMConfig`, ``--clip-*`` from
:class:`tiny_models.clip.TinyClipConfig`). The same seed and flags give the same files.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from tiny_models import CLIP_DIR_NAME, VLM_DIR_NAME
from tiny_models.clip import TinyClipConfig, build_tiny_clip, local_dir_name, save_tiny_clip
from tiny_models.vlm import (
    TinyVLMConfig,
    build_tiny_vlm,
    count_parameters,
    image_tokens_per_tile,
    read_corpus_file,
    save_tiny_vlm,
)

SHARED_FIELDS = {"seed"}  # set once by --seed for both models


def _add_config_flags(parser: argparse.ArgumentParser, config_cls, prefix: str) -> None:
    group = parser.add_argument_group(f"{prefix} sizes ({config_cls.__name__})")
    for f in dataclasses.fields(config_cls):
        if f.name in SHARED_FIELDS:
            continue
        flag = f"--{prefix}-{f.name.replace('_', '-')}"
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if f.type in (bool, "bool"):
            group.add_argument(flag, dest=f"{prefix}_{f.name}", action=argparse.BooleanOptionalAction,
                               default=f.default, help=help_text)
        else:
            kind = type(f.default)
            group.add_argument(flag, dest=f"{prefix}_{f.name}", type=kind, default=f.default, help=help_text)


def _config_from_args(args: argparse.Namespace, config_cls, prefix: str):
    values = {f.name: getattr(args, f"{prefix}_{f.name}") for f in dataclasses.fields(config_cls)
              if f.name not in SHARED_FIELDS}
    return config_cls(seed=args.seed, **values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tiny_models.build", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder that receives tiny-smolvlm/ and tiny-clip/")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights and the tokenizer corpus")
    parser.add_argument("--only", choices=("vlm", "clip"), default=None, help="build only one of the two models")
    parser.add_argument("--corpus", type=Path, action="append", default=[],
                        help="extra tokenizer texts: a JSON list/dict of strings (e.g. descriptions.json) or a "
                             "text file, one text per line; repeatable")
    _add_config_flags(parser, TinyVLMConfig, "vlm")
    _add_config_flags(parser, TinyClipConfig, "clip")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        vlm_cfg = _config_from_args(args, TinyVLMConfig, "vlm")
        clip_cfg = _config_from_args(args, TinyClipConfig, "clip")
        extra_texts = [text for path in args.corpus for text in read_corpus_file(path)]
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))

    jobs = [name for name in ("vlm", "clip") if args.only in (None, name)]
    for name in tqdm(jobs, desc="building tiny models", unit="model"):
        if name == "vlm":
            model, processor = build_tiny_vlm(vlm_cfg, extra_texts)
            path = save_tiny_vlm(model, processor, args.out / VLM_DIR_NAME)
            tqdm.write(
                f"tiny SmolVLM: {count_parameters(model):,} parameters, vocabulary {len(processor.tokenizer)} "
                f"tokens ({len(extra_texts)} extra corpus texts), {image_tokens_per_tile(model.config)} image "
                f"tokens per {vlm_cfg.image_size}-px frame -> {path}\n"
                f"  load: AutoProcessor.from_pretrained({str(path)!r}); "
                f"AutoModelForImageTextToText.from_pretrained({str(path)!r})\n"
                f"  recipe keys: model_name_or_path: {path}"
            )
        else:
            model = build_tiny_clip(clip_cfg)
            path = save_tiny_clip(model, clip_cfg, args.out / CLIP_DIR_NAME)
            tqdm.write(
                f"tiny CLIP: {count_parameters(model):,} parameters, embed_dim {clip_cfg.embed_dim}, "
                f"{clip_cfg.image_size}-px images -> {path}\n"
                f"  load: rewards.clip_model.load_clip({local_dir_name(path)!r})\n"
                f"  recipe keys: clip_model: \"{local_dir_name(path)}\" (a real one: clip_model: \"ViT-B-32\", "
                f"clip_pretrained: \"laion2b_s34b_b79k\")"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
