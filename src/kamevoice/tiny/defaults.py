"""KAME-tiny as the embedded default: where its files are, and what "the default" means.

`kamevoice tiny build` makes the files; `kamevoice tiny ship` copies a build's results
into the package's data folder `kamevoice/assets/tiny/` (data only, no code):

- `checkpoint/`: the trained front-end in the published layout (config.json naming
  Codec 2, bf16 `model.safetensors`, the SentencePiece tokenizer);
- `kb.jsonl`: the invented-facts knowledge base its back-end answers from;
- `qa_held_out.jsonl`: questions about facts never asked in its training dialogues
  (what `kamevoice eval tiny` plays);
- `build.json`: the build's options and stage figures (provenance).

`embedded_defaults(settings)` settles settings that name no checkpoint on KAME-tiny with
its own catalogue; `kamevoice.startup` calls it once for every command.
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


def tiny_back_end(settings, kb: str | Path | None = None, extra_delay_s: float = 0.0, *, use_knowledge=False):
    """`settings` with the back-end of a KAME-tiny world: the knowledge base `kb` (default: the
    embedded catalogue), its first token `extra_delay_s` later, and a no-match reply like the
    ones KAME-tiny saw as oracles while a question was still unclear. The configured LLM
    provider is kept (the knowledge base answers only when it is the provider, the default)
    unless `use_knowledge` makes it the provider (the tiny evaluation measures that back-end).

    The provider's default no-match reply opens with "Let me check", as the tiny replies do: the
    model took it for the answer arriving, started to reply before the user had finished, and
    made up the fact before the real oracle came (seen in `examples/tiny`).

    The STT, where left on 'auto' and Whisper is installed, is Whisper with finals only: the
    paired default's PocketSphinx partials carry none of the tiny catalogue's names on espeak-ng
    voices, and cost a session about a third more CPU (`kamevoice bench tiny`); the retrieval
    reads the same Whisper finals either way.
    """
    from kamevoice.backend.stt import whisper_available
    from kamevoice.tiny.knowledge import NO_MATCH_REPLY

    knowledge = settings.llm.knowledge.model_copy(
        update={
            "path": Path(kb) if kb is not None else tiny_knowledge_base(),
            "fallback_reply": NO_MATCH_REPLY,
            "first_token_delay_s": settings.llm.knowledge.first_token_delay_s + extra_delay_s,
        }
    )
    llm = settings.llm.model_copy(
        update={"knowledge": knowledge, **({"provider": "knowledge"} if use_knowledge else {})}
    )
    settings = settings.model_copy(update={"llm": llm})
    stt = settings.stt
    if stt.provider == "auto" and whisper_available(stt):
        whisper = stt.whisper.model_copy(update={"partials": False})
        stt = stt.model_copy(update={"provider": "whisper", "whisper": whisper})
        settings = settings.model_copy(update={"stt": stt})
    return settings


def tiny_frontend(settings):
    """`settings` with KAME-tiny's front-end defaults: the embedded checkpoint, and one torch thread
    unless a count was chosen (a model this small steps as fast on one thread, and the second
    costs CPU that the STT and other sessions need; `kamevoice bench tiny`)."""
    update = {"checkpoint": str(tiny_checkpoint())}
    if not settings.frontend.cpu_threads:
        update["cpu_threads"] = 1
    return settings.model_copy(update={"frontend": settings.frontend.model_copy(update=update)})


def embedded_defaults(settings):
    """`settings` settled on the embedded KAME-tiny when they name no front-end checkpoint.

    The embedded front-end was trained on its own invented-facts catalogue, so with it the
    knowledge base is that catalogue (`tiny_back_end`), unless one was chosen (anything but
    the example FAQ, the settings' default), and it runs on one torch thread unless a count
    was chosen (`tiny_frontend`). Settings that name a checkpoint come back unchanged.
    Returns a copy; `settings` is never changed.
    """
    from kamevoice.knowledge.settings import EXAMPLE_KB_PATH

    if settings.frontend.names_checkpoint:
        return settings
    settings = tiny_frontend(settings)
    if Path(settings.llm.knowledge.path) == EXAMPLE_KB_PATH:
        settings = tiny_back_end(settings)
    return settings
