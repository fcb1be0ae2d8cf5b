"""Word timings for engines that report none: PocketSphinx forced alignment of the text to its audio.

Shared by every such engine (flite, piper, hosted APIs): the audio is brought
to the acoustic model's 16 kHz, aligned to the text's whitespace tokens, and
the spans are clipped to the audio. Words missing from PocketSphinx's
dictionary cannot be aligned: such a text raises `InputError` naming the word
(the synth stage reports and skips the dialogue).
"""

from __future__ import annotations

import re
import threading

import numpy as np

from kamevoice.audio import pcm16_bytes, resample
from kamevoice.errors import ConfigError, InputError
from kamevoice.tts import WordSpan
from kamevoice.tts.tokens import tokenize

# PocketSphinx works on 10 ms frames.
ALIGN_FRAME_S = 0.01
# The rate of PocketSphinx's US English acoustic model: other rates are resampled to it, so the
# features match those it was trained on whatever the engine's rate (8 kHz audio would not even fit
# the model's filter bank).
ALIGN_RATE = 16_000
# Characters PocketSphinx's dictionary never contains (it is lower case letters and apostrophes).
_NOT_IN_DICT = re.compile(r"[^a-z']")
# Decoder settings of a second try, made only when the first finds no path through the whole text.
# Without the lattice best-path pass and without filler words (silence, noise) between words, the
# search reaches the end of the text far more often on speech unlike the model's training data:
# espeak-ng's voice at 24 kHz aligned in 247 of 248 turns of the shared sample instead of 141, with
# word starts as close to espeak-ng's own (mean error 16 ms). Pauses then partly go to the
# neighbouring words (silent share inside words 0.10 instead of 0.08), so it is not the first try.
FALLBACK_DECODER = {"bestpath": False, "fsgusefiller": False}


class PocketSphinxAligner:
    """Forced alignment of known text to speech at one rate; one decoder, reused, one call at a time."""

    def __init__(self, sample_rate: int = ALIGN_RATE, *, engine: str = "this engine"):
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise ConfigError(
                f"the {engine} engine needs `pocketsphinx` for word timings (pip install pocketsphinx)"
            ) from exc
        self.sample_rate = sample_rate
        self._decoder = Decoder(samprate=sample_rate, loglevel="FATAL")
        self._fallback = None  # built on the first failure
        self._lock = threading.Lock()

    def align(self, audio: np.ndarray, tokens: list[str]) -> list[tuple[float, float]]:
        """(start, end) in seconds for each token, in order."""
        words = [_NOT_IN_DICT.sub("", t.lower()) for t in tokens]
        for token, word in zip(tokens, words, strict=True):
            if not word or self._decoder.lookup_word(word) is None:
                raise InputError(f"cannot align {token!r}: not in PocketSphinx's dictionary")
        pcm = pcm16_bytes(audio)
        with self._lock:
            segments = self._segments(self._decoder, pcm, words)
            if isinstance(segments, str):
                if self._fallback is None:
                    from pocketsphinx import Decoder

                    self._fallback = Decoder(samprate=self.sample_rate, loglevel="FATAL", **FALLBACK_DECODER)
                retry = self._segments(self._fallback, pcm, words)
                if isinstance(retry, str):
                    raise InputError(f"forced alignment failed: {segments}")
                segments = retry
        return [(start * ALIGN_FRAME_S, (end + 1) * ALIGN_FRAME_S) for start, end in segments]

    @staticmethod
    def _segments(decoder, pcm: bytes, words: list[str]) -> list[tuple[int, int]] | str:
        """Each word's (first, last) frame, or what went wrong."""
        decoder.set_align_text(" ".join(words))
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        if decoder.hyp() is None:
            return "no path through the text"
        segments = [(s.start_frame, s.end_frame) for s in decoder.seg() if not s.word.startswith(("<", "["))]
        if len(segments) != len(words):
            return f"found {len(segments)} of {len(words)} words"
        return segments


class WordTimer:
    """Times the whitespace tokens of a text in speech made from it (the aligner is built on first use)."""

    def __init__(self, engine: str):
        self.engine = engine
        self._aligner: PocketSphinxAligner | None = None

    def words(self, audio: np.ndarray, sample_rate: int, text: str) -> list[WordSpan]:
        """`(token, start_s, end_s)` for every token of `text`, inside the audio's duration."""
        tokens = [t.text for t in tokenize(text)]
        if not tokens:
            return []
        if self._aligner is None:
            self._aligner = PocketSphinxAligner(ALIGN_RATE, engine=self.engine)
        spans = self._aligner.align(resample(audio, sample_rate, ALIGN_RATE), tokens)
        duration = len(audio) / sample_rate
        return [(tok, min(s, duration), min(e, duration)) for tok, (s, e) in zip(tokens, spans, strict=True)]
