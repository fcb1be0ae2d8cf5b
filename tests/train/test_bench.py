"""`kamevoice bench train` runs the real training step and reports figures (not asserted)."""

from __future__ import annotations

import json

import pytest

from kamevoice.cli import main


def test_seven_b_on_cpu_is_skipped_with_a_reason(capsys):
    assert main(["bench", "train", "--preset", "moshi-7b", "--device", "cpu", "--lora"]) == 0
    assert "needs a GPU" in capsys.readouterr().out


@pytest.mark.slow  # the small preset is 115M parameters: ~20 s on a 2-core CPU
def test_bench_train_small_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["bench", "train", "--preset", "small", "--seq-len", "16", "--steps", "1", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "full" and report["strategy"] == "single" and report["params_m"] > 100
    assert report["frames_per_s"] > 0 and report["mem_mb"] > 0
