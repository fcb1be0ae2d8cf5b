"""Files shipped inside the package: the embedded KAME-tiny front-end and its world.

`kamevoice tiny build` makes them (see `kamevoice.tiny.build`); `scripts/ship_tiny.py`
copies a build's results here. Everything that needs "the default model" asks this
module, so there is one place that knows where the files are:

- `tiny/checkpoint/`: the trained front-end in the published layout (config.json
  naming Codec 2, bf16 `model.safetensors`, the SentencePiece tokenizer);
- `tiny/kb.jsonl`: the invented-facts knowledge base its back-end answers from;
- `tiny/qa_held_out.jsonl`: questions about facts never asked in its training
  dialogues (what `kamevoice eval tiny` plays);
- `tiny/build.json`: the build's options and stage figures (provenance).
"""

from __future__ import annotations

from pathlib import Path

from kamevoice.errors import ConfigError

TINY_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny"
TINY_CHECKPOINT = TINY_DIR / "checkpoint"
TINY_KB = TINY_DIR / "kb.jsonl"
TINY_HELD_OUT = TINY_DIR / "qa_held_out.jsonl"
TINY_BUILD_INFO = TINY_DIR / "build.json"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ConfigError(
            f"the embedded {what} is missing ({path}): this installation lacks the package data; "
            "reinstall kamevoice, or make your own with `kamevoice tiny build OUT` and pass its files"
        )
    return path


def tiny_checkpoint() -> Path:
    """The embedded KAME-tiny checkpoint directory (the default front-end)."""
    return _require(TINY_CHECKPOINT / "config.json", "KAME-tiny checkpoint").parent


def tiny_knowledge_base() -> Path:
    """The embedded tiny knowledge base (JSONL: question, answer, key_words, held_out, ...)."""
    return _require(TINY_KB, "KAME-tiny knowledge base")


def tiny_held_out_questions() -> Path:
    """Held-out QA lines (JSONL: id, question, answer, fact, key_words) of the embedded build."""
    return _require(TINY_HELD_OUT, "KAME-tiny held-out questions")


def default_checkpoint(value: str | Path | None) -> str:
    """`value` when given, else the embedded KAME-tiny checkpoint (as a path string)."""
    return str(value) if value else str(tiny_checkpoint())


def tiny_back_end(settings, kb: str | Path | None = None, extra_delay_s: float = 0.0):
    """`settings` with the back-end of a KAME-tiny world: the knowledge base `kb` (default: the
    embedded catalogue), its first token `extra_delay_s` later, and a no-match reply like the
    ones KAME-tiny saw as oracles while a question was still unclear.

    The provider's default no-match reply opens with "Let me check", as the tiny replies do: the
    model took it for the answer arriving, started to reply before the user had finished, and
    made up the fact before the real oracle came (seen in `examples/tiny`).

    The STT, where left on 'auto' and Whisper is installed, is Whisper with finals only: the
    paired default's PocketSphinx partials carry none of the tiny catalogue's names on espeak-ng
    voices, and a session's CPU per second of audio went 0.90 -> 0.61 without them (`kamevoice
    bench tiny`); the retrieval reads the same Whisper finals either way.
    """
    from kamevoice.backend.stt import whisper_available
    from kamevoice.knowledge.settings import with_knowledge_base
    from kamevoice.tiny.knowledge import NO_MATCH_REPLY

    settings = with_knowledge_base(
        settings,
        path=Path(kb) if kb is not None else tiny_knowledge_base(),
        fallback_reply=NO_MATCH_REPLY,
        first_token_delay_s=settings.llm.knowledge.first_token_delay_s + extra_delay_s,
    )
    stt = settings.stt
    if stt.provider == "auto" and whisper_available(stt):
        whisper = stt.whisper.model_copy(update={"partials": False})
        stt = stt.model_copy(update={"provider": "whisper", "whisper": whisper})
        settings = settings.model_copy(update={"stt": stt})
    return settings


def tiny_frontend(settings):
    """`settings` with KAME-tiny's front-end defaults: one torch thread, unless a count was chosen.

    Measured with `kamevoice bench tiny` on 2 cores (one OpenBLAS thread in both): the step's
    time is the same (p50 0.33-0.35 of the frame); one session's CPU per second of audio was
    0.49 and 0.50 in two runs on one torch thread, 0.51 and 0.55 on two, the difference in the
    process's threads outside the engine (0.6-0.7 s against 1.4-1.5 s of CPU in 17 s).
    """
    if settings.frontend.cpu_threads:
        return settings
    return settings.model_copy(update={"frontend": settings.frontend.model_copy(update={"cpu_threads": 1})})


def embedded_defaults(checkpoint: str | Path | None, settings):
    """The front-end checkpoint and settings to run with: the embedded KAME-tiny when none is given.

    The embedded front-end was trained on its own invented-facts catalogue, so with it the
    knowledge-base back-end answers from that catalogue (`tiny_back_end`), unless a knowledge
    base was chosen (anything but the example FAQ, the settings' default), and it runs on one
    torch thread unless a count was chosen (`tiny_frontend`). A given checkpoint changes nothing.
    Returns `(checkpoint, settings)`; `settings` is copied, never changed.
    """
    from kamevoice.knowledge.settings import EXAMPLE_KB_PATH

    if checkpoint:
        return str(checkpoint), settings
    chosen = tiny_checkpoint()
    settings = tiny_frontend(settings)
    if Path(settings.llm.knowledge.path) == EXAMPLE_KB_PATH:
        settings = tiny_back_end(settings)
    return str(chosen), settings
