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


@pytest.mark.parametrize("command", [["serve"], ["run", "in.wav"], ["eval", "mtbench"], ["eval", "tiny"]])
def test_serve_run_and_eval_take_the_published_servers_flags(command):
    """SakanaAI/kame's server flags, with its meaning, through `startup.FLAG_SETTINGS`."""
    from kamevoice.startup import settings_from_args

    published = "--hf-repo someone/base --moshi-weight w.safetensors --mimi-weight m.safetensors --tokenizer "
    published += (
        "t.model --config-path moshi_lm_kwargs.json --lora-weight l.safetensors --no_fuse_lora --half "
    )
    published = [*published.split(), "--device", "cpu"]
    args = build_parser().parse_args([*command, *published])
    fs = settings_from_args(args).frontend
    assert (fs.hf_repo, fs.moshi_weight, fs.mimi_weight, fs.tokenizer) == (
        "someone/base",
        "w.safetensors",
        "m.safetensors",
        "t.model",
    )
    assert (fs.config_path, fs.lora_weight, fs.fuse_lora, fs.dtype, fs.device) == (
        "moshi_lm_kwargs.json",
        "l.safetensors",
        False,
        "float16",
        "cpu",
    )
    assert fs.names_checkpoint  # no --checkpoint, yet not the embedded KAME-tiny
