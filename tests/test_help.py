"""Every command's options come from one config dataclass, and its `--help` reads cleanly: no `<bool>` beside a
flag, one default per option (typer's `[default: x]`, never a hand-typed "(default: x)"), no empty default, no
braces in a usage line, no history; docs/commands.md is the generated reference, unedited."""

import re
from dataclasses import MISSING
from pathlib import Path

import click
import pytest

from banditlab.cli.app import app, click_command, main
from banditlab.cli.docs import markdown
from banditlab.cli.options import cli_fields, shown_default
from banditlab.plumbing.fields import default_of, option_name

ROOT = Path(__file__).resolve().parents[1]


def commands(typer_app=app, cmd=None, path=("banditlab",)):
    """(path, click command, the config specs behind it) of every command, groups included (specs: ())."""
    cmd = cmd or click_command()
    yield list(path), cmd, ()
    for info in typer_app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        yield [*path, name], cmd.commands[name], info.callback.specs
    for group in typer_app.registered_groups:
        yield from commands(group.typer_instance, cmd.commands[group.name], (*path, group.name))


COMMANDS = list(commands())
IDS = [" ".join(p) for p, _, _ in COMMANDS]


def help_text(path, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option: a row's default sits beside its help
    with pytest.raises(SystemExit) as e:
        main([*path[1:], "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_every_command_with_options_is_built_from_a_config_dataclass():
    for path, cmd, specs in COMMANDS:
        if hasattr(cmd, "commands"):
            continue
        options = {p.name for p in cmd.params}
        fields = {f.name for spec in specs for f in cli_fields(spec)}
        assert options == fields and fields, (path, options ^ fields)


@pytest.mark.parametrize("path, cmd, specs", COMMANDS, ids=IDS)
def test_each_option_has_its_fields_name_default_and_help(path, cmd, specs):
    params = {p.name: p for p in cmd.params}
    for f in (f for spec in specs for f in cli_fields(spec)):
        p = params[f.name]
        assert p.help == f.metadata["help"] and p.help.strip(), (path, f.name)
        if isinstance(p, click.Option):
            assert option_name(f) in p.opts or (f.metadata.get("flag") or "").startswith(p.opts[0]), (path, f.name)
            value = default_of(f)
            assert p.required == (value is MISSING), (path, f.name)
            if value is not MISSING and value not in (None, []):
                assert p.default == (f.metadata.get("shown") or value), (path, f.name)
            assert bool(p.show_default) == (shown_default(f) is not None), (path, f.name)


@pytest.mark.parametrize("path", [p for p, _, _ in COMMANDS], ids=IDS)
def test_help_has_none_of_the_known_defects(path, capsys, monkeypatch):
    text = help_text(path, capsys, monkeypatch)
    assert "<bool>" not in text  # flags take no value
    assert "(default" not in text.lower()  # typer's [default: x] is the only default
    assert "[default: ]" not in text and not re.search(r"\[default: [^\]]*\].*\[default:", text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage
    for history in ("was lent", "no GPU was", "issue #", "used to", "previously", "(untested"):
        assert history not in text, (path, history)


def option_row(text: str, option: str) -> str:
    return next(line for line in text.splitlines() if re.search(rf"│\s*{re.escape(option)}\s", line))


def test_defaults_are_shown_where_they_mean_something(capsys, monkeypatch):
    sweep = help_text(["banditlab", "sweep"], capsys, monkeypatch)
    assert "[default: vmu]" in option_row(sweep, "--baseline-ref")
    assert "[default: runs/sweep-ALGO-TIME]" in option_row(sweep, "--out")
    assert "[default: offset]" in option_row(sweep, "--absolute")
    train = help_text(["banditlab", "llm", "train"], capsys, monkeypatch)
    assert "[default: the hub]" in option_row(train, "--data-path")
    assert "[default: runs/llm-ALGO-TIME]" in option_row(train, "--out")
    assert "cuda:N" in option_row(train, "--device")
    plot = help_text(["banditlab", "plot"], capsys, monkeypatch)
    assert "Usage: banditlab plot [OPTIONS] RUN_DIR..." in plot and "[default: RUN_DIR/curves" in plot


def test_llm_help_names_every_dataset_and_the_default_one(capsys, monkeypatch):
    from banditlab_llm.config import TrainConfig

    text = help_text(["banditlab", "llm"], capsys, monkeypatch)
    assert TrainConfig.dataset == "arithmetic" and "arithmetic (the default dataset)" in text
    assert "GSM8K" in text and "MATH" in text


def test_an_option_out_of_its_declared_range_is_one_line_naming_it(capsys):
    for args, name in ((["demo", "--steps", "0"], "--steps"), (["llm", "eval", "--n", "-1"], "--n"),
                       (["llm", "bench", "--warmup", "-1"], "--warmup")):
        with pytest.raises(SystemExit) as e:
            main(args)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"banditlab: error: {name}: must be in [") and err.count("\n") == 1


def test_a_value_outside_the_range_with_another_spelling_names_it(capsys):
    with pytest.raises(SystemExit) as e:
        main(["llm", "generate", "2 + 2?", "--temperature", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("banditlab: error: --temperature: must be in [0.01, 100], got 0.0")
    assert "--greedy" in err and err.count("\n") == 1


def test_the_committed_options_reference_is_the_generated_one():
    """docs/commands.md is `python -m banditlab.cli.docs` output (regenerate it after changing an option)."""
    assert (ROOT / "docs" / "commands.md").read_text() == markdown()


def test_the_reference_lists_every_option_of_every_command():
    text = markdown()
    for path, cmd, _ in COMMANDS:
        if hasattr(cmd, "commands"):
            continue
        section = text.split(f"## `{' '.join(path)}`", 1)[1].split("\n## ", 1)[0]
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert f"`{p.opts[0]}" in section, (path, p.opts[0])
