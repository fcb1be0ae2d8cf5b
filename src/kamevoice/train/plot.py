"""`kamevoice train plot RUN`: loss curves of a run as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from kamevoice.errors import InputError
from kamevoice.train.logging import LOG_NAME, latest_per_step, read_log
from kamevoice.train.losses import TERMS

PLOT_NAME = "loss.png"


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw total and per-term training losses, validation losses with the oracle on/off, accuracies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not (run_dir / LOG_NAME).is_file():
        raise InputError(f"{run_dir}: no {LOG_NAME} (not a training run directory?)")
    records = read_log(run_dir)
    train = latest_per_step(records, "train")
    valid = latest_per_step(records, "valid")
    if not train:
        raise InputError(f"{run_dir / LOG_NAME}: no training records yet")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = [r["step"] for r in train]
    ax = axes[0]
    ax.plot(steps, [r.get("loss") for r in train], label="train total", color="black")
    if valid:
        vsteps = [r["step"] for r in valid]
        ax.plot(vsteps, [r.get("on/loss") for r in valid], "o-", label="valid, oracle on")
        ax.plot(vsteps, [r.get("off/loss") for r in valid], "s--", label="valid, oracle off (all PAD)")
    ax.set(title="loss", xlabel="step")
    ax.legend()
    ax = axes[1]
    for term in TERMS:
        ax.plot(steps, [r.get(f"loss/{term}") for r in train], label=term)
    ax.set(title="cross-entropy per term (train)", xlabel="step", yscale="log")
    ax.legend()
    ax = axes[2]
    for term in TERMS:
        ax.plot(steps, [r.get(f"acc/{term}") for r in train], label=term)
    ax.set(title="accuracy per term (train)", xlabel="step", ylim=(0, 1))
    ax.legend()
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    path = Path(out) if out is not None else run_dir / PLOT_NAME
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
