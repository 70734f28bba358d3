"""The README and docs/ cannot drift from the code: what they tell users to write or run is checked
here the way the code would check it for them.

- Every fenced ```yaml block is a recipe fragment. Its first line names the recipe file it belongs
  to (``# recipes/stage1/stage1.yaml``); the block is laid over that file's keys and parsed by the
  stage's own parser (``recipes.config.parse_recipe`` onto the stage's ``RECIPE_TYPES``), and an RL stage
  then builds its rewards (``recipes.rl.build_rewards``): an unknown key or a bad ``reward_params`` entry
  fails here exactly as it fails for a user.
- Every ``make ...`` line in a fenced shell block, and every inline ```make ...``` span, runs as
  ``make -n`` with the variables it sets (nothing is executed, the venv is not installed) and must
  exit 0; each stage command it prints is parsed by that stage's parser, so ``ARGS`` is checked too.
- Every inline ```reward_params.<reward>.<parameter>``` names a registered reward and one of its
  parameters.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# A fenced block, also indented inside a list item (its lines then carry the same indent).
FENCED_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
INLINE_CODE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
RECIPE_NAME_LINE = re.compile(r"#\s*(?P<path>recipes/(?P<stage>\w+)/\w+\.yaml)\s*$")
REWARD_PARAMETER_PATH = re.compile(r"^reward_params\.(?P<reward>\w+)\.(?P<parameter>\w+)$")
STAGE_COMMAND = re.compile(r"^recipes\.(?P<stage>\w+)\.(?P=stage)$")
# Seconds a `make -n` may take: one of them imports torch to count GPUs (NPROC's default).
MAKE_DRY_RUN_TIMEOUT_S = 60


@dataclass(frozen=True)
class Snippet:
    document: Path
    line: int  # 1-based line of the snippet's first character in the document
    text: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _fenced_blocks(languages: tuple[str, ...]) -> list[Snippet]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in FENCED_BLOCK.finditer(text):
            if match["language"] in languages:
                body = textwrap.dedent(match["body"])
                found.append(Snippet(document, _line_of(text, match.start("body")), body))
    return found


def _inline_code() -> list[Snippet]:
    found = []
    for document in DOCUMENTS:
        text = FENCED_BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), document.read_text())
        found += [Snippet(document, _line_of(text, m.start()), m["code"]) for m in INLINE_CODE.finditer(text)]
    return found


def _make_commands() -> list[Snippet]:
    commands = []
    for block in _fenced_blocks(SHELL_LANGUAGES):
        for number, line in enumerate(block.text.splitlines()):
            if line.strip().startswith("make "):
                commands.append(Snippet(block.document, block.line + number, line.strip()))
    commands += [span for span in _inline_code() if span.text.startswith("make ")]
    unique = {}
    for command in commands:  # the same line in several places is run once, reported at its first
        unique.setdefault(tuple(shlex.split(command.text, comments=True)), command)
    return list(unique.values())


YAML_SNIPPETS = _fenced_blocks(("yaml", "yml"))
MAKE_COMMANDS = _make_commands()
REWARD_PARAMETER_PATHS = [span for span in _inline_code() if REWARD_PARAMETER_PATH.match(span.text)]


def _stage_module(stage: str, where: str):
    try:
        module = importlib.import_module(f"recipes.{stage}.{stage}")
    except ModuleNotFoundError:
        pytest.fail(f"{where}: recipes/{stage}/ is not a stage (no recipes.{stage}.{stage} module)")
    return module


def parse_as_the_stage_does(stage: str, argv: list[str], where: str) -> None:
    """Parse ``argv`` with the stage's own parser; an RL stage also builds its rewards."""
    from recipes.config import parse_recipe
    from recipes.errors import RecipeError
    from recipes.rl import build_rewards

    module = _stage_module(stage, where)
    try:
        recipe, training_args, _ = parse_recipe(module.RECIPE_TYPES, argv)
        if hasattr(recipe, "reward_funcs"):
            build_rewards(recipe, training_args)
    except RecipeError as err:
        pytest.fail(f"{where}: {err}", pytrace=False)


def test_the_documents_hold_snippets_to_check():
    """Guards the extraction itself: a regex that silently finds nothing would pass everything."""
    assert YAML_SNIPPETS and MAKE_COMMANDS
    for document in DOCUMENTS:  # every fence line opens or closes a block the regex found
        text = document.read_text()
        fences = len(re.findall(r"^[ \t]*```", text, re.M))
        assert fences == 2 * len(FENCED_BLOCK.findall(text)), f"{document.name}: a fence the extraction misreads"
    assert ["make", "demo"] in [shlex.split(c.text, comments=True) for c in MAKE_COMMANDS]


@pytest.mark.parametrize("snippet", YAML_SNIPPETS, ids=lambda s: s.where)
def test_yaml_snippet_parses_as_the_recipe_it_names(snippet, tmp_path):
    first_line = snippet.text.splitlines()[0] if snippet.text.strip() else ""
    named = RECIPE_NAME_LINE.match(first_line)
    assert named, (
        f"{snippet.where}: a yaml block must name the recipe it belongs to on its first line, "
        f"e.g. '# recipes/stage1/stage1.yaml'; found {first_line!r}"
    )
    recipe_file = ROOT / named["path"]
    assert recipe_file.is_file(), f"{snippet.where}: {named['path']} does not exist"
    fragment = yaml.safe_load(snippet.text)
    assert isinstance(fragment, dict), f"{snippet.where}: the block is not a mapping of recipe keys"
    merged = {**yaml.safe_load(recipe_file.read_text()), **fragment}
    merged_file = tmp_path / recipe_file.name
    merged_file.write_text(yaml.safe_dump(merged))
    parse_as_the_stage_does(named["stage"], ["--config", str(merged_file)], snippet.where)


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=lambda c: f"{c.where} {c.text}")
def test_make_command_dry_runs_and_its_stage_arguments_parse(command):
    words = shlex.split(command.text, comments=True)
    done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=MAKE_DRY_RUN_TIMEOUT_S)
    assert done.returncode == 0, f"{command.where}: `make -n {shlex.join(words[1:])}` failed:\n{done.stderr}"
    printed = done.stdout.replace("\\\n", " ")
    for piece in (piece for line in printed.splitlines() for piece in line.split("&&")):
        printed_words = shlex.split(piece)
        if "-m" not in printed_words[:-1]:
            continue
        module_at = printed_words.index("-m") + 1
        stage = STAGE_COMMAND.match(printed_words[module_at])
        if stage:
            parse_as_the_stage_does(stage["stage"], printed_words[module_at + 1:], f"{command.where} ({piece.strip()})")


@pytest.mark.parametrize("span", REWARD_PARAMETER_PATHS, ids=lambda s: f"{s.where} {s.text}")
def test_reward_parameter_named_in_prose_exists(span):
    from rewards.registry import registered_rewards, reward_parameters

    path = REWARD_PARAMETER_PATH.match(span.text)
    assert path["reward"] in registered_rewards(), (
        f"{span.where}: `{span.text}`: no reward {path['reward']!r}; registered: {registered_rewards()}"
    )
    accepted = sorted(reward_parameters(path["reward"]))
    assert path["parameter"] in accepted, (
        f"{span.where}: `{span.text}`: reward {path['reward']!r} has no parameter {path['parameter']!r}; "
        f"accepted: {accepted}"
    )
