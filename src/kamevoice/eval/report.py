"""Reports of a spoken MT-Bench run: a Table-2-shaped Markdown table, JSON, and a latency-score scatter.

The paper's published numbers (docs/kame.md section 1, Table 2) are drawn on the
plot for reference and listed under the table, always labelled as the
paper's: they come from the real 7B models and GPT-4.1 judges, not from us.
"""

from __future__ import annotations

import io
from pathlib import Path

from kamevoice.eval.store import write_bytes, write_json

# KAME paper, Table 2 (arXiv 2510.02327): (system, reasoning, STEM, humanities, average, median latency s).
PAPER_TABLE2: tuple[tuple[str, float, float, float, float, float | None], ...] = (
    ("Moshi", 1.32, 1.94, 2.88, 2.05, 0.0),
    ("KAME + gpt-4.1", 5.44, 6.65, 7.19, 6.43, 0.0),
    ("KAME + claude-opus-4.1", 5.72, 6.53, 6.43, 6.23, 0.0),
    ("Unmute cascade + gpt-4.1", 7.08, 8.35, 7.67, 7.70, 2.1),
    ("back-end text only (final oracle)", 6.48, 8.34, 8.56, 7.79, None),
)
_CATEGORY_TITLES = {"reasoning": "reasoning", "stem": "STEM", "humanities": "humanities"}


def write_report(out: Path, results: dict) -> None:
    """results.json, table.md and latency_quality.png in `out`."""
    write_json(out / "results.json", {**results, "paper_table2": [list(r) for r in PAPER_TABLE2]})
    (out / "table.md").write_text(markdown_table(results), encoding="utf-8")
    write_bytes(out / "latency_quality.png", scatter_png(results))


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _score_cell(cell: dict, metric: str) -> str:
    if metric == "judge":
        j = cell["judge"]
        if j["mean"] is None:
            return "-"
        return f"{j['mean']:.2f} ± {j['std']:.2f}"
    return _fmt(cell["knowledge_words"]["mean"])


def markdown_table(results: dict) -> str:
    """The table in the shape of the paper's Table 2, plus latency details and the paper's rows."""
    metric, cats = results["metric"], results["categories"]
    titles = [_CATEGORY_TITLES.get(c, c) for c in cats]
    lines = ["# Spoken MT-Bench", ""]
    if metric == "judge":
        runs = results["judge"]["runs"]
        lines.append(
            f"Scores: LLM judge ({results['judge']['config'].get('model')}), 1-10, FastChat single-answer "
            f"prompts, mean ± standard deviation over {runs} runs of the per-run category means."
        )
    else:
        lines.append(
            "No judge configured: scores are the **knowledge-word metric** (share, 0-1, of the content words "
            "of the reference answer, or else of the back-end's final oracle, found in the reply; see "
            "`kamevoice.eval.metrics`). Not comparable with the paper's 1-10 judge scores."
        )
    lines += ["", "| system | " + " | ".join(titles) + " | average | median latency |"]
    lines.append("|---" * (len(cats) + 3) + "|")
    for s in results["systems"]:
        lat = s.get("latency")
        median = "-" if not lat or lat["median_s"] is None else f"{lat['median_s']:.2f} s"
        for view, v in s["views"].items():
            cells = [_score_cell(v["categories"][c], metric) for c in cats]
            lines.append(
                f"| {s['name']} ({view}) | " + " | ".join(cells) + f" | {_fmt(v['average'])} | {median} |"
            )
    lines += [
        "",
        "Views: `monologue` = the front-end's inner monologue, `stt` = an STT transcript of the system's "
        "audio, `text` = a text answer. Latency belongs to the system (front-end: onset of its inner "
        "monologue; cascade: first TTS audio), so both views of a system share it.",
        "",
        "## Latency per turn",
        "",
        results_clipping(results),
        "",
    ]
    lines.append(
        "| system | median | replied / turns | negative | first oracle piece (median) | "
        "first content word of the final answer (median) | raw values (s) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for s in results["systems"]:
        lat = s.get("latency")
        if not lat:
            continue
        raw = ", ".join(f"{v:.2f}" for v in lat["values_s"])
        lines.append(
            f"| {s['name']} | {_fmt(lat['median_s'])} | {lat['replied']} / {lat['turns']} "
            f"| {lat['negative']} | {_fmt(lat['first_oracle_piece']['median_s'])} "
            f"| {_fmt(lat['first_content_word']['median_s'])} | {raw} |"
        )
    lines += ["", "## Published reference (KAME paper, Table 2; not measured here)", ""]
    lines.append("| system | reasoning | STEM | humanities | average | median latency |")
    lines.append("|---|---|---|---|---|---|")
    for name, r, st, h, avg, lat in PAPER_TABLE2:
        lines.append(f"| {name} | {r} | {st} | {h} | {avg} | {'-' if lat is None else f'{lat} s'} |")
    return "\n".join(lines) + "\n"


def results_clipping(results: dict) -> str:
    for s in results["systems"]:
        if s.get("latency"):
            return "Latency: " + s["latency"]["clipping"] + "."
    return ""


def scatter_png(results: dict) -> bytes:
    """Score against median latency for every measured system, the paper's points for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = results["metric"] == "judge"
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    for s in results["systems"]:
        lat = s.get("latency")
        for view, v in s["views"].items():
            if v["average"] is None:
                continue
            colour = next(colours)
            label = f"{s['name']} ({view})"
            if not lat or lat["median_s"] is None:  # text-only systems have no latency: a level line
                ax.axhline(v["average"], color=colour, linewidth=1.0, label=label)
                continue
            ax.scatter(lat["median_s"], v["average"], marker="o", s=40, color=colour, zorder=3, label=label)
    ax.legend(fontsize=7, loc="upper left", title="this run", title_fontsize=7)
    ax.set_xlabel("median response latency (s)")
    ax.set_ylabel("MT-Bench judge score (1-10)" if judged else "knowledge-word share (0-1), this run")
    paper_ax = ax if judged else ax.twinx()
    for name, *_, avg, lat in PAPER_TABLE2:
        if lat is None:
            paper_ax.axhline(avg, color="gray", linestyle="--", linewidth=0.8)
            paper_ax.annotate(
                f"paper: {name}",
                (0.0, avg),
                fontsize=7,
                color="gray",
                xytext=(2, 2),
                textcoords="offset points",
            )
            continue
        paper_ax.scatter(lat, avg, marker="x", color="gray", zorder=2)
        paper_ax.annotate(
            f"paper: {name}", (lat, avg), fontsize=7, color="gray", xytext=(4, -9), textcoords="offset points"
        )
    if not judged:
        paper_ax.set_ylabel("paper: MT-Bench judge score (1-10), for reference", color="gray")
        paper_ax.set_ylim(0, 10)
        ax.set_ylim(-0.02, 1.02)
    else:
        ax.set_ylim(0, 10)
    ax.set_title(
        "Latency-quality: this run (colour) and the KAME paper's Table 2 (grey, reference)", fontsize=9
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
