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
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kamevoice.backend.llm.settings import LLMSettings
from kamevoice.backend.scheduler import SchedulerSettings
from kamevoice.backend.stt.settings import STTSettings
from kamevoice.errors import ConfigError
from kamevoice.frontend.settings import FrontendSettings
from kamevoice.server.settings import ServerSettings


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
