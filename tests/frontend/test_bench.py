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


def test_bench_load_builds_loads_and_reports_memory(tmp_path, capsys):
    """`kamevoice bench load` at a toy size (the issue's 1 GiB run is the benchmark's default):
    the figures come back, the checkpoint is cleaned up."""
    out = tmp_path / "load.json"
    work = tmp_path / "work"
    assert main(["bench", "load", "--size-gb", "0.05", "--dir", str(work), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["weights_bytes"] >= 0.05 * 2**30 and figures["device"] == "cpu"
    assert figures["rss_peak_mb"] >= figures["rss_before_mb"] > 0 and figures["load_s"] > 0
    ratio = figures["peak_increase_mb"] * 2**20 / figures["weights_bytes"]
    assert abs(figures["peak_ratio"] - ratio) < 0.01 and figures["met"] == (figures["peak_ratio"] <= 1.2)
    assert not (work / "checkpoint").exists()
    assert "x the weights" in capsys.readouterr().out
