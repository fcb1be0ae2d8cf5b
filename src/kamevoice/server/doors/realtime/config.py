"""A Realtime session's configuration: `session.update` in, the session object of
`session.created` / `session.updated` out, in the GA shape or the beta one.

GA nests audio settings (`session.audio.input.format`, `.transcription`, `.turn_detection`,
`session.audio.output.format`, `.voice`); beta has them flat (`input_audio_format`,
`input_audio_transcription`, `turn_detection`, `voice`, ...). Both parse into one frozen
`RealtimeConfig`; an update is partial (only the fields given change) and is applied whole or
not at all: any invalid field raises a `RealtimeError` naming it, and the session keeps its
configuration.

What each setting does here (docs/doors/realtime.md has the table):

- `instructions`: the back-end LLM's system prompt for this conversation;
- audio formats: PCM16 24 kHz, G.711 mu-law / A-law 8 kHz, in and out independently;
- `turn_detection`: `server_vad` / `semantic_vad` run the door's VAD (threshold, prefix padding
  and silence map onto `EndpointSettings`); null means the client commits; with null, or with
  `create_response: false`, the front-end speaks only when asked (`response.create`);
- `transcription`: null turns the user's transcription events off (the STT still feeds the oracle);
- `voice`, `speed`, `temperature`, `max_output_tokens`, `tracing`, ...: accepted and reported,
  with no effect (one voice, the model's own pace);
- `tools`: none can be called: a non-empty list is refused (`unsupported_feature`);
- `kamevoice`: `{"events": true}` adds kamevoice's own events (`kamevoice.*`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from kamevoice.backend.stt.settings import EndpointSettings
from kamevoice.server.doors.realtime.audio import FROM_BETA, WireFormat
from kamevoice.server.doors.realtime.wire import ErrorCode, RealtimeError

# The model name reported when the client names none (`?model=` sets it).
DEFAULT_MODEL = "kamevoice"
# The voice reported when the client names none (there is one voice: the front-end's own).
DEFAULT_VOICE = "alloy"
# The transcription model reported: the server's configured STT.
TRANSCRIPTION_MODEL = "kamevoice-stt"
# WebRTC VAD modes run from 0 (loose) to 3 (strict); the API's threshold runs from 0 to 1.
VAD_MODES = 3
EAGERNESS = ("low", "medium", "high", "auto")

# Fields accepted with no effect here (reported back with the values below), per dialect.
GA_IGNORED = {
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "truncation": "auto",
    "prompt": None,
    "include": None,
    "parallel_tool_calls": None,
    "reasoning": None,
}
BETA_IGNORED = {
    "tool_choice": "auto",
    "temperature": 0.8,
    "max_response_output_tokens": "inf",
    "speed": 1.0,
    "tracing": None,
    "include": None,
    "client_secret": None,
}
# What the session object reports for them (the fields of the API's session type).
GA_REPORTED = ("tool_choice", "max_output_tokens", "tracing", "truncation", "prompt", "include")
BETA_REPORTED = ("tool_choice", "temperature", "max_response_output_tokens", "speed", "tracing")
# Fields a client may echo back from `session.created` (read-only, ignored).
READ_ONLY = frozenset({"id", "object", "expires_at"})


@dataclass(frozen=True)
class TurnDetection:
    """The door's VAD: when the user's speech starts and stops (`server_vad` or `semantic_vad`)."""

    type: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True  # false: the front-end speaks only when asked (`response.create`)
    interrupt_response: bool = False  # true: the user's speech cancels the reply under way
    eagerness: str = "auto"
    idle_timeout_ms: int | None = None

    def endpoint_settings(self) -> EndpointSettings:
        """The endpointer's settings for these values (WebRTC's VAD, as the STT uses)."""
        return EndpointSettings(
            vad="webrtc",
            vad_mode=round(self.threshold * VAD_MODES),
            pre_roll_s=self.prefix_padding_ms / 1000,
            end_silence_s=self.silence_duration_ms / 1000,
        )


@dataclass(frozen=True)
class RealtimeConfig:
    """One session's configuration (see module doc)."""

    model: str = DEFAULT_MODEL
    instructions: str = ""
    voice: str = DEFAULT_VOICE
    input_format: WireFormat = WireFormat.PCM16
    output_format: WireFormat = WireFormat.PCM16
    turn_detection: TurnDetection | None = TurnDetection()
    transcription: str | None = TRANSCRIPTION_MODEL  # the model name reported; None: no events
    kamevoice_events: bool = False


# -- parsing ----------------------------------------------------------------------------------------


def _invalid(param: str, message: str, code: ErrorCode = ErrorCode.INVALID_VALUE) -> RealtimeError:
    return RealtimeError(code, f"Invalid '{param}': {message}", param)


def _object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(param, f"expected an object, got {type(value).__name__}")
    return value


def _string(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid(param, f"expected a string, got {type(value).__name__}")
    return value


def _known(obj: dict[str, Any], known: set[str] | frozenset[str], param: str) -> None:
    unknown = sorted(set(obj) - set(known))
    if unknown:
        raise RealtimeError(
            ErrorCode.UNKNOWN_PARAMETER, f"Unknown parameter: '{param}.{unknown[0]}'", f"{param}.{unknown[0]}"
        )


def _number(obj: dict, key: str, param: str, lo: float, hi: float, integer: bool = False) -> Any:
    value = obj[key]
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise _invalid(f"{param}.{key}", f"expected {kind} in [{lo:g}, {hi:g}], got {value!r}")
    return value


def _bool(obj: dict, key: str, param: str) -> bool:
    if not isinstance(obj[key], bool):
        raise _invalid(f"{param}.{key}", f"expected true or false, got {obj[key]!r}")
    return obj[key]


def _turn_detection(value: Any, current: TurnDetection | None, param: str) -> TurnDetection | None:
    if value is None:
        return None
    obj = _object(value, param)
    _known(obj, {f.name for f in fields(TurnDetection)}, param)
    td = current or TurnDetection()
    changes: dict[str, Any] = {}
    if "type" in obj:
        if obj["type"] not in ("server_vad", "semantic_vad"):
            raise _invalid(f"{param}.type", f"expected 'server_vad' or 'semantic_vad', got {obj['type']!r}")
        changes["type"] = obj["type"]
    if "threshold" in obj:
        changes["threshold"] = float(_number(obj, "threshold", param, 0.0, 1.0))
    if "prefix_padding_ms" in obj:
        changes["prefix_padding_ms"] = _number(obj, "prefix_padding_ms", param, 0, 5000, integer=True)
    if "silence_duration_ms" in obj:
        changes["silence_duration_ms"] = _number(obj, "silence_duration_ms", param, 30, 10_000, integer=True)
    if obj.get("idle_timeout_ms") is not None:
        changes["idle_timeout_ms"] = _number(obj, "idle_timeout_ms", param, 0, 3_600_000, integer=True)
    for key in ("create_response", "interrupt_response"):
        if key in obj:
            changes[key] = _bool(obj, key, param)
    if "eagerness" in obj:
        if obj["eagerness"] not in EAGERNESS:
            raise _invalid(
                f"{param}.eagerness", f"expected one of {list(EAGERNESS)}, got {obj['eagerness']!r}"
            )
        changes["eagerness"] = obj["eagerness"]
    return replace(td, **changes)


def _transcription(value: Any, param: str) -> str | None:
    if value is None:
        return None
    obj = _object(value, param)
    model = obj.get("model")
    return _string(model, f"{param}.model") if model is not None else TRANSCRIPTION_MODEL


def _ga_format(value: Any, param: str) -> WireFormat:
    obj = _object(value, param)
    _known(obj, {"type", "rate"}, param)
    try:
        fmt = WireFormat(obj.get("type"))
    except ValueError:
        raise _invalid(
            f"{param}.type",
            f"{obj.get('type')!r} is not offered; use one of {[f.value for f in WireFormat]}",
            ErrorCode.INVALID_AUDIO_FORMAT,
        ) from None
    if "rate" in obj and obj["rate"] != fmt.rate:
        raise _invalid(
            f"{param}.rate",
            f"{fmt.value} runs at {fmt.rate} Hz, got {obj['rate']!r}",
            ErrorCode.INVALID_AUDIO_FORMAT,
        )
    return fmt


def _beta_format(value: Any, param: str) -> WireFormat:
    if value not in FROM_BETA:
        raise _invalid(
            param, f"{value!r} is not offered; use one of {list(FROM_BETA)}", ErrorCode.INVALID_AUDIO_FORMAT
        )
    return FROM_BETA[value]


def _voice(value: Any, param: str) -> str:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]  # GA's custom voice reference
    return _string(value, param)


def _modalities(value: Any, param: str) -> None:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise _invalid(param, f"expected a list of 'audio' / 'text', got {value!r}")
    if "audio" not in value:
        raise RealtimeError(
            ErrorCode.UNSUPPORTED_FEATURE,
            f"kamevoice answers in speech: '{param}' must include 'audio'",
            param,
        )


def _tools(value: Any, param: str) -> None:
    if value not in (None, []):
        raise RealtimeError(ErrorCode.UNSUPPORTED_FEATURE, "kamevoice's front-end cannot call tools", param)


def _kamevoice(value: Any, param: str) -> bool:
    obj = _object(value, param)
    _known(obj, {"events"}, param)
    return _bool(obj, "events", param) if "events" in obj else False


def apply_update(config: RealtimeConfig, session: Any, beta: bool) -> RealtimeConfig:
    """`config` with a `session.update`'s `session` applied (whole, or a `RealtimeError`)."""
    obj = _object(session, "session")
    return _apply_beta(config, obj) if beta else _apply_ga(config, obj)


def _apply_common(config: RealtimeConfig, obj: dict, changes: dict) -> None:
    if "model" in obj:
        changes["model"] = _string(obj["model"], "session.model")
    if "instructions" in obj:
        changes["instructions"] = _string(obj["instructions"], "session.instructions")
    if "tools" in obj:
        _tools(obj["tools"], "session.tools")
    if "kamevoice" in obj:
        changes["kamevoice_events"] = _kamevoice(obj["kamevoice"], "session.kamevoice")


def _apply_ga(config: RealtimeConfig, obj: dict) -> RealtimeConfig:
    known = {"type", "model", "instructions", "output_modalities", "audio", "tools", "kamevoice"}
    _known(obj, known | set(GA_IGNORED) | READ_ONLY, "session")
    if obj.get("type", "realtime") != "realtime":
        raise RealtimeError(
            ErrorCode.UNSUPPORTED_FEATURE,
            f"only 'realtime' sessions are offered, not {obj['type']!r}",
            "session.type",
        )
    changes: dict[str, Any] = {}
    _apply_common(config, obj, changes)
    if "output_modalities" in obj:
        _modalities(obj["output_modalities"], "session.output_modalities")
    audio = _object(obj.get("audio", {}), "session.audio")
    _known(audio, {"input", "output"}, "session.audio")
    given_in = _object(audio.get("input", {}), "session.audio.input")
    _known(given_in, {"format", "transcription", "turn_detection", "noise_reduction"}, "session.audio.input")
    if "format" in given_in:
        changes["input_format"] = _ga_format(given_in["format"], "session.audio.input.format")
    if "transcription" in given_in:
        changes["transcription"] = _transcription(
            given_in["transcription"], "session.audio.input.transcription"
        )
    if "turn_detection" in given_in:
        changes["turn_detection"] = _turn_detection(
            given_in["turn_detection"], config.turn_detection, "session.audio.input.turn_detection"
        )
    given_out = _object(audio.get("output", {}), "session.audio.output")
    _known(given_out, {"format", "voice", "speed"}, "session.audio.output")
    if "format" in given_out:
        changes["output_format"] = _ga_format(given_out["format"], "session.audio.output.format")
    if "voice" in given_out:
        changes["voice"] = _voice(given_out["voice"], "session.audio.output.voice")
    return replace(config, **changes)


def _apply_beta(config: RealtimeConfig, obj: dict) -> RealtimeConfig:
    known = {
        "model", "instructions", "modalities", "voice", "input_audio_format", "output_audio_format",
        "input_audio_transcription", "turn_detection", "input_audio_noise_reduction", "tools", "kamevoice",
    }  # fmt: skip
    _known(obj, known | set(BETA_IGNORED) | READ_ONLY, "session")
    changes: dict[str, Any] = {}
    _apply_common(config, obj, changes)
    if "modalities" in obj:
        _modalities(obj["modalities"], "session.modalities")
    if "voice" in obj:
        changes["voice"] = _voice(obj["voice"], "session.voice")
    if "input_audio_format" in obj:
        changes["input_format"] = _beta_format(obj["input_audio_format"], "session.input_audio_format")
    if "output_audio_format" in obj:
        changes["output_format"] = _beta_format(obj["output_audio_format"], "session.output_audio_format")
    if "input_audio_transcription" in obj:
        changes["transcription"] = _transcription(
            obj["input_audio_transcription"], "session.input_audio_transcription"
        )
    if "turn_detection" in obj:
        changes["turn_detection"] = _turn_detection(
            obj["turn_detection"], config.turn_detection, "session.turn_detection"
        )
    return replace(config, **changes)


# -- rendering --------------------------------------------------------------------------------------


def _render_turn_detection(td: TurnDetection | None) -> dict[str, Any] | None:
    if td is None:
        return None
    common = {
        "type": td.type,
        "create_response": td.create_response,
        "interrupt_response": td.interrupt_response,
    }
    if td.type == "semantic_vad":
        return {**common, "eagerness": td.eagerness}
    return {
        **common,
        "threshold": td.threshold,
        "prefix_padding_ms": td.prefix_padding_ms,
        "silence_duration_ms": td.silence_duration_ms,
        "idle_timeout_ms": td.idle_timeout_ms,
    }


def _ga_format_object(fmt: WireFormat) -> dict[str, Any]:
    return {"type": fmt.value, "rate": fmt.rate} if fmt is WireFormat.PCM16 else {"type": fmt.value}


def session_object(config: RealtimeConfig, session_id: str, beta: bool) -> dict[str, Any]:
    """The `session` of `session.created` / `session.updated` in the dialect's shape."""
    transcription = {"model": config.transcription} if config.transcription else None
    extra = {"kamevoice": {"events": True}} if config.kamevoice_events else {}
    if beta:
        return {
            "id": session_id,
            "object": "realtime.session",
            "model": config.model,
            "modalities": ["audio", "text"],
            "instructions": config.instructions,
            "voice": config.voice,
            "input_audio_format": config.input_format.beta_name,
            "output_audio_format": config.output_format.beta_name,
            "input_audio_transcription": transcription,
            "turn_detection": _render_turn_detection(config.turn_detection),
            "input_audio_noise_reduction": None,
            "tools": [],
            **{key: BETA_IGNORED[key] for key in BETA_REPORTED},
            **extra,
        }
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": config.model,
        "output_modalities": ["audio"],
        "instructions": config.instructions,
        "audio": {
            "input": {
                "format": _ga_format_object(config.input_format),
                "transcription": transcription,
                "noise_reduction": None,
                "turn_detection": _render_turn_detection(config.turn_detection),
            },
            "output": {
                "format": _ga_format_object(config.output_format),
                "voice": config.voice,
                "speed": 1.0,
            },
        },
        "tools": [],
        **{key: GA_IGNORED[key] for key in GA_REPORTED},
        **extra,
    }
