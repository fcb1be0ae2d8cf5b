"""The server builds its knowledge base's index before it listens, and refuses to start without one."""

from __future__ import annotations

import pytest

from kamevoice.config import load_settings
from kamevoice.errors import ConfigError
from kamevoice.server.app import KameServer
from kamevoice.tiny.knowledge import KnowledgeOptions, write_knowledge
from tests.server.conftest import GREEDY


async def test_the_index_is_built_at_start_not_at_the_first_question(frontend, tmp_path):
    kb = write_knowledge(tmp_path, KnowledgeOptions(facts=40), dialogues=1).kb
    settings = load_settings(server={"port": 0}, llm={"knowledge": {"path": str(kb)}})
    srv = KameServer(frontend, settings, sampling=GREEDY)
    await srv.start()
    try:
        kb.unlink()  # the file is gone: only an index built at start can still answer
        provider = srv.backend.llm()
        first = next(e for e in provider.kb.entries if e.question)
        assert provider.lookup(first.question).entry == first
    finally:
        await srv.stop()


async def test_a_missing_knowledge_base_stops_the_start_with_its_name(frontend, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    settings = load_settings(server={"port": 0}, llm={"knowledge": {"path": str(missing)}})
    srv = KameServer(frontend, settings, sampling=GREEDY)
    with pytest.raises(ConfigError, match=r"nowhere\.jsonl"):
        await srv.start()
    assert srv.engine.thread_id is None  # the engine never started, nothing listens
