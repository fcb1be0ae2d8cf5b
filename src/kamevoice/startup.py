"""One start-up path: settings in, a ready front-end, its sampling and its back-end out.

Every command goes through here, so they agree on what "the default" is:

1. `settings_from_args(args)`: defaults < settings file < environment < flags, the same
   precedence in every command (flags are named in `FLAG_SETTINGS`);
2. `resolve(settings)`: with no checkpoint named, the embedded KAME-tiny with its own
   catalogue and thread count (`kamevoice.tiny.defaults.embedded_defaults`), settled once;
3. `start(settings)`: the loaded front-end, its `SamplingOptions` (settings over the
   checkpoint's `lm_gen_config` over defaults) and its `Backend` (or none, front-end alone).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kamevoice.backend.factory import Backend, backend_from_settings
from kamevoice.config import Settings, load_settings
from kamevoice.frontend.sampling import SamplingOptions

# Command-line flags (argparse `dest`) and the settings they set. A flag left at None (or a
# store-true flag left False) sets nothing, so file and environment values stand.
FLAG_SETTINGS: dict[str, str] = {
    "checkpoint": "frontend.checkpoint",
    # The published KAME server's flags (`add_published_flags`), with its meaning.
    "hf_repo": "frontend.hf_repo",
    "moshi_weight": "frontend.moshi_weight",
    "mimi_weight": "frontend.mimi_weight",
    "tokenizer": "frontend.tokenizer",
    "config_path": "frontend.config_path",
    "lora_weight": "frontend.lora_weight",
    "device": "frontend.device",
    "dtype": "frontend.dtype",
    "seed": "frontend.seed",
    "host": "server.host",
    "port": "server.port",
    "max_sessions": "server.max_sessions",
    "token": "server.token",
    "allowed_origin": "server.allowed_origins",
    "log_dir": "server.log_dir",
    "static": "server.static_dir",
    "lockstep": "server.lockstep",
    "kb": "llm.knowledge.path",
}
# Store-true flags that turn a setting off.
NEGATED_FLAGS: dict[str, str] = {"no_oracle": "server.oracle", "no_fuse_lora": "frontend.fuse_lora"}
# Store-true flags that set a setting to one value: the published server's --half is float16.
CONSTANT_FLAGS: dict[str, tuple[str, Any]] = {"half": ("frontend.dtype", "float16")}


@dataclass
class Stack:
    """What a command runs with: its settled settings, the loaded front-end, how it samples,
    and the back-end each conversation gets (None: the front-end alone)."""

    settings: Settings
    frontend: Any  # kamevoice.frontend.loading.Frontend
    sampling: SamplingOptions
    backend: Backend | None


def flag_overrides(args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The nested settings the given flags set (see `FLAG_SETTINGS`)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    nested: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        *parents, leaf = path.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    for flag, path in FLAG_SETTINGS.items():
        value = values.get(flag)
        if value is None or value is False:
            continue
        if isinstance(value, list | tuple) and not value:
            continue
        put(path, list(value) if isinstance(value, list | tuple) else value)
    for flag, path in NEGATED_FLAGS.items():
        if values.get(flag):
            put(path, False)
    for flag, (path, value) in CONSTANT_FLAGS.items():
        if values.get(flag):
            put(path, value)
    return nested


def settings_from_args(args: argparse.Namespace | Mapping[str, Any] | None = None) -> Settings:
    """Settings from defaults, file, environment and the flags in `args` (flags win)."""
    return load_settings(**(flag_overrides(args) if args is not None else {}))


def resolve(settings: Settings) -> Settings:
    """`settings` with the embedded default settled (see `kamevoice.tiny.defaults`)."""
    from kamevoice.tiny.defaults import embedded_defaults

    return embedded_defaults(settings)


def backend_for(settings: Settings, *, stt_process: bool = False) -> Backend | None:
    """The conversations' back-end, or None when `server.oracle` is off (front-end alone)."""
    if not settings.server.oracle:
        return None
    return backend_from_settings(settings, stt_process=stt_process)


def load_frontend(settings: Settings, *, load_codec: bool = True) -> tuple[Any, SamplingOptions]:
    """The front-end the (resolved) settings name, loaded on their device and thread count, and
    how it samples: a value set in the settings wins, else the checkpoint's, else the default."""
    from kamevoice.frontend import loading
    from kamevoice.frontend.device import apply_cpu_threads

    fs = resolve(settings).frontend
    apply_cpu_threads(fs.cpu_threads)
    frontend = loading.load_frontend(
        fs.checkpoint,
        device=fs.device,
        dtype=fs.dtype,
        load_codec=load_codec,
        overrides=fs.overrides(),
        fuse_lora=fs.fuse_lora,
    )
    return frontend, SamplingOptions.from_settings(fs, frontend.files.lm_gen_config, frontend.files.extra)


def start(settings: Settings, *, load_codec: bool = True, stt_process: bool = False) -> Stack:
    """Resolve the settings and load everything a command runs with (see module doc)."""
    settings = resolve(settings)
    frontend, sampling = load_frontend(settings, load_codec=load_codec)
    return Stack(settings, frontend, sampling, backend_for(settings, stt_process=stt_process))
