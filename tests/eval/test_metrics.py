"""The knowledge-word metric, latency summaries, and reading final oracles from an event log."""

from __future__ import annotations

from kamevoice.eval.metrics import content_words, knowledge_word_score, latency_summary
from kamevoice.eval.systems import final_oracle, first_content_word_time
from kamevoice.runtime.messages import EventKind


def test_knowledge_word_score_counts_target_content_words_in_the_reply():
    target = "On Saturdays the store opens at 10."
    assert content_words(target) == {"saturday", "store", "open", "10"}
    assert knowledge_word_score("The store will open at ten on weekdays", target) == 0.75
    assert knowledge_word_score("", target) == 0.0
    assert knowledge_word_score("anything", "the of and") is None


def test_latency_summary_keeps_negative_values_and_missing_replies():
    s = latency_summary([-0.5, 1.0, None, 0.2])
    assert s["median_s"] == 0.2 and s["negative"] == 1 and s["replied"] == 3 and s["turns"] == 4
    assert s["values_s"] == [-0.5, 0.2, 1.0]


def test_final_oracle_and_its_first_content_word():
    ev = [
        {"t": 1.0, "kind": EventKind.ORACLE_BEGIN, "gen": 1, "frame": 12},
        {"t": 1.1, "kind": EventKind.ORACLE_PIECE, "frame": 13, "frame_t": 1.04, "start": True},
        {"t": 1.2, "kind": EventKind.ORACLE_PIECE, "frame": 14, "frame_t": 1.12, "piece": "\u2581the"},
        {"t": 1.5, "kind": EventKind.ORACLE_END, "gen": 1, "text": "the old", "cancelled": True},
        {"t": 2.0, "kind": EventKind.ORACLE_BEGIN, "gen": 2, "frame": 25},
        {"t": 2.1, "kind": EventKind.ORACLE_PIECE, "frame": 26, "frame_t": 2.08, "start": True},
        {"t": 2.2, "kind": EventKind.ORACLE_PIECE, "frame": 27, "frame_t": 2.16, "piece": "\u2581It"},
        {"t": 2.3, "kind": EventKind.ORACLE_PIECE, "frame": 28, "frame_t": 2.24, "piece": "\u2581op"},
        {"t": 2.4, "kind": EventKind.ORACLE_PIECE, "frame": 29, "frame_t": 2.32, "piece": "ens"},
        {"t": 2.5, "kind": EventKind.ORACLE_PIECE, "frame": 30, "frame_t": 2.40, "piece": "\u2581at"},
        {"t": 2.6, "kind": EventKind.ORACLE_END, "gen": 2, "text": "It opens at", "cancelled": False},
    ]
    final = final_oracle(ev, 0.0, 10.0)
    assert final == {"gen": 2, "text": "It opens at", "frame": 25}
    # "It" is a function word; "opens" is complete when "at" starts: its last piece entered at 2.32 s.
    assert first_content_word_time(ev, final, 10.0) == 2.32
    assert final_oracle(ev, 5.0, 10.0) is None
