"""The load bench's plot: step time and real-time factors against the number of sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The orange target line: a real-time factor of half real time, the aim drawn since `bench tiny` came
# (its reason is not recorded; kept so that plots stay comparable).
TARGET_RTF = 0.5


def plot_rounds(payload: dict[str, Any], path: str | Path) -> Path:
    """Step time and real-time factors of `payload` (the bench's JSON) against sessions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = payload["results"]
    n = [r["clients"] for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(n, [r["step_ms_p50"] for r in rounds], "o-", label="step p50")
    left.plot(n, [r["step_ms_p90"] for r in rounds], "s--", label="step p90")
    left.axhline(payload["frame_budget_ms"], color="red", lw=1, label="80 ms frame")
    left.set(title="engine step time", xlabel="concurrent sessions", ylabel="ms", ylim=(0, None))
    left.legend()
    right.plot(n, [r["step_rtf_p50"] for r in rounds], "o-", label="step RTF p50 (batch)")
    right.plot(n, [r["cpu_rtf"] for r in rounds], "s-", label="CPU RTF per session")
    right.plot(n, [r["cpu_cores"] for r in rounds], "^:", label="cores busy")
    right.axhline(TARGET_RTF, color="orange", lw=1, label=f"target {TARGET_RTF:g}")
    right.axhline(1.0, color="red", lw=1, label="real time")
    for r in rounds:
        if not r["realtime"]:
            right.annotate("lost", (r["clients"], r["cpu_rtf"]), color="red", fontsize=8)
    right.set(title="real-time factors", xlabel="concurrent sessions", ylim=(0, None))
    right.legend(fontsize=8)
    backend = "STT + knowledge base" if payload["backend"] else "front-end alone"
    fig.suptitle(f"{Path(payload['checkpoint']).name} on {payload['device']}, {backend}, "
                 f"{payload['cpu_cores']} cores: real time up to {payload['max_realtime_sessions']} "
                 "session(s)")  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
