"""Which library constrains decoding to the answer schema: xgrammar, llguidance, outlines(-core) or
lm-format-enforcer, measured on our schema and the demo's tiny tokenizer (``make bench``).

    python -m benchmarks.constrained [--out BENCHMARKS.md] [--repeats 3]

For each library, through its own JSON-schema path (``taxonomy/answer.schema.json`` as it is):

- setup: whether its transformers integration imports and it accepts the tiny, locally trained
  tokenizer, and the schema's compile time;
- correctness: canonical answers accepted, and each fault the schema rejects (a repeated reason,
  an unknown reason, a missing or extra key, an empty description, a non-boolean action) rejected;
- per-token overhead: ms to compute the allowed-token mask and advance, per token, along the
  tokens of the canonical answers (best of ``--repeats`` passes);
- install weight: the installed size of the library and of the packages it adds to SmolDrive's.

The chosen library is also timed on the grammar evaluate/constrained.py derives (the mode
``--decoding constrained`` uses). The section goes to BENCHMARKS.md between its own markers.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from benchmarks.markdown import section_markers, write_section
from evaluate.constrained import answer_grammar
from taxonomy.answer import answer_schema, format_answer, parse_answer
from taxonomy.labels import ACTION_KEYS, REASON_KEYS
from tiny_models.vlm import TinyVLMConfig, build_tiny_vlm

OWNER = "benchmarks.constrained"
DEFAULT_OUT = Path("BENCHMARKS.md")
DEFAULT_REPEATS = 3
CHOSEN = "xgrammar"
CANONICAL_ANSWERS = (
    format_answer("A two-lane road, a red light ahead.", ["stop"], ["stop_traffic_light", "solid_line_left"]),
    format_answer("Empty road.", ACTION_KEYS, REASON_KEYS),  # every reason, in taxonomy order
    format_answer("A car ahead; a dashed line on the right.", ["forward", "right"], ["follow_traffic"]),
)
# (what the schema says, text to replace in CANONICAL_ANSWERS[0], its replacement)
SCHEMA_FAULTS = (
    ("uniqueItems", '"stop_traffic_light", "solid_line_left"', '"stop_traffic_light", "stop_traffic_light"'),
    ("enum", '"solid_line_left"', '"solid_line_maybe"'),
    ("required", ', "left": false', ""),
    ("additionalProperties", '{"description"', '{"speed": "fast", "description"'),
    ("minLength", '"description": "A two-lane road, a red light ahead."', '"description": ""'),
    ("type boolean", '"stop": true', '"stop": "yes"'),
)
# The layout format_answer writes (json.dumps' separators), given to each library that takes it.
SEPARATORS = {"item_separator": ", ", "key_separator": ": "}


def faulty_answers() -> dict[str, str]:
    answers = {}
    for name, old, new in SCHEMA_FAULTS:
        broken = CANONICAL_ANSWERS[0].replace(old, new)
        assert broken != CANONICAL_ANSWERS[0] and not parse_answer(broken).schema_valid, name
        answers[name] = broken
    return answers


@dataclass
class Candidate:
    """One library, set up for one tokenizer: ``accepts(text)`` and ``walk(token_ids)`` (masks and
    advances token by token)."""

    name: str
    distribution: str
    accepts: Callable[[str], bool]
    walk: Callable[[list[int]], None]
    compile_s: float
    integration: str
    notes: list[str] = field(default_factory=list)


def setup_xgrammar(tokenizer: Any, vocab_size: int, schema: str, grammar: str | None = None) -> Candidate:
    import xgrammar as xgr
    from xgrammar.contrib.hf import LogitsProcessor  # noqa: F401  (the transformers integration)

    eos = tokenizer.eos_token_id
    started = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=[eos])
    compiler = xgr.GrammarCompiler(info)
    compiled = (compiler.compile_grammar(grammar) if grammar
                else compiler.compile_json_schema(schema, any_whitespace=False))
    compile_s = time.perf_counter() - started

    def accepts(text: str) -> bool:
        matcher = xgr.GrammarMatcher(compiled)
        return matcher.accept_string(text) and matcher.accept_token(eos)

    def walk(ids: list[int]) -> None:
        matcher, bitmask = xgr.GrammarMatcher(compiled), xgr.allocate_token_bitmask(1, vocab_size)
        for token in ids:
            matcher.fill_next_token_bitmask(bitmask)
            assert matcher.accept_token(token)

    return Candidate("xgrammar" + (" (our grammar)" if grammar else ""), "xgrammar", accepts, walk, compile_s,
                     "xgrammar.contrib.hf.LogitsProcessor")


def setup_llguidance(tokenizer: Any, vocab_size: int, schema: str) -> Candidate:
    """Strict by default, llguidance refuses a schema with a key it does not implement; lenient, it
    ignores the key (the note says which)."""
    import llguidance
    import llguidance.hf
    import llguidance.torch

    started = time.perf_counter()
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
    strict = llguidance.LLMatcher.grammar_from_json_schema(
        schema, defaults={**SEPARATORS, "whitespace_flexible": False})
    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        schema, defaults={**SEPARATORS, "whitespace_flexible": False, "lenient": True})
    compile_s = time.perf_counter() - started
    refused = llguidance.LLMatcher.validate_grammar(strict)
    problems = [f"strict mode refuses the schema ({refused}); measured lenient"] if refused else []

    def accepts(text: str) -> bool:
        matcher = llguidance.LLMatcher(ll_tokenizer, grammar)
        ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
        return bool(matcher.consume_tokens(ids)) and not matcher.is_error()

    def walk(ids: list[int]) -> None:
        matcher = llguidance.LLMatcher(ll_tokenizer, grammar)
        bitmask = llguidance.torch.allocate_token_bitmask(1, vocab_size)
        for token in ids:
            llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
            assert matcher.consume_token(token)

    return Candidate("llguidance", "llguidance", accepts, walk, compile_s,
                     "llguidance.hf + llguidance.torch bitmasks", problems)


def setup_outlines(tokenizer: Any, vocab_size: int, schema: str) -> Candidate:
    from outlines.models.transformers import from_transformers  # noqa: F401  (the transformers integration)
    from outlines_core import Guide, Index, Vocabulary
    from outlines_core.json_schema import build_regex_from_schema

    eos = tokenizer.eos_token_id
    special = set(tokenizer.all_special_ids)
    started = time.perf_counter()
    regex = build_regex_from_schema(schema)
    tokens: dict[str, list[int]] = {}
    for token_id in range(len(tokenizer)):
        if token_id not in special:
            tokens.setdefault(tokenizer.decode([token_id]), []).append(token_id)
    index = Index(regex, Vocabulary(eos, tokens))
    compile_s = time.perf_counter() - started

    def accepts(text: str) -> bool:
        return re.fullmatch(regex, text) is not None

    def walk(ids: list[int]) -> None:
        guide = Guide(index)
        for token in ids:
            guide.get_tokens()
            guide.advance(token)

    return Candidate("outlines", "outlines", accepts, walk, compile_s,
                     "outlines.from_transformers (outlines_core Index/Guide underneath)")


def setup_lm_format_enforcer(tokenizer: Any, vocab_size: int, schema: str) -> Candidate:
    from lmformatenforcer import JsonSchemaParser

    notes = []
    try:
        from lmformatenforcer.integrations.transformers import build_transformers_prefix_allowed_tokens_fn  # noqa: F401
    except ImportError as err:
        notes.append(f"its transformers integration does not import with transformers "
                     f"{metadata.version('transformers')}: {err}")
    parsed_schema = json.loads(schema)
    started = time.perf_counter()
    JsonSchemaParser(parsed_schema)
    compile_s = time.perf_counter() - started

    def accepts(text: str) -> bool:
        parser = JsonSchemaParser(parsed_schema)
        for char in text:
            if char not in parser.get_allowed_characters():
                return False
            parser = parser.add_character(char)
        return parser.can_end()

    def walk(ids: list[int]) -> None:  # character level (the token-level integration does not load)
        parser = JsonSchemaParser(parsed_schema)
        for token in ids:
            parser.get_allowed_characters()
            for char in tokenizer.decode([token]):
                parser = parser.add_character(char)

    notes.append("arrays are capped at 20 items by default (the answer listing all 21 reasons is refused)")
    return Candidate("lm-format-enforcer", "lm-format-enforcer", accepts, walk, compile_s,
                     "none loadable" if len(notes) > 1 else "build_transformers_prefix_allowed_tokens_fn", notes)


SETUPS = (setup_xgrammar, setup_llguidance, setup_outlines, setup_lm_format_enforcer)


# ---------------------------------------------------------------------------------------------
# Install weight


def _requirements(name: str) -> set[str]:
    out = set()
    for requirement in metadata.requires(name) or []:
        if "extra ==" in requirement:
            continue
        out.add(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return out


def _closure(names: set[str], skip: set[str] = frozenset()) -> set[str]:
    seen, todo = set(), list(names - set(skip))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [r for r in _requirements(name) if r not in skip]
    return seen


def _installed_mb(name: str) -> float:
    files = metadata.distribution(name).files or []
    return sum((f.size or 0) for f in files) / 1e6


def install_weight(distribution: str, candidates: set[str]) -> tuple[float, list[str]]:
    """MB installed by ``distribution`` and the packages it adds to SmolDrive's own dependencies."""
    ours = _closure(_requirements("smoldrive"), skip=candidates)
    added = sorted(_closure({distribution}) - ours)
    return sum(_installed_mb(name) for name in added), added


# ---------------------------------------------------------------------------------------------
# Run


def measure(candidate: Candidate, tokenizer: Any, repeats: int) -> dict:
    faults = faulty_answers()
    accepted = [candidate.accepts(a) for a in CANONICAL_ANSWERS]
    rejected = {name: not candidate.accepts(text) for name, text in faults.items()}
    walks = [tokenizer.encode(" " + a if candidate.name.startswith(CHOSEN + " ") else a, add_special_tokens=False)
             for a in CANONICAL_ANSWERS]
    tokens = sum(map(len, walks))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for ids in walks:
            candidate.walk(ids)
        best = min(best, time.perf_counter() - started)
    return {"accepted": sum(accepted), "rejected": rejected, "ms_per_token": 1000 * best / tokens,
            "tokens": tokens}


def tiny_tokenizer() -> tuple[Any, int]:

    model, processor = build_tiny_vlm(TinyVLMConfig(seed=0))
    return processor.tokenizer, int(model.config.get_text_config().vocab_size)


def render(rows: list[dict], vocab_size: int, repeats: int) -> str:
    start, end = section_markers(OWNER)
    fault_names = [name for name, _, _ in SCHEMA_FAULTS]
    lines = [start, "## Constrained decoding: which library", "",
             f"`python -m benchmarks.constrained` (2 CPU cores shared; the tiny tokenizer, vocabulary {vocab_size}; "
             f"best of {repeats}). Each library on `taxonomy/answer.schema.json` through its own JSON-schema path; "
             f"the last row is the grammar `evaluate/constrained.py` derives from the schema (what "
             f"`--decoding constrained` uses). Canonical answers accepted (of {len(CANONICAL_ANSWERS)}); each "
             "schema fault rejected (yes/no); mask and advance per token along the canonical answers' tokens; "
             "installed size of the library and the packages it adds to SmolDrive's.", "",
             "| library | version | transformers integration | canonical accepted | "
             + " | ".join(f"rejects {n}" for n in fault_names)
             + " | compile ms | mask ms/token | install MB | adds | notes |",
             "|" + "---|" * (9 + len(fault_names))]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | {row['version']} | fails: {row['error']} |"
                         + " |" * (6 + len(fault_names)))
            continue
        result = row["result"]
        lines.append(
            f"| {row['name']} | {row['version']} | {row['integration']} | {result['accepted']} | "
            + " | ".join("yes" if result["rejected"][n] else "**no**" for n in fault_names)
            + f" | {1000 * row['compile_s']:.1f} | {result['ms_per_token']:.3f} | {row['install_mb']:.1f} | "
            f"{', '.join(row['added'])} | {'; '.join(row['notes'])} |")
    lines += ["", end]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.constrained", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    args = parser.parse_args(argv)

    tokenizer, vocab_size = tiny_tokenizer()
    schema = json.dumps(answer_schema())
    candidates = {"xgrammar", "llguidance", "outlines", "outlines-core", "lm-format-enforcer"}
    setups = [(s.__name__.removeprefix("setup_").replace("_", "-"), s) for s in SETUPS]
    setups.append((f"{CHOSEN} (our grammar)",
                   lambda t, v, s: setup_xgrammar(t, v, s, grammar=answer_grammar())))
    rows = []
    for name, setup in setups:
        distribution = name.split(" ")[0]
        row = {"name": name, "version": metadata.version(distribution)}
        try:
            candidate = setup(tokenizer, vocab_size, schema)
            row.update(integration=candidate.integration, compile_s=candidate.compile_s, notes=candidate.notes,
                       result=measure(candidate, tokenizer, args.repeats))
            row["install_mb"], row["added"] = install_weight(candidate.distribution, candidates)
        except Exception as err:  # a library that cannot take our tokenizer or schema is a result
            row["error"] = f"{type(err).__name__}: {str(err)[:120]}"
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "notes"}, default=str))
    section = render(rows, vocab_size, args.repeats)
    write_section(args.out, section, *section_markers(OWNER))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
