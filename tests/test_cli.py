"""The `kamevoice` command: every subcommand answers --help."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from kamevoice.cli import build_parser, main


def _all_command_paths(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_command_paths(sub, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    paths = list(_all_command_paths(build_parser()))
    assert ("bench", "frontend") in paths and ("model", "info") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "usage: kamevoice " + " ".join(path) in out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "kamevoice.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("kamevoice ")


def test_group_without_subcommand_prints_its_help(capsys):
    assert main(["bench"]) == 2
    assert "frontend" in capsys.readouterr().out


def test_user_errors_exit_1_with_message(capsys, tmp_path):
    assert main(["model", "info", str(tmp_path / "missing" / "dir")]) == 1
    assert "neither a local directory nor a hub repo id" in capsys.readouterr().err
