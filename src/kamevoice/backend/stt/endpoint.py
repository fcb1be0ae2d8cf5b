"""Cutting utterances out of a 16 kHz stream with a voice-activity detector.

The local engines decode one utterance at a time and publish a final when it
ends; this module decides where utterances start and end. It works on 30 ms
frames, keeps `pre_roll_s` of audio from before the detected start (speech
onsets are quiet), and ends an utterance after `end_silence_s` of non-speech.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from kamevoice.audio import float_to_int16
from kamevoice.backend.stt.settings import EndpointSettings

# WebRTC's VAD takes 10, 20 or 30 ms frames; 30 ms is its most reliable size.
FRAME_S = 0.03
# Energy VAD: the level of digital silence, so log10 never sees zero.
SILENCE_FLOOR = 1e-10


@dataclass(frozen=True)
class SpeechStart:
    """An utterance begins at stream time `t` (pre-roll included)."""

    t: float


@dataclass(frozen=True)
class SpeechAudio:
    """Audio of the current utterance, starting at stream time `t`."""

    t: float
    audio: np.ndarray
    rate: int = 16_000

    @property
    def end(self) -> float:
        """Stream time just after the last sample."""
        return self.t + len(self.audio) / self.rate


@dataclass(frozen=True)
class SpeechEnd:
    """The current utterance ended at stream time `t`."""

    t: float


SpeechEvent = SpeechStart | SpeechAudio | SpeechEnd


class Endpointer:
    """Turn a stream of 16 kHz float32 audio into start / audio / end events."""

    def __init__(self, settings: EndpointSettings | None = None, sample_rate: int = 16_000):
        self.settings = settings or EndpointSettings()
        self.rate = sample_rate
        self.frame = round(FRAME_S * sample_rate)
        self._start_frames = max(1, round(self.settings.start_s / FRAME_S))
        self._end_frames = max(1, round(self.settings.end_silence_s / FRAME_S))
        self._max_frames = round(self.settings.max_utterance_s / FRAME_S)
        self._vad = None
        if self.settings.vad == "webrtc":
            from pocketsphinx import Vad

            self._vad = Vad(self.settings.vad_mode, sample_rate, FRAME_S)
            self.frame = self._vad.frame_bytes // 2
        self._pending = np.zeros(0, dtype=np.float32)
        self._n = 0  # frames seen
        # Frames before the start: pre-roll plus the run of speech frames not yet confirmed.
        pre = round(self.settings.pre_roll_s / FRAME_S) + self._start_frames
        self._history: deque[np.ndarray] = deque(maxlen=pre)
        self._speech_run = 0
        self._silence_run = 0
        self._utt_frames = 0
        self.in_speech = False

    def is_speech(self, frame: np.ndarray) -> bool:
        """Classify one frame."""
        if self._vad is not None:
            pcm = float_to_int16(frame)
            return bool(self._vad.is_speech(pcm.tobytes()))
        level = 10 * np.log10(float(np.mean(frame.astype(np.float64) ** 2)) + SILENCE_FLOOR)
        return level > self.settings.energy_threshold_db

    def feed(self, audio: np.ndarray) -> list[SpeechEvent]:
        """Process the next samples; returns the events they complete, in order."""
        self._pending = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        events: list[SpeechEvent] = []
        n_frames = len(self._pending) // self.frame
        for k in range(n_frames):
            self._step(self._pending[k * self.frame : (k + 1) * self.frame], events)
        self._pending = self._pending[n_frames * self.frame :]
        return _merge_audio(events)

    def flush(self) -> list[SpeechEvent]:
        """End of stream: pass on the partial last frame and close an open utterance."""
        events: list[SpeechEvent] = []
        if self.in_speech:
            if len(self._pending):
                events.append(SpeechAudio(self._n * self.frame / self.rate, self._pending, self.rate))
            end = (self._n * self.frame + len(self._pending)) / self.rate
            events.append(SpeechEnd(end))
            self.in_speech = False
        self._pending = np.zeros(0, dtype=np.float32)
        return _merge_audio(events)

    def _step(self, frame: np.ndarray, events: list[SpeechEvent]) -> None:
        t = self._n * self.frame / self.rate
        self._n += 1
        speech = self.is_speech(frame)
        if not self.in_speech:
            self._history.append(frame)
            self._speech_run = self._speech_run + 1 if speech else 0
            if self._speech_run >= self._start_frames:
                self.in_speech = True
                start = (self._n - len(self._history)) * self.frame / self.rate
                events.append(SpeechStart(start))
                events.append(SpeechAudio(start, np.concatenate(list(self._history)), self.rate))
                self._history.clear()
                self._silence_run = 0
                self._utt_frames = 0
            return
        events.append(SpeechAudio(t, frame, self.rate))
        self._utt_frames += 1
        self._silence_run = 0 if speech else self._silence_run + 1
        if self._silence_run >= self._end_frames or self._utt_frames >= self._max_frames:
            events.append(SpeechEnd(self._n * self.frame / self.rate))
            self.in_speech = False
            self._speech_run = 0


def _merge_audio(events: list[SpeechEvent]) -> list[SpeechEvent]:
    """Join consecutive audio events, so engines get a few large chunks instead of many frames."""
    merged: list[SpeechEvent] = []
    run: list[SpeechAudio] = []
    for ev in [*events, None]:
        if isinstance(ev, SpeechAudio):
            run.append(ev)
            continue
        if run:
            merged.append(SpeechAudio(run[0].t, np.concatenate([r.audio for r in run]), run[0].rate))
            run = []
        if ev is not None:
            merged.append(ev)
    return merged
