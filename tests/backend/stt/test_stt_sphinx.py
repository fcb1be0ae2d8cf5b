"""PocketSphinx on speech synthesised by the tests: words, timing, tuning, resampling."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kamevoice.backend.stt import Hypothesis
from kamevoice.backend.stt.files import transcribe_file
from kamevoice.backend.stt.settings import SphinxSettings
from kamevoice.backend.stt.sphinx import SphinxSTT, corpus_sentences
from kamevoice.errors import ConfigError
from kamevoice.eval.stt import DOMAIN_TEXT, PAD_S, Utterance, normalise, wer
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind

# Bounds a little above what was measured on the 4 test sentences (see the package README):
# general LM: flite 0.08 (0.23 over all 8 sentences), espeak-ng 0.72; task LM: flite 0.0, espeak-ng 0.28.
GENERAL_FLITE_MAX_WER = 0.25
TASK_FLITE_MAX_WER = 0.05
TASK_ESPEAK_MAX_WER = 0.4


async def run(
    path: Path, settings: SphinxSettings | None = None, log: EventLog | None = None
) -> list[Hypothesis]:
    return await transcribe_file(SphinxSTT(settings, events=log), path)


def final_text(hyps: list[Hypothesis]) -> str:
    return " ".join(h.text for h in hyps if h.is_final)


async def corpus_wer(utts: list[Utterance], settings: SphinxSettings | None = None) -> float:
    errors = words = 0.0
    for u in utts:
        n = len(normalise(u.text))
        errors += wer(u.text, final_text(await run(u.path, settings))) * n
        words += n
    return errors / words


async def test_flite_speech_is_recognised_with_times(flite_speech: list[Utterance]) -> None:
    u = flite_speech[0]  # "what is the capital of france"
    log = EventLog()
    hyps = await run(u.path, log=log)
    finals = [h for h in hyps if h.is_final]
    assert len(finals) == 1 and normalise(finals[0].text) == normalise(u.text)
    words = finals[0].words
    assert [w.word for w in words] == normalise(u.text)
    # Times: ordered, inside the file, and the first word after the 1 s of leading silence.
    assert all(w.start < w.end for w in words)
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(words))
    assert PAD_S - 0.05 <= words[0].start <= PAD_S + 0.4
    assert words[-1].end <= u.duration - PAD_S + 0.2
    # Partials came first and before the speech was over.
    partials = [h for h in hyps if not h.is_final]
    assert partials and hyps[-1].is_final
    assert partials[0].audio_end < u.duration - PAD_S
    assert all(p.emitted_at <= finals[0].emitted_at for p in partials)
    # The event log has the lag and word counts.
    ev = log.of_kind(EventKind.STT_PARTIAL)
    assert len(ev) == len(partials) and all(e["lag_s"] >= 0 and e["words"] >= 1 for e in ev)
    assert log.of_kind(EventKind.STT_FINAL)[0]["words"] == 6


async def test_general_model_wer_on_flite(flite_speech: list[Utterance]) -> None:
    assert await corpus_wer(flite_speech) <= GENERAL_FLITE_MAX_WER


async def test_task_language_model_beats_the_general_one(espeak_speech: list[Utterance]) -> None:
    general = await corpus_wer(espeak_speech)
    task = await corpus_wer(espeak_speech, SphinxSettings(corpus_text=DOMAIN_TEXT))
    assert task <= TASK_ESPEAK_MAX_WER
    assert task < general - 0.2


async def test_task_model_from_a_corpus_file(
    flite_speech: list[Utterance], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = tmp_path / "kb.txt"
    corpus.write_text(DOMAIN_TEXT.replace("\n", ". ").upper() + ". Ask the zorblax.", encoding="utf-8")
    assert await corpus_wer(flite_speech, SphinxSettings(corpus=corpus)) <= TASK_FLITE_MAX_WER
    assert "zorblax" in caplog.text  # a corpus word without a pronunciation is reported


def test_corpus_normalisation() -> None:
    assert corpus_sentences("Hello, World! It's 5 o'clock.\nNew-line") == [
        "hello world",
        "it's 5 o'clock",
        "new line",
    ]


async def test_keyphrase_spotting(flite_speech: list[Utterance]) -> None:
    hyps = await run(flite_speech[0].path, SphinxSettings(keyphrases=["capital of france", "dragon"]))
    text = final_text(hyps)
    assert "capital of france" in text and "dragon" not in text


async def test_two_utterances_give_two_finals_at_their_times(
    two_utterances: Path, flite_speech: list[Utterance]
) -> None:
    hyps = await run(two_utterances)
    finals = [h for h in hyps if h.is_final]
    assert len(finals) == 2
    assert ("capital" in finals[0].text and "moon" in finals[1].text) or "earth" in finals[1].text
    second_start = flite_speech[0].duration + PAD_S
    assert second_start - 0.05 <= finals[1].words[0].start <= second_start + 0.4
    # Every partial of the second utterance comes after the first final.
    i = hyps.index(finals[0])
    assert all("capital" not in h.text for h in hyps[i + 1 :])


def fft_resample(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT, independent of the package's polyphase converter."""
    n = round(len(x) * new_rate / rate)
    spectrum = np.fft.rfft(x)
    out = np.zeros(n // 2 + 1, dtype=complex)
    k = min(len(spectrum), len(out))
    out[:k] = spectrum[:k]
    return (np.fft.irfft(out, n) * (n / len(x))).astype(np.float32)


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000])
async def test_other_sample_rates(flite_speech: list[Utterance], tmp_path: Path, rate: int) -> None:
    u = flite_speech[0]
    audio, src = sf.read(str(u.path), dtype="float32")
    path = tmp_path / f"r{rate}.wav"
    sf.write(str(path), fft_resample(audio, src, rate), rate, subtype="PCM_16")
    # The general model mishears telephone-band audio (nothing above 4 kHz: measured 'but it had
    # happened on hand', also after an independent FFT upsampling); the task model does not.
    settings = SphinxSettings(corpus_text=DOMAIN_TEXT) if rate == 8_000 else None
    hyps = await run(path, settings)
    text = final_text(hyps)
    assert wer(u.text, text) == 0.0
    assert PAD_S - 0.05 <= next(h for h in hyps if h.is_final).words[0].start <= PAD_S + 0.4


async def test_int16_stereo_chunks_of_any_size(flite_speech: list[Utterance]) -> None:
    audio, rate = sf.read(str(flite_speech[0].path), dtype="int16")
    stereo = np.stack([audio, audio], axis=1)
    stt = SphinxSTT()
    rng = np.random.default_rng(1)
    i = 0
    while i < len(stereo):
        n = int(rng.integers(1, 4000))
        await stt.push(stereo[i : i + n], rate)
        i += n
    await stt.finish()
    assert normalise(final_text([h async for h in stt])) == normalise(flite_speech[0].text)


def test_missing_model_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        SphinxSTT(SphinxSettings(lm=tmp_path / "nope.lm"))


async def test_empty_corpus_is_a_config_error(flite_speech: list[Utterance]) -> None:
    stt = SphinxSTT(SphinxSettings(corpus_text="... !!!"))
    with pytest.raises(ConfigError, match="no words"):
        await stt.push(np.zeros(16_000, np.float32) + 0.0, 16_000)
        await stt.push(sf.read(str(flite_speech[0].path), dtype="float32")[0], 16_000)
