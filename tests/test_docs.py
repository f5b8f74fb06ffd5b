"""Docs and parser in step: every command and flag README.md and DESIGN.md name exists in the parser.

DESIGN.md names commands other work is building now; NOT_YET lists exactly those (and their flags), and
the lead shrinks it as they land. A name in NOT_YET that the parser has fails too, so the list cannot rot.
"""

from __future__ import annotations

import re

import pytest

from monitor.cli import _walk, build_parser
from tests.conftest import REPO, SHARED

NOT_YET: set[str] = set()
DOCS = [REPO / "README.md", SHARED / "DESIGN.md"]
OTHER_TOOLS = {"--index-url"}  # pip's, in the install notes


def _parser_names() -> tuple[set[str], set[str]]:
    commands: set[str] = set()
    flags: set[str] = set()
    for sub in _walk(build_parser()):
        commands.add(sub.prog.removeprefix("incident-monitor").strip())
        flags.update(o for action in sub._actions for o in action.option_strings if o.startswith("--"))
    return commands, flags


BENCHMARK_RUN = re.compile(r"`(?:taskset -c [\d,]+ )?python (benchmarks/[\w/]+\.py)([^`]*)`")


def _documented(path) -> tuple[set[str], set[str]]:
    text = BENCHMARK_RUN.sub("", path.read_text(encoding="utf-8"))  # their flags are checked below
    commands: set[str] = set()
    for row in re.findall(r"^\| (`[^|]+`(?:, `[^|]+`)*) \|", text, re.M):
        for cell in re.findall(r"`([^`]+)`", row):
            words = [w for w in cell.split() if re.fullmatch(r"[a-z][a-z-]*", w)]
            if words and not cell.startswith(("-", "[")) and cell.split()[0] == words[0]:
                commands.add(" ".join(words))
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
    return commands, flags


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_documented_command_and_flag_exists(path):
    if not path.exists():
        pytest.skip(f"{path} not found (the shared folder sits beside the repository)")
    commands, flags = _parser_names()
    documented_commands, documented_flags = _documented(path)
    variables = {c for c in documented_commands if c.upper() == c}
    missing = sorted((documented_commands - variables - commands - NOT_YET) | (documented_flags - flags - NOT_YET - OTHER_TOOLS))
    assert not missing, f"{path.name} names what the parser lacks: {missing}"


def test_every_documented_benchmark_run_exists():
    """A `python benchmarks/NAME.py --flag` in the README names a script that exists and a flag it parses."""
    runs = BENCHMARK_RUN.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert runs, "the README's Measured table names its benchmark commands"
    for script, rest in runs:
        source = (REPO / script).read_text(encoding="utf-8") if (REPO / script).exists() else None
        assert source is not None, f"README runs {script}, which does not exist"
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", rest):
            assert f'"{flag}"' in source, f"README runs {script} {flag}, which the script does not parse"


def test_not_yet_lists_only_what_is_missing():
    commands, flags = _parser_names()
    assert not NOT_YET & (commands | flags), "remove from NOT_YET what now exists"
