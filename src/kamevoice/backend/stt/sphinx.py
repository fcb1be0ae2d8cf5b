"""PocketSphinx: the embedded, CPU-light streaming recogniser (en-US model inside the wheel).

Audio is cut into utterances by the `Endpointer`; inside an utterance each
chunk goes through `process_raw`, and whenever `hyp()` changes a partial is
published with word times from `seg()` (10 ms frames). The utterance's end
gives the final. Decoding runs on a worker thread, never on the event loop.

Tuning (see `SphinxSettings`): `lw` (language weight), a task language model
built here from a text corpus (`corpus` / `corpus_text`, via
`pocketsphinx.lm.ArpaBoLM`), or `keyphrases` for keyword spotting (the
stream then reports only those phrases).

Measured word error rates are in this package's README.md
(`python -m kamevoice.eval.stt` prints them).
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kamevoice.audio import float_to_int16
from kamevoice.backend.stt.base import Hypothesis, STTError, STTStream, Word
from kamevoice.backend.stt.endpoint import Endpointer, SpeechAudio, SpeechEnd, SpeechEvent, SpeechStart
from kamevoice.backend.stt.settings import EndpointSettings, SphinxSettings
from kamevoice.errors import ConfigError
from kamevoice.runtime.clock import Clock
from kamevoice.runtime.events import EventLog

log = logging.getLogger(__name__)

# PocketSphinx's default frame rate: seg() counts 10 ms frames.
FRAMES_PER_S = 100
# Tokens in seg() that are not words: sentence marks, silence, fillers like [NOISE] or ++UH++.
_NON_WORD = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
# Alternate pronunciations come back as word(2), word(3).
_ALT_PRON = re.compile(r"\(\d+\)$")
# Corpus normalisation: keep letters, digits and apostrophes; sentences end at . ! ? ; or a line break.
_SENTENCE_END = re.compile(r"[.!?;\n]+")
_NOT_WORD_CHAR = re.compile(r"[^a-z0-9' ]+")


def corpus_sentences(text: str) -> list[str]:
    """Split a domain text into lower-case sentences of plain words, as the LM builder wants them."""
    sentences = []
    for raw in _SENTENCE_END.split(text.lower()):
        words = _NOT_WORD_CHAR.sub(" ", raw.replace("-", " ")).split()
        if words:
            sentences.append(" ".join(words))
    return sentences


def default_dictionary() -> Path:
    """CMUdict as shipped in the pocketsphinx wheel."""
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


def subset_dictionary(dictionary: Path, words: set[str], out_path: Path) -> set[str]:
    """Write the entries of `words` (all pronunciations) to `out_path`; returns the words it lacks.

    A decoder with a task LM loads in ~15 ms with this, against 2.5-5 s with all of CMUdict.
    """
    found, lines = set(), []
    with open(dictionary, encoding="utf-8") as f:
        for line in f:
            head = line.split(maxsplit=1)[0] if line.strip() else ""
            word = _ALT_PRON.sub("", head)
            if word in words:
                found.add(word)
                lines.append(line if line.endswith("\n") else line + "\n")
    out_path.write_text("".join(lines), encoding="utf-8")
    return words - found


def build_task_lm(text: str, out_path: Path) -> list[str]:
    """Write an ARPA trigram model of `text` to `out_path`; returns the normalised sentences."""
    from pocketsphinx.lm import ArpaBoLM

    sentences = corpus_sentences(text)
    if not sentences:
        raise ConfigError("the sphinx task corpus holds no words")
    model = ArpaBoLM(text="\n".join(sentences), add_start=True)
    model.compute()
    model.write_file(str(out_path))
    return sentences


class SphinxSTT(STTStream):
    """A PocketSphinx recognition stream."""

    name = "sphinx"

    def __init__(
        self,
        settings: SphinxSettings | None = None,
        endpoint: EndpointSettings | None = None,
        events: EventLog | None = None,
        clock: Clock | None = None,
    ):
        super().__init__(events, clock)
        self.settings = settings or SphinxSettings()
        for label, path in (
            ("hmm", self.settings.hmm),
            ("dictionary", self.settings.dictionary),
            ("lm", self.settings.lm),
            ("corpus", self.settings.corpus),
        ):
            if path is not None and not Path(path).exists():
                raise ConfigError(f"sphinx {label} {path} does not exist")
        self._endpointer = Endpointer(endpoint)
        self._decoder: Any = None
        self._utt_start = 0.0
        self._last_partial: str | None = None

    # -- engine set-up --------------------------------------------------------------------

    def _load(self) -> Any:
        from pocketsphinx import Decoder

        s = self.settings
        config: dict[str, Any] = {"samprate": 16_000, "lw": s.lw, "loglevel": "FATAL"}
        if s.hmm is not None:
            config["hmm"] = str(s.hmm)
        if s.dictionary is not None:
            config["dict"] = str(s.dictionary)
        with tempfile.TemporaryDirectory(prefix="kamevoice-sphinx-") as tmp:
            if s.keyphrases:
                kws = Path(tmp) / "keyphrases.txt"
                kws.write_text("".join(f"{p.lower()} /{s.kws_threshold:g}/\n" for p in s.keyphrases))
                config["kws"] = str(kws)
            elif s.corpus is not None or s.corpus_text is not None:
                text = s.corpus_text if s.corpus_text is not None else Path(s.corpus).read_text("utf-8")  # type: ignore[arg-type]
                arpa = Path(tmp) / "task.lm"
                sentences = build_task_lm(text, arpa)
                config["lm"] = str(arpa)
                vocabulary = {w for sentence in sentences for w in sentence.split()}
                small = Path(tmp) / "task.dict"
                missing = subset_dictionary(s.dictionary or default_dictionary(), vocabulary, small)
                if missing:
                    log.warning("sphinx task corpus words without a pronunciation: %s", sorted(missing))
                config["dict"] = str(small)
            elif s.lm is not None:
                config["lm"] = str(s.lm)
            try:
                decoder = Decoder(**config)
            except (ValueError, RuntimeError) as exc:
                raise ConfigError(f"pocketsphinx could not start with {config}: {exc}") from exc
        return decoder

    # -- streaming ------------------------------------------------------------------------

    async def _prepare(self) -> None:
        if self._decoder is None:
            self._decoder = await asyncio.to_thread(self._load)

    async def _feed(self, audio: np.ndarray) -> None:
        await self._run(self._endpointer.feed(audio))

    async def _end(self) -> None:
        await self._run(self._endpointer.flush())

    async def _run(self, events: list[SpeechEvent]) -> None:
        for hyp in await self._recognise(events):
            self._publish(hyp)

    async def _recognise(self, events: list[SpeechEvent]) -> list[Hypothesis]:
        """Decode the endpointer's events off the loop (loading the decoder on first use)."""
        if not events and self._decoder is not None:
            return []
        try:
            if self._decoder is None:
                self._decoder = await asyncio.to_thread(self._load)
            return await asyncio.to_thread(self._decode, events)
        except ConfigError:
            raise
        except Exception as exc:
            raise STTError(f"pocketsphinx failed: {type(exc).__name__}: {exc}") from exc

    def _decode(self, events: list[SpeechEvent]) -> list[Hypothesis]:
        """Run speech events through the decoder (worker thread); returns the hypotheses they produce."""
        out: list[Hypothesis] = []
        dec = self._decoder
        for ev in events:
            if isinstance(ev, SpeechStart):
                dec.start_utt()
                self._utt_start = ev.t
                self._last_partial = None
            elif isinstance(ev, SpeechAudio):
                dec.process_raw(float_to_int16(ev.audio).tobytes(), False, False)
                hyp = dec.hyp()
                text = hyp.hypstr.strip() if hyp is not None else ""
                if text and text != self._last_partial:
                    self._last_partial = text
                    out.append(Hypothesis(text, False, self._words(), ev.end))
            elif isinstance(ev, SpeechEnd):
                dec.end_utt()
                hyp = dec.hyp()
                text = hyp.hypstr.strip() if hyp is not None else ""
                if text or self._last_partial is not None:
                    out.append(Hypothesis(text, True, self._words(), ev.t))
                self._last_partial = None
        return out

    def _words(self) -> list[Word]:
        words = []
        for seg in self._decoder.seg():
            if _NON_WORD.match(seg.word):
                continue
            start = self._utt_start + seg.start_frame / FRAMES_PER_S
            end = self._utt_start + (seg.end_frame + 1) / FRAMES_PER_S
            words.append(Word(_ALT_PRON.sub("", seg.word), round(start, 3), round(end, 3)))
        return words
