"""Settings of the network front door (`kamevoice serve`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from kamevoice.section import Section
from kamevoice.server.limits import LimitSettings


class ServerSettings(Section):
    """Network front door (`kamevoice serve`): address, capacity, access control, limits, logs."""

    host: str = Field("127.0.0.1", description="address to bind; loopback by default (no exposure)")
    port: int = Field(8998, ge=0, le=65535, description="TCP port (0: any free port)")
    max_sessions: int = Field(4, ge=1, description="concurrent conversations; more get HTTP 503 'busy'")
    token: SecretStr | None = Field(
        None, description="if set, /api/chat needs 'Authorization: Bearer TOKEN' or '?token=TOKEN'"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the server answers to besides loopback names, IP literals and --host "
        "(DNS-rebinding guard on every route; '*' for any)",
    )
    metrics_token: SecretStr | None = Field(
        None, description="if set, /metrics needs 'Authorization: Bearer TOKEN'"
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser Origins allowed on /api/chat ('*' for any); empty: same host:port only",
    )
    max_message_bytes: int = Field(
        1 << 20, ge=1024, description="largest WebSocket message accepted; bigger ones end the session"
    )
    idle_timeout_s: float = Field(
        60.0,
        ge=0,
        description="end a conversation after this long without audio (pings do not count; 0: never)",
    )
    limits: LimitSettings = Field(default_factory=LimitSettings, description="what one client may cost")
    log_dir: Path | None = Field(None, description="directory for per-session event logs (JSONL)")
    static_dir: Path | None = Field(
        None,
        description="serve this folder at / instead of our page (another web client, e.g. Kyutai's built "
        "client: its index.html and assets), from the same origin as /api/chat; our page stays at "
        "/static/index.html",
    )
    oracle: bool = Field(True, description="run the back-end (STT + LLM oracle); false: front-end alone")
    stt_process: bool = Field(
        True,
        description="run local STT engines (sphinx, whisper) in a child process per session: PocketSphinx "
        "holds the GIL while decoding, which stalls the frame loop if it shares the process",
    )
    admin_token: SecretStr | None = Field(
        None, description="bearer token of POST /admin/drain; unset: the admin routes refuse every call"
    )
    drain_timeout_s: float = Field(
        30.0, ge=0, description="on SIGTERM or /admin/drain, how long running conversations may go on"
    )
    lockstep: bool = Field(
        False,
        description="testing only: step the engine when every session has audio (deterministic), "
        "not every 80 ms of wall clock; a silent client then holds up the others",
    )
