"""The cascade baseline (Unmute-style), built from kamevoice's own parts: STT -> LLM -> TTS.

The user's audio is streamed into the STT at speaking pace. When the STT
ends an utterance (its endpointer: `stt.endpoint.end_silence_s` of silence),
the turn is over: the LLM is asked with the conversation so far, and the TTS
starts speaking as soon as the first chunk of the reply is there (the first
sentence, or `FIRST_CHUNK_WORDS` words, or the whole reply if shorter).
Latency = first TTS audio - end of the user's speech (true word timings),
on the same clock as the other systems: the virtual clock by default, where
the LLM's delays are those the provider simulates, the endpointer's silence
counts, and the TTS's synthesis time is measured on the wall clock and added;
`--realtime` runs it all on the wall clock.

If the STT cuts one spoken turn into several utterances, each one starts a
new reply that replaces the previous one (the user kept talking); the reply of
the turn is the last one, and its latency is that reply's first audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kamevoice.backend.llm.base import ChatMessage
from kamevoice.eval.mtbench import SpokenSession
from kamevoice.runtime.clock import FRAME_SECONDS
from kamevoice.runtime.messages import EventKind

# Unmute's TTS streams as text arrives; ours synthesises whole chunks, so it
# starts on the first sentence or on this many words, whichever comes first.
FIRST_CHUNK_WORDS = 12
# An utterance belongs to the last turn that began at least this long before the utterance ended.
TURN_TOLERANCE_S = 0.3
# How long to wait for the last reply after the audio is over (seconds of loop time).
DRAIN_TIMEOUT_S = 60.0
CASCADE_SYSTEM_PROMPT = (
    "You are a helpful voice assistant in a spoken conversation. Answer the user's last question "
    "directly and correctly in a few short sentences. Write only words that can be spoken: no lists, "
    "no markdown, no symbols."
)
_SENTENCE_END = re.compile(r"[.!?](\s|$)")


@dataclass
class CascadeReply:
    """One reply of the cascade."""

    turn: int
    user_text: str
    text: str = ""
    first_audio_t: float | None = None  # clock time the first TTS audio was ready
    tts_s: float = 0.0  # wall time the first chunk took to synthesise


def first_chunk(text: str, final: bool) -> str | None:
    """The text the TTS can start with, or None while it must wait for more."""
    match = _SENTENCE_END.search(text)
    if match:
        return text[: match.end()].strip()
    tokens = text.split()
    if len(tokens) > FIRST_CHUNK_WORDS:
        return " ".join(tokens[:FIRST_CHUNK_WORDS])
    return text.strip() if final and text.strip() else None


def run_cascade(spoken: SpokenSession, settings, tts, events_path: Path | None, realtime: bool = False):
    """Run the cascade over a spoken session; returns its `CascadeReply` per turn (None: no reply)."""
    from kamevoice.runtime.virtual_loop import run_virtual

    def main():
        return _cascade(spoken, settings, tts, events_path, realtime)

    return asyncio.run(main()) if realtime else run_virtual(main)


async def _cascade(spoken, settings, tts, events_path, realtime):
    from kamevoice.backend.llm.factory import make_llm
    from kamevoice.backend.stt import make_stt
    from kamevoice.runtime.clock import LoopClock
    from kamevoice.runtime.events import EventLog

    loop = asyncio.get_running_loop()
    clock = LoopClock()
    events = EventLog(clock, events_path)
    stt = make_stt(settings.stt, events=events, clock=clock)
    llm = make_llm(settings.llm)
    heard: dict[int, list[str]] = {}
    replies: dict[int, CascadeReply] = {}
    current: asyncio.Task | None = None

    def turn_of(t: float) -> int:
        idx = 0
        for i, turn in enumerate(spoken.turns):
            if t >= turn.start + TURN_TOLERANCE_S:
                idx = i
        return idx

    async def speak(text: str) -> float:
        started = time.perf_counter()
        tts.synthesize(text)
        took = time.perf_counter() - started
        if not realtime:
            await asyncio.sleep(took)  # the virtual clock does not see CPU time: add it
        return took

    async def respond(reply: CascadeReply) -> None:
        history: list[ChatMessage] = []
        for j in range(reply.turn):
            history.append(ChatMessage("user", " ".join(heard.get(j, [])) or "..."))
            history.append(ChatMessage("assistant", replies[j].text if j in replies else "..."))
        messages = [*history, ChatMessage("user", reply.user_text)]
        events.emit(EventKind.CASCADE_REQUEST, turn=reply.turn, text=reply.user_text)
        async for delta in llm.stream(messages, system=CASCADE_SYSTEM_PROMPT):
            reply.text += delta
            chunk = first_chunk(reply.text, final=False) if reply.first_audio_t is None else None
            if chunk:
                reply.tts_s = await speak(chunk)
                reply.first_audio_t = clock.now()
                events.emit(
                    EventKind.CASCADE_FIRST_AUDIO, turn=reply.turn, chunk=chunk, tts_s=round(reply.tts_s, 4)
                )
        if reply.first_audio_t is None and (chunk := first_chunk(reply.text, final=True)):
            reply.tts_s = await speak(chunk)
            reply.first_audio_t = clock.now()
            events.emit(
                EventKind.CASCADE_FIRST_AUDIO, turn=reply.turn, chunk=chunk, tts_s=round(reply.tts_s, 4)
            )
        events.emit(EventKind.CASCADE_REPLY, turn=reply.turn, text=reply.text)

    async def feed() -> None:
        rate = spoken.sample_rate
        step = round(FRAME_SECONDS * rate)
        t0 = loop.time()
        try:
            for k, i in enumerate(range(0, len(spoken.audio), step)):
                await asyncio.sleep(max(0.0, t0 + k * FRAME_SECONDS - loop.time()))
                await stt.push(spoken.audio[i : i + step], rate)
        finally:
            await stt.finish()

    feeder = asyncio.create_task(feed())
    try:
        async for hyp in stt:
            if not (hyp.is_final and hyp.words and hyp.text.strip()):
                continue
            # Word times of some engines are relative to the utterance: place it by where the
            # recogniser was in the stream when it ended the utterance.
            idx = turn_of(hyp.audio_end - settings.stt.endpoint.end_silence_s)
            heard.setdefault(idx, []).append(hyp.text.strip())
            if current is not None and not current.done():
                current.cancel()  # the user kept talking: start over with everything heard
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await current
            reply = CascadeReply(idx, " ".join(heard[idx]))
            replies[idx] = reply
            current = asyncio.create_task(respond(reply))
        await feeder
        if current is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(current, DRAIN_TIMEOUT_S)
    finally:
        feeder.cancel()
        await stt.aclose()
        await llm.aclose()
        events.close()
    return [replies.get(i) for i in range(len(spoken.turns))], events.events


def cascade_record(spec, spoken: SpokenSession, settings, tts, options, out_dir: Path) -> dict:
    """Run the cascade on one session and build its record (views `text` and `stt`)."""
    from kamevoice.audio import write_stereo
    from kamevoice.eval.transcribe import transcribe

    started = time.perf_counter()
    replies, _ = run_cascade(spoken, settings, tts, out_dir / "events.jsonl", options.realtime)
    wall_s = time.perf_counter() - started
    rate = spoken.sample_rate
    channel = np.zeros_like(spoken.audio)
    stt_texts, per_turn = [], []
    for turn, reply in zip(spoken.turns, replies, strict=True):
        audio = None
        if reply is not None and reply.text.strip():
            syn = tts.synthesize(reply.text)
            audio = np.asarray(syn.audio, dtype=np.float32)
            if reply.first_audio_t is not None and syn.sample_rate == rate:
                # The user's next turn interrupts the reply: keep what fits in the window.
                begin = round(reply.first_audio_t * rate)
                room = max(0, min(len(audio), round(turn.window_end * rate), len(channel)) - begin)
                channel[begin : begin + room] = audio[:room]
        if options.transcribe:
            stt_texts.append(transcribe(settings.stt, audio, rate) if audio is not None else "")
        first = None if reply is None else reply.first_audio_t
        per_turn.append(
            {
                "latency_s": None if first is None else round(first - turn.end, 4),
                "onset_s": first,
                "tts_s": None if reply is None else round(reply.tts_s, 4),
                "heard": "" if reply is None else reply.user_text,
            }
        )
    if options.save_audio:
        write_stereo(out_dir / "session.wav", spoken.audio, channel, rate)
    replies_by_view = {"text": [r.text.strip() if r else "" for r in replies]}
    if options.transcribe:
        replies_by_view["stt"] = stt_texts
    return {
        "system": spec.name,
        "turns": [asdict(t) for t in spoken.turns],
        "replies": replies_by_view,
        "final_oracles": [],
        "per_turn": per_turn,
        "wall_s": round(wall_s, 3),
        "audio_s": round(spoken.duration_s, 3),
    }
