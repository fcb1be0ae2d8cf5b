"""The flags of every command that loads a front-end: ours, and the published KAME server's.

`add_frontend_flags` gives a command `--checkpoint`, `--device` (and `--seed`) the same way in
every command; `add_published_flags` the published server's checkpoint flags.

SakanaAI/kame's `server_oracle.py` names a checkpoint's parts with `--hf-repo`, `--moshi-weight`,
`--mimi-weight`, `--tokenizer`, `--config-path`, `--lora-weight`, `--no_fuse_lora` and `--half`;
`serve`, `run` and `eval` accept them with the same meaning. They become `FrontendSettings`
through `kamevoice.startup.FLAG_SETTINGS` (and its negated and constant flags), like every flag.
"""

from __future__ import annotations

import argparse


def add_frontend_flags(
    parser: argparse.ArgumentParser, *, device: str | None = None, seed: bool = False, published: bool = False
) -> None:
    """`--checkpoint` and `--device` (default `device`, None: the settings'), `--seed` when asked,
    and the published server's flags with `published`; all map to `FrontendSettings`."""
    parser.add_argument(
        "--checkpoint",
        help="front-end checkpoint: directory or hub repo id (default: settings, else KAME-tiny)",
    )
    where = "default: settings" if device is None else f"default {device}"
    parser.add_argument("--device", default=device, help=f"cpu, cuda, cuda:N, auto ({where})")
    if seed:
        parser.add_argument(
            "--seed", type=int, default=None, help="sampling seed (default: settings frontend.seed)"
        )
    if published:
        add_published_flags(parser)


def add_published_flags(parser: argparse.ArgumentParser) -> None:
    """The published KAME server's checkpoint flags (SakanaAI/kame `server_oracle.py`), for the
    commands that load a front-end; they map to `FrontendSettings` through `FLAG_SETTINGS`."""
    parser.add_argument("--hf-repo", help="base hub repo: the checkpoint if --checkpoint is not given, and "
                        "where a checkpoint without config.json gets its tokenizer and codec "
                        "(default kyutai/moshiko-pytorch-bf16)")  # fmt: skip
    parser.add_argument("--moshi-weight", help="LM weights (path, file://PATH or hf://OWNER/REPO/PATH)")
    parser.add_argument("--mimi-weight", help="Mimi codec weights (path, file:// or hf://)")
    parser.add_argument("--tokenizer", help="text tokenizer, SentencePiece (path, file:// or hf://)")
    parser.add_argument(
        "--config-path", help="config replacing the checkpoint's: config.json or moshi_lm_kwargs.json"
    )
    parser.add_argument("--lora-weight", help="LoRA adapter weights for a LoRA configuration")
    parser.add_argument("--no-fuse-lora", "--no_fuse_lora", dest="no_fuse_lora", action="store_true",
                        help="keep LoRA adapters apart (not merged)")  # fmt: skip
    parser.add_argument("--half", action="store_true", help="run in float16 (the published server's flag)")
