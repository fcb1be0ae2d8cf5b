"""The systems under evaluation and how one spoken session is run through each.

- `kame`: the front-end with the back-end (STT + LLM oracles), file mode.
- `frontend`: the front-end alone (no STT, no LLM: the oracle stream stays PAD).
- `cascade`: STT -> LLM after the end of the turn -> TTS (`kamevoice.eval.cascade`).
- `backend-text`: the back-end's final oracle of each turn in the KAME session,
  as text (no speech, no latency).
- `kame-delay-<D>s`: KAME forced to stay silent until D s after each turn
  (`kamevoice.frontend.policies.silence`), for the latency-quality curve.

Each run returns a JSON-able *session record*: the turns, the reply of each
turn in every *view* of the system (`monologue`: the front-end's inner
monologue; `stt`: an STT transcript of its audio; `text`: a text answer),
per-turn latencies and the back-end's final oracles.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kamevoice.errors import ConfigError
from kamevoice.eval.metrics import is_content_word, words
from kamevoice.eval.mtbench import SpokenSession
from kamevoice.runtime.messages import EventKind

SYSTEM_KINDS = ("kame", "frontend", "cascade", "backend-text")
# The forced delays of the paper's latency-quality curve (seconds), for `--delays paper`.
PAPER_DELAYS_S: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0)
# SentencePiece's word-start marker.
_WORD_START = "\u2581"


@dataclass(frozen=True)
class SystemSpec:
    """One system: its name (directory, table row), kind, and forced delay if any."""

    name: str
    kind: str  # "frontend" | "cascade" | "backend-text"
    oracle: bool = True
    delay_s: float | None = None

    @property
    def views(self) -> tuple[str, ...]:
        """Which reply texts the system has (each is scored on its own)."""
        if self.kind == "frontend":
            return ("monologue", "stt")
        if self.kind == "cascade":
            return ("text", "stt")
        return ("text",)

    @property
    def has_latency(self) -> bool:
        return self.kind != "backend-text"


def parse_systems(systems: str = "kame,frontend,cascade,backend-text", delays: str = "") -> list[SystemSpec]:
    """`--systems` and `--delays` ('paper' = 0,0.5,1,2,3) into specs, in a stable order."""
    specs: list[SystemSpec] = []
    for name in (s.strip() for s in systems.split(",") if s.strip()):
        if name == "kame":
            specs.append(SystemSpec("kame", "frontend"))
        elif name == "frontend":
            specs.append(SystemSpec("frontend", "frontend", oracle=False))
        elif name == "cascade":
            specs.append(SystemSpec("cascade", "cascade"))
        elif name == "backend-text":
            specs.append(SystemSpec("backend-text", "backend-text"))
        else:
            raise ConfigError(f"unknown system {name!r}; choose from {', '.join(SYSTEM_KINDS)}")
    text = delays.strip()
    values = PAPER_DELAYS_S if text == "paper" else tuple(float(d) for d in text.split(",") if d.strip())
    for d in values:
        if d < 0:
            raise ConfigError(f"--delays: a forced delay cannot be negative ({d})")
        specs.append(SystemSpec(f"kame-delay-{d:g}s", "frontend", delay_s=d))
    if not specs:
        raise ConfigError("no system to evaluate: give --systems and/or --delays")
    return specs


@dataclass(frozen=True)
class RunOptions:
    """How sessions run (shared by every system)."""

    seed: int = 42
    realtime: bool = False
    transcribe: bool = True  # the 'stt' view: run the STT over the system's audio
    save_audio: bool = True  # stereo WAV per session (user left, system right)


def run_frontend_session(spec, frontend, spoken: SpokenSession, settings, sampling, options, out_dir: Path):
    """Play a spoken session through file mode with `spec`'s front-end set-up; returns the record."""
    from kamevoice.audio import write_stereo
    from kamevoice.backend.factory import backend_from_settings
    from kamevoice.frontend.policies.silence import SilenceForcer, forced_windows
    from kamevoice.runtime.filemode import run_file

    forcer = None
    if spec.delay_s is not None:
        windows = forced_windows(spoken.turns, spec.delay_s)
        forcer = SilenceForcer.for_frontend(windows, frontend.model, frontend.codec)
    started = time.perf_counter()
    result = run_file(
        frontend,
        spoken.audio,
        spoken.sample_rate,
        backend=backend_from_settings(settings) if spec.oracle else None,
        events_path=out_dir / "events.jsonl",
        tail_s=0.0,  # the layout already ends with a reply window
        sampling=sampling,
        seed=options.seed,
        realtime=options.realtime,
        policies=(forcer,) if forcer is not None else (),
    )
    wall_s = time.perf_counter() - started
    record = frontend_record(spec, spoken, result.events)
    if options.transcribe:
        from kamevoice.eval.transcribe import transcribe

        rate = result.sample_rate
        record["replies"]["stt"] = [
            transcribe(settings.stt, result.model[round(t.start * rate) : round(t.window_end * rate)], rate)
            for t in spoken.turns
        ]
    else:
        record["replies"].pop("stt")
    if options.save_audio:
        write_stereo(out_dir / "session.wav", result.user, result.model, result.sample_rate)
    record["wall_s"] = round(wall_s, 3)
    record["audio_s"] = round(spoken.duration_s, 3)
    if forcer is not None:
        record["forced"] = {"delay_s": spec.delay_s, "text_frames": forcer.forced_text}
    return record


def frontend_record(spec: SystemSpec, spoken: SpokenSession, events: list[dict]) -> dict:
    """Replies, latencies and final oracles of a file-mode session, with the true turn spans.

    The STT's own `user_turn` events are replaced by the synthesiser's turns, so
    `kamevoice.runtime.latency` measures from the true end of speech and each turn's
    window runs to the next turn's first word.
    """
    from kamevoice.runtime.latency import turn_latencies

    truth = [
        {"t": t.end, "kind": EventKind.USER_TURN, "text": t.text, "start": t.start, "end": t.end}
        for t in spoken.turns
    ]
    logged = [e for e in events if e["kind"] != EventKind.USER_TURN] + truth
    latencies = turn_latencies(logged)
    finals = [final_oracle(events, t.start, t.window_end) for t in spoken.turns]
    per_turn = []
    for turn, lat, final in zip(spoken.turns, latencies, finals, strict=True):
        word_t = first_content_word_time(events, final, turn.window_end)
        per_turn.append(
            {
                "latency_s": lat.latency,
                "onset_s": lat.onset,
                "first_oracle_piece_s": lat.first_oracle_piece,
                "first_content_word_s": None if word_t is None else round(word_t - turn.end, 4),
            }
        )
    return {
        "system": spec.name,
        "turns": [asdict(t) for t in spoken.turns],
        "replies": {"monologue": [lat.reply_text for lat in latencies], "stt": []},
        "final_oracles": [f["text"] if f else "" for f in finals],
        "per_turn": per_turn,
    }


def final_oracle(events: list[dict], start: float, stop: float) -> dict | None:
    """The back-end's last oracle that began in [start, stop): the last uncancelled one if any."""
    ends = [e for e in events if e["kind"] == EventKind.ORACLE_END and start <= e["t"] < stop]
    begun = {e["gen"]: e for e in events if e["kind"] == EventKind.ORACLE_BEGIN and start <= e["t"] < stop}
    done = [e for e in ends if not e.get("cancelled")] or ends
    for end in reversed(done):
        if end["gen"] in begun:
            return {"gen": end["gen"], "text": end["text"], "frame": begun[end["gen"]]["frame"]}
    return None


def first_content_word_time(events: list[dict], final: dict | None, stop: float) -> float | None:
    """Frame time at which the final oracle's first content word had fully entered the model.

    The final oracle's pieces are the `oracle_piece` events after its `oracle_begin`
    frame and before the next oracle began; a word is complete when the next word
    starts (or the oracle ends).
    """
    if final is None:
        return None
    later = [
        e["frame"] for e in events if e["kind"] == EventKind.ORACLE_BEGIN and e["frame"] > final["frame"]
    ]
    until = min(later) if later else None
    pieces = [
        e
        for e in events
        if e["kind"] == EventKind.ORACLE_PIECE
        and not e.get("start")
        and e["frame"] > final["frame"]
        and (until is None or e["frame"] <= until)
        and e["frame_t"] < stop
    ]
    word, last_t = "", None
    for e in pieces:
        piece = e.get("piece", "")
        if piece.startswith(_WORD_START) and word:
            if _has_content(word):
                return last_t
            word = ""
        word += piece.replace(_WORD_START, "")
        last_t = e["frame_t"]
    return last_t if _has_content(word) else None


def _has_content(word: str) -> bool:
    return any(is_content_word(w) for w in words(word))


def backend_text_record(spec: SystemSpec, kame_record: dict) -> dict:
    """The back-end's final oracles of a KAME session, as a text-only system."""
    return {
        "system": spec.name,
        "turns": kame_record["turns"],
        "replies": {"text": list(kame_record["final_oracles"])},
        "final_oracles": list(kame_record["final_oracles"]),
        "per_turn": [{"latency_s": None} for _ in kame_record["turns"]],
        "source": "kame",
    }
