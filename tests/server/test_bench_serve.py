"""`kamevoice bench serve` drives real Opus clients against an in-process server and reports figures."""

from __future__ import annotations

import json

import pytest

from kamevoice.cli import main
from kamevoice.tiny.defaults import TINY_CHECKPOINT


def test_bench_serve_prints_and_writes_figures(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        ["bench", "serve", "--checkpoint", str(tiny_checkpoint), "--clients", "1,2", "--seconds", "3",
         "--no-oracle", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "kamevoice bench serve" in printed and "real time" in printed and "added latency" in printed
    payload = json.loads(out.read_text())
    assert [r["clients"] for r in payload["results"]] == [1, 2]
    for r in payload["results"]:
        assert r["steps"] > 0 and r["failed_clients"] == 0
        assert r["frames_sent"] == r["clients"] * int(3 / 0.08)
        assert r["frames_received"] > 0 and r["latency_ms_p50"] is not None
        assert 0 < r["step_ms_p50"] <= r["step_ms_p99"] <= r["step_ms_max"]
        assert r["rss_mb"] > 0 and isinstance(r["realtime"], bool)


@pytest.mark.skipif(not (TINY_CHECKPOINT / "config.json").is_file(), reason="KAME-tiny is not shipped yet")
def test_bench_serve_and_tiny_default_to_the_embedded_model(monkeypatch, tmp_path):
    from kamevoice.tiny.defaults import tiny_checkpoint
    from kamevoice.tiny.knowledge import KnowledgeOptions, write_knowledge

    monkeypatch.delenv("KAMEVOICE_FRONTEND__CHECKPOINT", raising=False)
    monkeypatch.delenv("KAMEVOICE_CONFIG", raising=False)
    loaded: list[str] = []

    def record(source, **kwargs):
        loaded.append(str(source))
        raise SystemExit(0)

    monkeypatch.setattr("kamevoice.frontend.loading.load_frontend", record)
    kb = write_knowledge(tmp_path, KnowledgeOptions(facts=20), dialogues=1).kb
    for argv in (["bench", "serve"], ["bench", "tiny", "--kb", str(kb)]):
        with pytest.raises(SystemExit):
            main(argv)
    assert loaded == [str(tiny_checkpoint())] * 2


def test_bench_tiny_reports_real_time_factors_with_the_backend_on(tiny_checkpoint, tmp_path, capsys):
    """One session with STT (a child process) and the knowledge base: RTFs, CPU split, JSON and plot."""
    from kamevoice.tiny.knowledge import KnowledgeOptions, write_knowledge

    kb = write_knowledge(tmp_path / "kb", KnowledgeOptions(facts=20), dialogues=1).kb
    out = tmp_path / "bench"
    code = main(
        ["bench", "tiny", "--checkpoint", str(tiny_checkpoint), "--kb", str(kb), "--clients", "1",
         "--seconds", "3", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "kamevoice bench tiny" in printed and "CPU RTF" in printed and "real time held up to" in printed
    payload = json.loads((out / "bench.json").read_text())
    assert payload["backend"] and payload["llm"] == "knowledge" and payload["knowledge_base"] == str(kb)
    assert payload["question"].endswith("?") and set(payload["definitions"]) >= {"step_rtf", "cpu_rtf"}
    assert payload["max_realtime_sessions"] in (0, 1)
    (r,) = payload["results"]
    assert r["clients"] == 1 and r["steps"] > 0 and r["failed_clients"] == 0
    assert r["step_rtf_p50"] == pytest.approx(r["step_ms_p50"] / 80, abs=1e-3)
    assert r["cpu_window_s"] == pytest.approx(1.5, abs=0.01)  # a 3 s round: CPU from half-way
    assert r["cpu_s"] > 0 and r["cpu_engine_s"] > 0 and r["cpu_rtf"] > 0 and r["engine_cpu_ms_per_step"] > 0
    assert r["cpu_s"] == pytest.approx(r["cpu_engine_s"] + r["cpu_other_s"] + r["cpu_stt_s"], abs=0.05)
    # The simulated client (Opus both ways, its socket) is measured apart: in neither cpu_s nor cpu_rtf.
    assert r["cpu_client_s"] > 0
    with_clients = (r["cpu_s"] + r["cpu_client_s"]) / r["cpu_window_s"]
    assert r["cpu_rtf_with_clients"] == pytest.approx(with_clients, abs=0.01)
    assert r["cpu_rtf_with_clients"] > r["cpu_rtf"]
    assert r["child_processes"] >= 1  # the session's STT process
    assert isinstance(r["realtime"], bool) and isinstance(r["frames_realtime"], bool)
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG")
