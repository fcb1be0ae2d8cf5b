"""`kamevoice bench serve` drives real Opus clients against an in-process server and reports figures."""

from __future__ import annotations

import json

from kamevoice.cli import main


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


def test_bench_serve_needs_a_checkpoint(monkeypatch, capsys):
    monkeypatch.delenv("KAMEVOICE_FRONTEND__CHECKPOINT", raising=False)
    monkeypatch.delenv("KAMEVOICE_CONFIG", raising=False)
    assert main(["bench", "serve"]) == 1
    assert "no front-end checkpoint" in capsys.readouterr().err
