"""Barge-in: when a caller starts talking over the model's speech, its queued speech must go.

A full-duplex model hears the caller and stops or yields by itself, but what it said
before it heard them is already on its way: in our outbox and in the telephone
network's playback buffer. A door that can take that back (Twilio's `clear`) needs
two facts, both here:

- `SpeechOnset`: the start of a caller's utterance, from the energy of their audio
  (an energy detector, not the STT: it answers within `onset_ms` of the first voiced
  audio, where a recogniser's first partial comes hundreds of ms later). It fires once
  per utterance and re-arms after `release_ms` of quiet, so one interruption gives
  one barge-in however long the caller talks.
- `is_speech(pcm)`: whether a frame of model audio carries speech, so that the door
  tracks whether speech (not silence) is still queued or unplayed.
"""

from __future__ import annotations

import numpy as np

# Caller audio louder than this (RMS, dB below full scale) counts as voiced. Telephone speech sits
# around -20 to -30 dBFS and a quiet line below -50: -38 keeps breathing and line hiss out.
CALLER_SPEECH_DBFS = -38.0
# Voiced audio needed before an onset counts: a click or a cough is shorter than a syllable (~100 ms).
ONSET_MS = 100.0
# Quiet that ends an utterance (and re-arms the detector): longer than the pauses between words.
RELEASE_MS = 400.0
# Model audio louder than this counts as speech: Moshi-style models emit near-silence (< -50 dBFS)
# while listening, and speech well above -30 dBFS.
MODEL_SPEECH_DBFS = -40.0
# Floor of the level measure, so silence reads as a number rather than minus infinity.
SILENCE_DBFS = -120.0


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level of float samples in dB below full scale (`SILENCE_DBFS` for silence or nothing)."""
    if not len(pcm):
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    return max(SILENCE_DBFS, 20.0 * np.log10(rms)) if rms > 0 else SILENCE_DBFS


def is_speech(pcm: np.ndarray, threshold_dbfs: float = MODEL_SPEECH_DBFS) -> bool:
    """Whether a frame of model audio is loud enough to be speech."""
    return level_dbfs(pcm) > threshold_dbfs


class SpeechOnset:
    """Finds the onsets of a caller's utterances in their audio, chunk by chunk (see module doc)."""

    def __init__(
        self,
        sample_rate: int,
        threshold_dbfs: float = CALLER_SPEECH_DBFS,
        onset_ms: float = ONSET_MS,
        release_ms: float = RELEASE_MS,
    ):
        self.sample_rate = sample_rate
        self.threshold_dbfs = threshold_dbfs
        self.onset_samples = int(onset_ms * sample_rate / 1000)
        self.release_samples = int(release_ms * sample_rate / 1000)
        self.in_utterance = False  # an onset fired and the caller has not been quiet since
        self.onsets = 0
        self._voiced = 0  # voiced samples in a row (before an onset)
        self._quiet = 0  # quiet samples in a row (inside an utterance)

    def feed(self, pcm: np.ndarray) -> bool:
        """The next chunk of caller audio (a telephone chunk: 20 ms); True once at each onset."""
        voiced = level_dbfs(pcm) > self.threshold_dbfs
        if self.in_utterance:
            self._quiet = 0 if voiced else self._quiet + len(pcm)
            if self._quiet >= self.release_samples:
                self.in_utterance = False
                self._voiced = 0
            return False
        self._voiced = self._voiced + len(pcm) if voiced else 0
        if self._voiced >= self.onset_samples:
            self.in_utterance = True
            self._quiet = 0
            self.onsets += 1
            return True
        return False
