"""A tiny SmolVLM-shaped Idefics3 with random weights, its tokenizer and processor, built offline.

It stands in for ``HuggingFaceTB/SmolVLM-Instruct`` wherever the model hub is out of reach (tests, the
demo, CI): same classes (``Idefics3ForConditionalGeneration`` + ``Idefics3Processor``), same special
tokens, the exact same chat template, ``<end_of_utterance>`` as EOS, so the code a user runs on the
real model runs unchanged on this one. Only the sizes differ; every size is a :class:`TinyVLMConfig`
field (and a ``tiny_models.build`` flag).

The tokenizer is a byte-level BPE trained here on answers written by :mod:`taxonomy.answer`
(so answer JSON takes few tokens) plus generic scene words; byte-level means any text still encodes
and decodes back exactly.

:func:`real_size_config` gives the exact architectures of the three published SmolVLM sizes, for
benchmarks with random weights (instantiate on the meta device to count parameters).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from taxonomy.answer import format_answer, format_text_answer
from taxonomy.labels import ACTION_KEYS, REASONS, inconsistent_reasons

# ---------------------------------------------------------------------------------------------
# SmolVLM's tokens and chat template

BOS_TOKEN = "<|im_start|>"  # SmolVLM's bos; its chat template writes it itself
PAD_TOKEN = "<|im_end|>"  # SmolVLM's pad token
UNK_TOKEN = "<|endoftext|>"
END_OF_UTTERANCE = "<end_of_utterance>"  # end of every turn, and SmolVLM's EOS
IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
# Idefics3Processor looks up <row_{i}_col_{j}> for i, j in 1..6 (its image-splitting grid limit).
PROCESSOR_GRID_ROWS = 6
PROCESSOR_GRID_COLS = 6
SMOLLM2_RMS_NORM_EPS = 1e-5  # SmolLM2's (and Idefics3Config's default text) RMSNorm epsilon

# SmolVLM-Instruct's chat template, byte for byte (also SmolVLM-256M/500M-Instruct and SmolVLM2).
# TRL 1.16 recognises it by string equality (trl/chat_template_utils.py: `smolvlm_chat_template`,
# read from trl/chat_templates/smolvlm.jinja) and, for `assistant_only_loss=True`, swaps in its
# training variant with {% generation %} markers. Any edit here, even whitespace, turns that off.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def row_col_tokens(rows: int = PROCESSOR_GRID_ROWS, cols: int = PROCESSOR_GRID_COLS) -> list[str]:
    return [f"<row_{i + 1}_col_{j + 1}>" for i in range(rows) for j in range(cols)]


def image_tokens_per_tile(config) -> int:
    """<image> tokens one tile (one frame, with splitting off) costs: (side/patch)^2 / scale^2."""
    vision = config.vision_config
    patches_per_side = vision.image_size // vision.patch_size
    return patches_per_side**2 // config.scale_factor**2


# ---------------------------------------------------------------------------------------------
# Sizes


@dataclass
class TinyVLMConfig:
    """Every size of the tiny model. Defaults give ~0.7M parameters and 16 image tokens per frame."""

    seed: int = field(default=0, metadata={"help": "seeds the weights and the tokenizer corpus"})
    # vision tower (SigLIP-shaped)
    image_size: int = field(default=64, metadata={"help": "vision tile side in pixels (= processor longest edge)"})
    patch_size: int = field(default=8, metadata={"help": "vision patch side in pixels"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision tower width"})
    vision_layers: int = field(default=2, metadata={"help": "vision tower layers"})
    vision_heads: int = field(default=4, metadata={"help": "vision attention heads"})
    vision_intermediate_size: int = field(default=128, metadata={"help": "vision MLP width"})
    scale_factor: int = field(default=2, metadata={"help": "pixel-shuffle factor (tokens / scale^2)"})
    # text model (Llama/SmolLM2-shaped)
    text_hidden_size: int = field(default=128, metadata={"help": "text model width"})
    text_layers: int = field(default=2, metadata={"help": "text model layers"})
    text_heads: int = field(default=4, metadata={"help": "text attention heads"})
    text_kv_heads: int = field(default=2, metadata={"help": "text key/value heads (GQA as in SmolLM2)"})
    text_intermediate_size: int = field(default=256, metadata={"help": "text MLP width"})
    max_position_embeddings: int = field(default=2048, metadata={"help": "longest sequence in tokens"})
    rope_theta: float = field(default=100_000.0, metadata={"help": "RoPE base (SmolVLM-256M's value)"})
    tie_word_embeddings: bool = field(default=False, metadata={"help": "tie lm_head to the embeddings"})
    # tokenizer
    bpe_vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary trained (before image tokens)"})
    corpus_answers: int = field(default=3000, metadata={"help": "random label-set answers in the BPE corpus"})
    pad_vocab_to_multiple_of: int = field(
        default=64, metadata={"help": "embedding rows rounded up to this (as SmolVLM's 49280)"}
    )
    image_mean: float = field(default=0.5, metadata={"help": "per-channel normalisation mean (SmolVLM: 0.5)"})
    image_std: float = field(default=0.5, metadata={"help": "per-channel normalisation std (SmolVLM: 0.5)"})

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if (self.image_size // self.patch_size) % self.scale_factor:
            raise ValueError(
                f"patches per side ({self.image_size // self.patch_size}) must be a multiple of "
                f"scale_factor {self.scale_factor} for Idefics3's pixel shuffle"
            )
        for width, heads, name in (
            (self.vision_hidden_size, self.vision_heads, "vision"),
            (self.text_hidden_size, self.text_heads, "text"),
        ):
            if width % heads:
                raise ValueError(f"{name} hidden size {width} is not divisible by {name} heads {heads}")
        if self.text_heads % self.text_kv_heads:
            raise ValueError(f"text_heads {self.text_heads} is not a multiple of text_kv_heads {self.text_kv_heads}")


# ---------------------------------------------------------------------------------------------
# Tokenizer corpus

# Generic driving-scene words, so scene descriptions that are not from our templates still get
# multi-character tokens rather than bytes.
_TIMES = ("", "At night, ", "In the morning, ", "At dusk, ", "At dawn, ", "At noon, ", "In the evening, ",
          "During rush hour, ", "In the afternoon, ")
_WEATHER = ("", "on a rainy day ", "in fog ", "under a clear sky ", "in snow ", "on an overcast day ",
            "in heavy rain ", "on a sunny day ", "in light drizzle ", "under street lights ")
_ROADS = (
    "a city street", "a highway", "an intersection", "a residential road", "a two-lane road",
    "a parking lot", "a bridge", "a tunnel", "a roundabout", "a crosswalk", "a wide avenue",
    "a narrow alley", "a one-way street", "a freeway ramp", "a suburban boulevard", "a busy downtown block",
    "a T-junction", "a four-way stop", "a multi-lane expressway", "a gas station exit", "a school zone",
)
_COLOURS = ("", "white ", "black ", "silver ", "red ", "blue ", "gray ", "yellow ", "dark ")
_THINGS = (
    "car", "sedan", "SUV", "pickup truck", "truck", "delivery van", "bus", "school bus", "taxi", "motorcycle",
    "bicycle", "cyclist", "pedestrian", "group of pedestrians", "person with a stroller", "rider", "scooter",
    "police car", "ambulance", "trailer", "traffic light", "stop sign", "yield sign", "speed limit sign",
    "construction barrier", "traffic cone", "parked car", "double-parked car", "dog", "garbage truck",
)
_THING_FRAMES = ("a {colour}{thing}", "the {colour}{thing}", "another {colour}{thing}")
_SCENERY = (
    "lane markings", "a solid line", "a dashed line", "a turn lane", "buildings", "trees", "a sidewalk",
    "a median", "oncoming traffic", "a red light", "a green light", "a yellow light", "an arrow signal",
    "a pedestrian crossing", "a bike lane", "road works", "wet asphalt", "puddles", "shadows", "glare",
)
_PLACES = (
    "ahead", "on the left", "on the right", "in front", "behind", "in the left lane", "in the right lane",
    "at the corner", "near the crosswalk", "far ahead", "next to the ego car", "across the intersection",
    "in the opposite lane", "at the curb", "on the shoulder", "beside the median",
)
_VERBS = (
    "is", "waits", "moves", "turns left", "turns right", "stops", "slows down", "is parked", "crosses",
    "merges", "changes lanes", "brakes", "accelerates", "pulls over", "blocks the lane", "approaches",
)


def random_description(rng: random.Random) -> str:
    """A plausible one-sentence driving-scene description from generic scene words."""
    clauses = []
    for _ in range(rng.randint(1, 3)):
        thing = rng.choice(_THING_FRAMES).format(colour=rng.choice(_COLOURS), thing=rng.choice(_THINGS))
        clauses.append(f"{thing} {rng.choice(_VERBS)} {rng.choice(_PLACES)}")
    scene = f"{rng.choice(_TIMES)}{rng.choice(_WEATHER)}the ego car drives on {rng.choice(_ROADS)}; "
    sentence = scene + ", ".join(clauses) + f"; {rng.choice(_SCENERY)} {rng.choice(_PLACES)}."
    return sentence[0].upper() + sentence[1:]


# Label-set sampling for the tokenizer corpus: only the token statistics matter, so rough rates do.
ACTION_RATE = 0.5  # chance each action is in the set
REASON_RATE = 0.2  # chance each reason is in the set (a few reasons per answer, as in BDD-OIA)
CONSISTENT_RATE = 0.8  # share of label sets cleaned of contradicting reasons; the rest stay noisy


def random_labels(rng: random.Random) -> tuple[list[str], list[str]]:
    """A random action set with reasons mostly consistent with it (as real annotations are)."""
    actions = [a for a in ACTION_KEYS if rng.random() < ACTION_RATE] or [rng.choice(ACTION_KEYS)]
    reasons = [r.key for r in REASONS if rng.random() < REASON_RATE]
    if rng.random() < CONSISTENT_RATE:
        bad = set(inconsistent_reasons(actions, reasons))
        reasons = [r for r in reasons if r not in bad]
    return actions, reasons


def tokenizer_corpus(num_answers: int, seed: int, extra_texts: Iterable[str] = ()) -> list[str]:
    """Texts the BPE is trained on: JSON and text answers over random label sets, plus extra texts."""
    rng = random.Random(seed)
    texts = []
    for _ in range(num_answers):
        description = random_description(rng)
        actions, reasons = random_labels(rng)
        texts.append(format_answer(description, actions, reasons))
        texts.append(format_text_answer(description, actions, reasons))
    texts.extend(extra_texts)
    return texts


def read_corpus_file(path: str | Path) -> list[str]:
    """Extra tokenizer texts: a JSON list or {id: text} dict (e.g. descriptions.json), or text lines."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        values = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{path}: a JSON corpus must be a list of strings or a dict of strings")
        return values
    return [line for line in raw.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Tokenizer, processor, model


def train_tokenizer(texts: Sequence[str], bpe_vocab_size: int, model_max_length: int):
    """A byte-level BPE tokenizer carrying SmolVLM's special tokens, EOS = <end_of_utterance>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    # add_prefix_space=False: decode(encode(text)) == text exactly (no leading space is invented).
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size,
        special_tokens=[UNK_TOKEN, BOS_TOKEN, PAD_TOKEN],  # ids 0, 1, 2 as in SmolLM2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token: nothing is unknown
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    # The image and turn tokens come after the BPE vocabulary, as in SmolVLM's tokenizer.
    image_special = [FAKE_IMAGE_TOKEN, IMAGE_TOKEN, END_OF_UTTERANCE, GLOBAL_IMAGE_TOKEN, *row_col_tokens()]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=END_OF_UTTERANCE,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        extra_special_tokens=image_special,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,  # would rewrite " ." to "." and break exact round trips
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    return tokenizer


def make_image_processor(cfg: TinyVLMConfig):
    """SmolVLM's image processor with a one-tile budget: a frame becomes one image_size tile."""
    from transformers import Idefics3ImageProcessor

    return Idefics3ImageProcessor(
        do_image_splitting=False,
        size={"longest_edge": cfg.image_size},
        max_image_size={"longest_edge": cfg.image_size},
        image_mean=[cfg.image_mean] * 3,
        image_std=[cfg.image_std] * 3,
    )


def make_config(cfg: TinyVLMConfig, tokenizer):
    from transformers import Idefics3Config

    multiple = cfg.pad_vocab_to_multiple_of
    vocab_size = -(-len(tokenizer) // multiple) * multiple
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return Idefics3Config(
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        scale_factor=cfg.scale_factor,
        tie_word_embeddings=cfg.tie_word_embeddings,
        vision_config={
            "hidden_size": cfg.vision_hidden_size,
            "intermediate_size": cfg.vision_intermediate_size,
            "num_hidden_layers": cfg.vision_layers,
            "num_attention_heads": cfg.vision_heads,
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": cfg.text_hidden_size,
            "intermediate_size": cfg.text_intermediate_size,
            "num_hidden_layers": cfg.text_layers,
            "num_attention_heads": cfg.text_heads,
            "num_key_value_heads": cfg.text_kv_heads,
            "max_position_embeddings": cfg.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
            "rms_norm_eps": SMOLLM2_RMS_NORM_EPS,
            "tie_word_embeddings": cfg.tie_word_embeddings,
            **ids,
        },
        **ids,
    )


def build_tiny_vlm(cfg: TinyVLMConfig | None = None, extra_texts: Iterable[str] = ()):
    """Build (model, processor): random weights, tokenizer trained on answers. Deterministic in cfg.seed."""
    from transformers import GenerationConfig, Idefics3ForConditionalGeneration, Idefics3Processor

    cfg = cfg or TinyVLMConfig()
    corpus = tokenizer_corpus(cfg.corpus_answers, cfg.seed, extra_texts)
    tokenizer = train_tokenizer(corpus, cfg.bpe_vocab_size, cfg.max_position_embeddings)
    config = make_config(cfg, tokenizer)
    processor = Idefics3Processor(
        image_processor=make_image_processor(cfg),
        tokenizer=tokenizer,
        image_seq_len=image_tokens_per_tile(config),
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = Idefics3ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # <end_of_utterance>: generation stops at end of turn
        pad_token_id=tokenizer.pad_token_id,
    )
    model.eval()
    return model, processor


def save_tiny_vlm(model, processor, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def config_parameter_count(config) -> int:
    """Parameters of an Idefics3ForConditionalGeneration for a config, without allocating weights."""
    from transformers import Idefics3ForConditionalGeneration

    with torch.device("meta"):
        model = Idefics3ForConditionalGeneration(config)
    return count_parameters(model)


# ---------------------------------------------------------------------------------------------
# The published sizes (architecture only; random weights), for GPU benchmarks


@dataclass(frozen=True)
class _RealSize:
    vision: dict
    text: dict
    scale_factor: int
    image_token_id: int
    vocab_size: int
    # processor settings of the published checkpoint (size.longest_edge with splitting on)
    processor_longest_edge: int


_SIGLIP_BASE_PATCH16_512 = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
    "image_size": 512, "patch_size": 16,
}
_SIGLIP_SO400M_PATCH14_384 = {
    "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
    "image_size": 384, "patch_size": 14,
}
# From the published config.json files (HuggingFaceTB/SmolVLM-*-Instruct), checked against public
# copies of them: the vocabulary/image-token ids of the 2.2B differ from the 256M/500M ones. The
# numbers and their sources: docs/smolvlm.md ("Architectures").
REAL_SIZES: dict[str, _RealSize] = {
    "SmolVLM-256M-Instruct": _RealSize(
        vision=_SIGLIP_BASE_PATCH16_512,
        text={
            "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "head_dim": 64, "max_position_embeddings": 8192, "rope_theta": 100_000.0,
        },
        scale_factor=4, image_token_id=49190, vocab_size=49280, processor_longest_edge=2048,
    ),
    "SmolVLM-500M-Instruct": _RealSize(
        vision=_SIGLIP_BASE_PATCH16_512,
        text={
            "hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 15,
            "num_key_value_heads": 5, "head_dim": 64, "max_position_embeddings": 8192, "rope_theta": 100_000.0,
        },
        scale_factor=4, image_token_id=49190, vocab_size=49280, processor_longest_edge=2048,
    ),
    "SmolVLM-Instruct": _RealSize(
        vision=_SIGLIP_SO400M_PATCH14_384,
        text={
            "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24, "num_attention_heads": 32,
            "num_key_value_heads": 32, "head_dim": 64, "max_position_embeddings": 16384, "rope_theta": 273_768.0,
        },
        scale_factor=3, image_token_id=49153, vocab_size=49155, processor_longest_edge=1536,
    ),
}


def _real_size(name: str) -> _RealSize:
    key = name.split("/")[-1]  # accept "HuggingFaceTB/SmolVLM-256M-Instruct" too
    if key not in REAL_SIZES:
        raise ValueError(f"unknown SmolVLM size {name!r}: use one of {', '.join(REAL_SIZES)}")
    return REAL_SIZES[key]


def real_size_config(name: str):
    """Idefics3Config with the exact architecture of a published SmolVLM (random-weight benchmarks).

    Do not instantiate the large ones on CPU in tests; count parameters with
    :func:`config_parameter_count` (meta device).
    """
    from transformers import Idefics3Config

    size = _real_size(name)
    text = dict(size.text)
    rope_theta = text.pop("rope_theta")
    return Idefics3Config(
        image_token_id=size.image_token_id,
        scale_factor=size.scale_factor,
        tie_word_embeddings=False,
        vision_config=dict(size.vision),
        text_config={
            "model_type": "llama",
            "vocab_size": size.vocab_size,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
            "rms_norm_eps": SMOLLM2_RMS_NORM_EPS,
            "tie_word_embeddings": False,
            **text,
        },
    )


def real_size_image_processor_kwargs(name: str) -> dict:
    """The published checkpoint's image budget (splitting on, one vision tile per split)."""
    size = _real_size(name)
    return {
        "do_image_splitting": True,
        "size": {"longest_edge": size.processor_longest_edge},
        "max_image_size": {"longest_edge": size.vision["image_size"]},
    }

