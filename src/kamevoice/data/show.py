"""Look at one dialogue: its words with times and its oracle events, as text or as a PNG timeline."""

from __future__ import annotations

from pathlib import Path

from kamevoice.data.formats import (
    MAX_HINT_LEVEL,
    ORACLE_DIR,
    TEXT_DIR,
    FormatError,
    OracleEvent,
    Word,
    read_oracle_events,
    read_words,
)
from kamevoice.data.oracles import split_turns

# Predictions longer than this are cut in the text listing (the JSON has them whole).
PREDICTION_CHARS = 100


def load_dialogue(data_dir: str | Path, dialogue_id: str) -> tuple[list[Word], list[OracleEvent]]:
    """Words and (when present) oracle events of one dialogue under `data_dir`."""
    data_dir = Path(data_dir)
    words = read_words(data_dir / TEXT_DIR / f"{dialogue_id}.json")
    oracle_path = data_dir / ORACLE_DIR / f"{dialogue_id}.json"
    events = read_oracle_events(oracle_path) if oracle_path.exists() else []
    return words, events


def render_text(words: list[Word], events: list[OracleEvent]) -> str:
    """Turns with each word's start-end time, then one line per oracle event."""
    lines = []
    for indices in split_turns(words):
        first = words[indices[0]]
        timed = " ".join(f"{words[i].word}[{words[i].start:.2f}-{words[i].end:.2f}]" for i in indices)
        lines.append(f"{first.speaker} {first.start:7.2f}s: {timed}")
    if events:
        lines.append("")
        lines.append(f"{len(events)} oracle events (t, channel, r, level: prediction)")
        for e in events:
            prediction = (
                e.prediction
                if len(e.prediction) <= PREDICTION_CHARS
                else e.prediction[:PREDICTION_CHARS] + "..."
            )
            lines.append(
                f"{e.timestamp_ms / 1000:7.2f}s ch{e.channel} r={e.current_spoken_ratio:.2f} "
                f"L{e.hint_level}: {prediction}"
            )
    return "\n".join(lines)


def plot_timeline(words: list[Word], events: list[OracleEvent], path: str | Path, title: str = "") -> None:
    """Write a PNG: both speakers' words as bars with labels, oracle events as dots coloured by hint level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not words:
        raise FormatError(path, "no words to plot")
    end = max(w.end for w in words)
    fig, ax = plt.subplots(figsize=(max(8.0, min(60.0, end * 0.6)), 3.6))
    rows = {"A": 1.0, "B": 0.0}
    colors = {"A": "#4C72B0", "B": "#DD8452"}
    for w in words:
        y = rows[w.speaker]
        ax.barh(y, w.end - w.start, left=w.start, height=0.5, color=colors[w.speaker], alpha=0.6)
        ax.text((w.start + w.end) / 2, y, w.word, ha="center", va="center", fontsize=6, rotation=90)
    if events:
        cmap = plt.get_cmap("viridis", MAX_HINT_LEVEL + 1)
        xs = [e.timestamp_ms / 1000 for e in events]
        ys = [rows["A"] + 0.45 if e.channel == 0 else rows["B"] - 0.45 for e in events]
        points = ax.scatter(xs, ys, c=[e.hint_level for e in events], cmap=cmap, vmin=-0.5,
                            vmax=MAX_HINT_LEVEL + 0.5, s=18, zorder=3)  # fmt: skip
        fig.colorbar(points, ax=ax, ticks=range(MAX_HINT_LEVEL + 1), label="hint level")
    ax.set_yticks([rows["A"], rows["B"]], ["A (ch 0)", "B (ch 1)"])
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, end + 0.5)
    ax.set_ylim(-0.8, 1.8)
    ax.set_title(title or "dialogue timeline: words and oracle events (dots: event for the replying channel)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
