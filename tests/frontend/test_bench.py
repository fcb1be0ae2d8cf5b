"""`kamevoice bench frontend` runs and reports figures (the figures themselves are not asserted)."""

from __future__ import annotations

import json

from kamevoice.cli import main


def test_bench_frontend_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "frontend",
            "--presets",
            "fixture,moshi-7b",
            "--batch",
            "1,2",
            "--steps",
            "2",
            "--device",
            "cpu",
            "--no-codec",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [(r["name"], r["batch"]) for r in rows] == [("fixture", 1), ("fixture", 2)]
    for r in rows:
        assert r["steps"] == 2 and 0 < r["median_ms"] <= r["p99_ms"] and r["realtime_factor"] > 0
    assert "moshi-7b" in report["skipped"]  # no GPU here: said, not silently dropped
    assert "fixture" in capsys.readouterr().out
