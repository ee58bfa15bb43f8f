"""`mimscale <command> --help` stays light and says enough: building any command's parser and printing its
help imports none of torch, scipy, pandas, matplotlib (checked in a fresh interpreter's ``sys.modules``, not
timed); every (sub)command's help has an example and every option a help text; a mistyped command gets a
suggestion."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mimscale.cli import COMMANDS, main

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "scipy", "pandas", "matplotlib")
# command -> (module, parser builder)
PARSERS = {
    "pretrain": ("mimscale.cli", "build_pretrain_parser"),
    "finetune": ("mimscale.evaluate.cli", "build_parser"),
    "val-loss": ("mimscale.evaluate.cli", "build_val_loss_parser"),
    "init": ("mimscale.study.cli", "build_init_parser"),
    "study": ("mimscale.study.cli", "build_parser"),
    "analyze": ("mimscale.analysis.cli", "build_parser"),
    "report": ("mimscale.report.cli", "build_parser"),
    "data": ("mimscale.data.cli", "build_parser"),
    "demo": ("mimscale.demo.cli", "build_parser"),
    "bench": ("mimscale.bench.cli", "build_parser"),
}
PROBE = """
import contextlib, io, json, sys
from {module} import {builder}
{builder}()
loaded_by_parser = [m for m in {heavy!r} if m in sys.modules]
from mimscale.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main({argv!r})
    except SystemExit as e:
        code = e.code
print(json.dumps({{"code": code, "parser": loaded_by_parser, "help": [m for m in {heavy!r} if m in sys.modules],
                  "text": out.getvalue()}}))
"""


def _probe(command: str, argv: list[str]) -> dict:
    module, builder = PARSERS[command]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    code = PROBE.format(module=module, builder=builder, heavy=HEAVY, argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_registered_command_has_a_parser_builder():
    assert set(PARSERS) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_does_not_import_heavy_libraries(command):
    got = _probe(command, [command, "--help"])
    assert got["code"] == 0 and f"mimscale {command}" in got["text"]
    assert got["parser"] == [] and got["help"] == []


def test_the_probe_sees_a_heavy_import():
    """Negative check: the same probe reports torch when the command's help path does load it."""
    module, builder = PARSERS["bench"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    code = PROBE.format(module=module, builder=builder, heavy=HEAVY, argv=["bench", "--help"])
    code = code.replace(f"{builder}()", f"{builder}(); import mimscale.bench.measure")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["parser"] == ["torch"]


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_help_has_an_example_and_every_option_a_help_text(command):
    module, builder = PARSERS[command]
    for parser in _parsers(getattr(importlib.import_module(module), builder)()):
        assert "example" in (parser.epilog or ""), parser.prog
        actions = [c for a in parser._actions if isinstance(a, argparse._SubParsersAction) for c in a._choices_actions]
        actions += [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]
        undocumented = [a.dest for a in actions if not a.help]
        assert undocumented == [], parser.prog
        text = parser.format_help()
        assert "%%" not in text and "%(" not in text, parser.prog


def test_a_mistyped_command_gets_a_suggestion(capsys):
    assert main(["anlyze", "runs/x"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'anlyze'; did you mean 'analyze'?" in err
    assert main(["zzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err
