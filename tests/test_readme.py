"""The README and the docs show only commands and options that exist: every `banditlab ...` line in the code
blocks of README.md, figures/README.md and docs/*.md is parsed and each subcommand and --option is looked up in
the real CLI. The README's test command is the line CI runs, and every page it links to exists."""

import re
import shlex
from pathlib import Path

import pytest
import typer

from banditlab.cli.app import app

ROOT = Path(__file__).resolve().parents[1]


def split(text: str) -> list[str]:
    try:
        return shlex.split(text.replace("…", "x"))
    except ValueError:  # prose in a command table ("a sweep's figure")
        return text.split()


def commands(text: str) -> list[list[str]]:
    """`banditlab ...` invocations in fenced code blocks and `inline code`, continuation lines joined."""
    out = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            for part in re.split(r"&&|\|", line):
                part = part.strip()
                if part.startswith("banditlab "):
                    out.append(split(part))
    for inline in re.findall(r"`(banditlab [^`]+)`", text):
        out.append(split(inline))
    return out


def lookup(words: list[str]):
    """The click command a word list names, and the rest of the words."""
    cmd = typer.main.get_command(app)
    rest = words[1:]
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    return cmd, rest


PAGES = [ROOT / "README.md", ROOT / "figures" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = {str(p.relative_to(ROOT)): commands(p.read_text()) for p in PAGES}


@pytest.mark.parametrize("doc", list(DOCS))
def test_every_documented_command_and_option_exists(doc):
    assert DOCS["README.md"], "the README shows no banditlab command"
    problems = []
    for words in DOCS[doc]:
        cmd, rest = lookup(words)
        if hasattr(cmd, "commands"):  # a group: the next word must be one of its commands
            if rest and not rest[0].startswith("-") and rest[0] not in cmd.commands:
                problems.append(f"{' '.join(words)}: no command {rest[0]!r}")
            continue
        names = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        for w in rest:
            opt = w.split("=")[0]
            if opt.startswith("--") and opt not in names:
                problems.append(f"{' '.join(words)}: no option {opt}")
    assert problems == []


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    line = next(l for l in ci.splitlines() if "pytest" in l and not l.startswith("#"))
    assert line.strip() in readme


def test_every_cli_option_has_a_description():
    import click

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, cmd

    missing = [f"{path} {p.opts[0]}" for path, cmd in walk(typer.main.get_command(app), "banditlab")
               for p in cmd.params if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert missing == []


def test_every_local_link_in_the_readme_and_docs_exists():
    problems = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            path = (page.parent / target).resolve()
            if "://" not in target and not path.exists():
                problems.append(f"{page.relative_to(ROOT)}: {target}")
    assert problems == []
