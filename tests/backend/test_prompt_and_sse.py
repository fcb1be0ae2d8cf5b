"""Pure pieces: SentencePiece detokenisation, the conversation, the SSE parser, back-off."""

from __future__ import annotations

import random

import pytest

from kamevoice.backend.llm.sse import LineSplitter, SSEEvent, SSEParser, StreamLimitError
from kamevoice.backend.prompt import DEFAULT_SYSTEM_PROMPT, Conversation, detokenize_pieces
from kamevoice.backoff import Backoff


@pytest.mark.parametrize(
    ("pieces", "text"),
    [
        (["▁Hello", ",", "▁wor", "ld", "!"], "Hello, world!"),
        (["▁caf", "<0xC3>", "<0xA9>", "▁open"], "café open"),
        (["▁", "▁two", "▁▁spaces"], "two spaces"),
        ([], ""),
        (["<0xE2>"], "\ufffd"),  # a truncated multi-byte character is replaced, not dropped silently
    ],
)
def test_detokenize_pieces(pieces, text):
    assert detokenize_pieces(pieces) == text


def test_conversation_counts_user_words_and_replaces_the_partial():
    conv = Conversation()
    conv.set_partial("what time")
    assert conv.user_words() == 2
    conv.set_partial("what time do you")
    assert conv.user_words() == 4
    conv.add_final("What time do you open?")
    assert conv.user_words() == 5 and conv.partial == ""
    conv.add_assistant_piece("▁At")
    conv.add_assistant_piece("▁nine")
    conv.set_partial("and on")
    assert conv.current_user_turn() == "and on"
    prompt = conv.render("SYS", max_chars=1000)
    assert [(m.role, m.content) for m in prompt.messages] == [
        ("user", "What time do you open?"),
        ("assistant", "At nine"),
        ("user", "and on"),
    ]
    assert prompt.system == "SYS"


def test_default_system_prompt_says_what_the_oracle_must_do():
    text = DEFAULT_SYSTEM_PROMPT.lower()
    for idea in ("not have finished", "30 words", "confirm", "set it right", "symbols"):
        assert idea in text


def test_sse_parser_follows_the_event_stream_rules():
    parser = SSEParser()
    lines = [
        ": a comment",
        "event: content_block_delta",
        'data: {"a":',
        "data:1}",
        "id: 7",
        "",
        "",
        "data: [DONE]",
    ]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == [SSEEvent("content_block_delta", '{"a":\n1}')]
    assert parser.finish() == SSEEvent("message", "[DONE]")
    assert parser.finish() is None


STREAM = "data: caf\u00e9\r\n\r\n: note\rdata: two\n\ndata: end".encode()


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_line_splitter_finds_lines_in_any_chunking(size):
    splitter = LineSplitter(64)
    lines: list[str] = []
    for start in range(0, len(STREAM), size):  # CRLF and multi-byte characters split across chunks
        lines += splitter.feed(STREAM[start : start + size])
    assert lines == ["data: caf\u00e9", "", ": note", "data: two", ""]
    assert splitter.finish() == "data: end" and splitter.finish() is None


def test_line_splitter_refuses_a_long_line_before_it_ends():
    splitter = LineSplitter(10)
    assert splitter.feed(b"0123456789\nabc") == ["0123456789"]  # exactly the cap: fine
    with pytest.raises(StreamLimitError, match="line over 10 bytes"):
        splitter.feed(b"defghijk")  # 11 bytes of an unfinished line: no newline needed to refuse


def test_sse_parser_refuses_an_event_whose_data_grows_past_its_cap():
    parser = SSEParser(max_data_chars=20)
    assert parser.feed("data: 0123456789") is None
    with pytest.raises(StreamLimitError, match="event data over 20 characters"):
        parser.feed("data: 0123456789")  # no blank line: the event would grow without end


def test_backoff_grows_is_jittered_capped_and_honours_retry_after():
    policy = Backoff(max_retries=5, base_s=0.1, max_delay_s=1.0, jitter=0.5)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in range(6)]
    for n, d in enumerate(delays):
        nominal = min(1.0, 0.1 * 2**n)
        assert nominal * 0.5 <= d <= nominal
    assert len({round(policy.delay(2, rng), 6) for _ in range(10)}) > 1  # jittered
    assert policy.delay(0, rng, retry_after=0.7) == pytest.approx(0.7)
    assert policy.delay(0, rng, retry_after=60) == 1.0
