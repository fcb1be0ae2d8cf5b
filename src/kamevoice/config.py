"""Typed settings: defaults < settings file < environment (`KAMEVOICE_*`) < command-line flags.

The file is TOML or YAML, named by `--config FILE` or `KAMEVOICE_CONFIG`.
Nested fields use `__` in environment names, e.g.
`KAMEVOICE_FRONTEND__CHECKPOINT=SakanaAI/kame` or `KAMEVOICE_SERVER__PORT=8998`.

Each part of the system owns a section (a pydantic model); this module only
composes them, so adding a provider never touches anything else.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kamevoice.backend.llm.settings import LLMSettings
from kamevoice.backend.scheduler import SchedulerSettings
from kamevoice.backend.stt.settings import STTSettings
from kamevoice.errors import ConfigError
from kamevoice.section import Section


class FrontendSettings(Section):
    """Which front-end model to run, where, and how it samples."""

    checkpoint: str | None = Field(
        None, description="hub repo id (SakanaAI/kame, kyutai/moshiko-pytorch-bf16) or local directory"
    )
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # The four sampling values: where left unset, the checkpoint's config.json `lm_gen_config`
    # decides (`SamplingOptions.from_settings`), then these defaults (KAME.md's).
    temperature: float = Field(
        0.8, ge=0.0, description="audio sampling temperature (0 = greedy; unset: the checkpoint's, else 0.8)"
    )
    top_k: int = Field(250, ge=0, description="audio top-k (unset: the checkpoint's, else 250)")
    text_temperature: float = Field(
        0.7, ge=0.0, description="text sampling temperature (0 = greedy; unset: the checkpoint's, else 0.7)"
    )
    text_top_k: int = Field(25, ge=0, description="text top-k (unset: the checkpoint's, else 25)")
    oracle_follow_bias: float = Field(
        0.0,
        ge=0.0,
        description="logit bias toward the oracle's next piece when the model speaks (0: off; unset: "
        "the checkpoint's `kamevoice.oracle_follow_bias`, else 0); see kamevoice.frontend.policies.oracle_follow",
    )
    seed: int = 42
    # A small model's step is as fast on one thread as on two, and the second thread costs CPU
    # that STT and other sessions need: KAME-tiny on 2 cores used 0.49-0.50 s of CPU a second of
    # audio on one thread, 0.51-0.55 on two (`kamevoice bench tiny`, two runs each).
    cpu_threads: int = Field(
        0, ge=0, description="torch threads for the model on the CPU (0: torch's default, one a core)"
    )


class ServerSettings(Section):
    """Network front door (`kamevoice serve`): address, capacity, access control, limits, logs."""

    host: str = Field("127.0.0.1", description="address to bind; loopback by default (no exposure)")
    port: int = Field(8998, ge=0, le=65535, description="TCP port (0: any free port)")
    max_sessions: int = Field(4, ge=1, description="concurrent conversations; more get HTTP 503 'busy'")
    token: SecretStr | None = Field(
        None, description="if set, /api/chat needs 'Authorization: Bearer TOKEN' or '?token=TOKEN'"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser Origins allowed on /api/chat ('*' for any); empty: same host:port only",
    )
    max_message_bytes: int = Field(
        1 << 20, ge=1024, description="largest WebSocket message accepted; bigger ones end the session"
    )
    idle_timeout_s: float = Field(
        60.0, ge=0, description="end a conversation after this long without a message (0: never)"
    )
    log_dir: Path | None = Field(None, description="directory for per-session event logs (JSONL)")
    oracle: bool = Field(True, description="run the back-end (STT + LLM oracle); false: front-end alone")
    stt_process: bool = Field(
        True,
        description="run local STT engines (sphinx, whisper) in a child process per session: PocketSphinx "
        "holds the GIL while decoding, which stalls the frame loop if it shares the process",
    )
    lockstep: bool = Field(
        False,
        description="testing only: step the engine when every session has audio (deterministic), "
        "not every 80 ms of wall clock; a silent client then holds up the others",
    )


class Settings(BaseSettings):
    """All of kamevoice's settings."""

    model_config = SettingsConfigDict(
        env_prefix="KAMEVOICE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    frontend: FrontendSettings = FrontendSettings()
    server: ServerSettings = ServerSettings()
    stt: STTSettings = STTSettings()
    llm: LLMSettings = LLMSettings()
    scheduler: SchedulerSettings = SchedulerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: flags (init) > environment > file.
        return (init_settings, env_settings, _FileSource(settings_cls))


class _FileSource(PydanticBaseSettingsSource):
    """Reads the TOML/YAML file named by KAMEVOICE_CONFIG."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("KAMEVOICE_CONFIG")
        return read_settings_file(Path(path)) if path else {}


def read_settings_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML settings file into a dict; errors name the file."""
    if not path.is_file():
        raise ConfigError(f"settings file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"settings file {path} is not valid {path.suffix.lstrip('.').upper()}: {exc}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from file, environment and explicit overrides (e.g. CLI flags)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
