"""The STT interface without an engine: input checks, resampling, endpointing, files, settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kamevoice.audio import StreamResampler, resample
from kamevoice.backend.stt import ENGINE_RATE, Hypothesis, STTSettings, STTStream, make_stt, whisper_available
from kamevoice.backend.stt.base import to_mono_float
from kamevoice.backend.stt.endpoint import Endpointer, SpeechAudio, SpeechEnd, SpeechStart
from kamevoice.backend.stt.files import read_audio, stream_file
from kamevoice.backend.stt.settings import DeepgramSettings, EndpointSettings
from kamevoice.errors import ConfigError, InputError
from kamevoice.runtime.clock import VirtualClock
from kamevoice.runtime.events import EventLog
from kamevoice.runtime.messages import EventKind


class Recorder(STTStream):
    """A provider that keeps the 16 kHz audio it gets and says one word per second of it."""

    name = "recorder"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.audio: list[np.ndarray] = []

    async def _feed(self, audio: np.ndarray) -> None:
        self.audio.append(audio)
        secs = int(self.audio_pushed_s)
        self._publish(Hypothesis(" ".join(["word"] * secs), False, [], float(secs)))

    async def _end(self) -> None:
        self._publish(Hypothesis("done", True, [], self.audio_pushed_s))


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_resampler_keeps_pitch_level_and_length(rate: int) -> None:
    y = resample(tone(1000, rate, 1.0), rate, ENGINE_RATE)
    assert len(y) == ENGINE_RATE
    assert dominant_freq(y, ENGINE_RATE) == pytest.approx(1000, abs=2)
    mid = y[500:-500]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_resampler_removes_what_16k_cannot_hold(rate: int) -> None:
    # 11 kHz is above 16 kHz's Nyquist (8 kHz): a naive decimator would fold it to 5 kHz.
    y = resample(tone(11_000, rate, 1.0), rate, ENGINE_RATE)
    assert np.sqrt(np.mean(y[500:-500] ** 2)) < 1e-3


def test_resampling_in_chunks_equals_resampling_whole() -> None:
    x = np.random.default_rng(0).standard_normal(44_100).astype(np.float32) * 0.1
    whole = resample(x, 44_100, ENGINE_RATE)
    conv, parts, i = StreamResampler(44_100, ENGINE_RATE), [], 0
    for n in [1, 7, 441, 3000, 13, 9999, 100_000]:
        parts.append(conv.process(x[i : i + n]))
        i += n
    parts.append(conv.flush())
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_pcm_conversion() -> None:
    np.testing.assert_allclose(to_mono_float(np.array([16384, -32768], np.int16)), [0.5, -1.0])
    stereo = np.array([[0.2, 0.4], [-0.2, 0.0]], np.float64)
    np.testing.assert_allclose(to_mono_float(stereo), [0.3, -0.1], rtol=1e-6)


@pytest.mark.parametrize(
    ("pcm", "match"),
    [
        (np.zeros(10, np.int32), "dtype"),
        (np.zeros(10, np.uint8), "dtype"),
        (np.zeros((2, 3, 4), np.float32), "shape"),
        (np.zeros((2, 1000), np.float32), "channels"),
        (np.array([0.1, np.nan], np.float32), "NaN"),
        (np.array([0.1, np.inf], np.float32), "NaN or infinite"),
        (np.array([1000.0, 0.0], np.float32), "int16"),
        ([0.1, 0.2], "numpy array"),
    ],
)
async def test_bad_pcm_is_refused(pcm, match: str) -> None:
    stt = Recorder()
    with pytest.raises(InputError, match=match):
        await stt.push(pcm, 16_000)


@pytest.mark.parametrize("rate", [0, 7_000, 96_000, 16_000.0, True])
async def test_unsupported_rate_is_refused(rate) -> None:
    with pytest.raises(InputError, match="rate"):
        await Recorder().push(np.zeros(160, np.float32), rate)


async def test_rate_change_and_push_after_finish_are_refused() -> None:
    stt = Recorder()
    await stt.push(np.zeros(160, np.int16), 16_000)
    with pytest.raises(InputError, match="changed"):
        await stt.push(np.zeros(480, np.int16), 48_000)
    await stt.finish()
    with pytest.raises(InputError, match="after finish"):
        await stt.push(np.zeros(160, np.int16), 16_000)


async def test_push_resamples_and_events_carry_lag() -> None:
    clock = VirtualClock()
    log = EventLog(clock=clock)
    stt = Recorder(events=log)
    x = tone(440, 48_000, 2.5)
    for i in range(0, len(x), 3840):  # 80 ms chunks
        await stt.push(x[i : i + 3840], 48_000)
        clock.advance(0.08)
    await stt.finish()
    hyps = [h async for h in stt]
    got = np.concatenate(stt.audio)
    assert len(got) == int(2.5 * ENGINE_RATE)
    assert dominant_freq(got, ENGINE_RATE) == pytest.approx(440, abs=2)
    assert hyps[-1].is_final and hyps[-1].text == "done"
    partials = log.of_kind(EventKind.STT_PARTIAL)
    assert partials and all(0 <= e["lag_s"] < 1.0 for e in partials)
    assert partials[-1]["words"] == 2
    assert hyps[-1].emitted_at == pytest.approx(2.56)  # stamped by the log's clock: 32 chunks of 80 ms
    assert log.of_kind(EventKind.STT_FINAL)[0]["lag_s"] == 0.0


def test_endpointer_cuts_utterances_at_silence() -> None:
    rate = 16_000
    silence, burst = np.zeros(rate, np.float32), tone(300, rate, 0.6, 0.3)
    audio = np.concatenate([silence, burst, silence, burst, silence[: rate // 2]])
    ep = Endpointer(EndpointSettings(vad="energy", end_silence_s=0.3, pre_roll_s=0.1))
    events = []
    for i in range(0, len(audio), 1234):
        events += ep.feed(audio[i : i + 1234])
    events += ep.flush()
    starts = [e.t for e in events if isinstance(e, SpeechStart)]
    ends = [e.t for e in events if isinstance(e, SpeechEnd)]
    assert starts == pytest.approx([0.9, 2.5], abs=0.04)  # onset minus ~0.1 s pre-roll
    assert ends == pytest.approx([1.9, 3.5], abs=0.04)  # burst end plus 0.3 s of silence
    first = [e for e in events if isinstance(e, SpeechAudio)]
    assert first[0].t == pytest.approx(starts[0])


def test_read_audio(tmp_path: Path) -> None:
    path = tmp_path / "stereo.flac"
    sf.write(str(path), np.zeros((800, 2), np.float32), 8000)
    audio, rate = read_audio(path)
    assert audio.shape == (800, 2) and rate == 8000 and audio.dtype == np.float32
    bad = tmp_path / "bad.wav"
    bad.write_text("this is not audio")
    with pytest.raises(InputError, match="cannot read audio file"):
        read_audio(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")


async def test_stream_file_pushes_80ms_chunks(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(str(path), tone(440, 44_100, 1.0), 44_100)
    stt = Recorder()
    duration = await stream_file(stt, path)
    assert duration == pytest.approx(1.0)
    # 80 ms at 16 kHz each; the converter's sub-millisecond look-ahead shifts a few samples.
    assert len(stt.audio) >= 12 and all(abs(len(a) - 1280) <= 30 for a in stt.audio[:-2])
    assert sum(len(a) for a in stt.audio) == ENGINE_RATE


def test_settings_and_factory() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        STTSettings(provider="sphinx", colour="blue")
    assert type(make_stt(STTSettings(provider="sphinx"))).__name__ == "SphinxSTT"
    expected = "PairedSTT" if whisper_available(STTSettings()) else "SphinxSTT"
    assert type(make_stt(STTSettings())).__name__ == expected  # 'auto'
    with pytest.raises(ConfigError, match="API key"):
        make_stt(STTSettings(provider="deepgram", deepgram=DeepgramSettings()))
