"""Reports of `kamevoice eval tiny`: results.json, table.md and accuracy.png (bars per condition)."""

from __future__ import annotations

import io
from pathlib import Path

from kamevoice.eval.store import write_bytes, write_json


def write_report(out: Path, results: dict) -> None:
    """results.json, table.md and accuracy.png in `out`."""
    write_json(out / "results.json", results)
    (out / "table.md").write_text(markdown_table(results), encoding="utf-8")
    write_bytes(out / "accuracy.png", accuracy_png(results))


def _pct(cell: dict | None, key: str = "accuracy") -> str:
    return "-" if cell is None or cell.get(key) is None else f"{100 * cell[key]:.0f}%"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def headline(results: dict) -> list[str]:
    """The two target figures and whether they are met."""
    lines = []
    for name, target in results["targets"].items():
        value = results[name]
        bound = f">= {target['at_least']:.0%}" if "at_least" in target else f"<= {target['at_most']:.0%}"
        met = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        shown = "-" if value is None else f"{value:.1%}"
        lines.append(f"- `{name}`: {shown} (target {bound}: {met})")
    for name in ("text_keyword_accuracy_oracle_no_follow",
                 "text_reply_word_share_oracle", "text_reply_word_share_no_oracle",
                 "text_reply_kind_accuracy_oracle", "text_reply_kind_accuracy_no_oracle"):  # fmt: skip
        if results.get(name) is not None:
            lines.append(f"- `{name}`: {results[name]:.1%}")
    return lines


def _given(cell: dict | None) -> str:
    """'11/26 (42%)': answered questions among those whose final oracle held the fact."""
    if not cell:
        return "-"
    return f"{cell['answered']}/{cell['questions']} ({cell['accuracy']:.0%})"


def markdown_table(results: dict) -> str:
    lines = [
        "# KAME-tiny: knowledge injection on held-out questions",
        "",
        f"{results['questions']} held-out spoken questions (facts never asked in training dialogues). "
        "Accuracy = share of questions whose reply holds every key word of the answer; key words = share "
        "of the answer's key words found; reply words = share of the words of the expected reply after its "
        "opener (kind, name and value) found; reply kind = share of replies stating the right kind of fact "
        "(price, code, stock, hours). `text`: the front-end's inner monologue; `audio`: an STT "
        "transcript of its speech; `back-end oracle`: the back-end's final oracle (did the right fact "
        "reach the front-end at all).",
        "",
        *headline(results),
        "",
        "| condition | text accuracy | text key words | text reply words | text reply kind "
        "| audio accuracy | audio key words "
        "| back-end oracle accuracy | text accuracy where the oracle was right "
        "| median reply latency | median first oracle piece "
        "| median final oracle arrival | s / session |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in results["conditions"].items():
        lat = c["reply_latency"]
        lines.append(
            f"| {name} | {_pct(c['text'])} | {_pct(c['text'], 'keyword_share')} "
            f"| {_pct(c.get('text_reply_words'), 'keyword_share')} "
            f"| {_pct({'k': c.get('text_reply_kind')}, 'k')} | {_pct(c['audio'])} "
            f"| {_pct(c['audio'], 'keyword_share')} | {_pct(c['backend_oracle'])} "
            f"| {_given(c.get('text_given_right_oracle'))} "
            f"| {_s(lat['median_s'])} ({lat['replied']}/{lat['turns']} replied) "
            f"| {_s(c['first_oracle_piece']['median_s'])} | {_s(c['final_oracle_arrival']['median_s'])} "
            f"| {_s(c['seconds_per_session'])} |"
        )
    lines += [
        "",
        "Latencies from the event log, against the true end of the question (synthesiser word timings): "
        "reply onset of the inner monologue; the first oracle piece entering the model (any oracle, "
        "including early guesses from partial transcripts); the first content word of the back-end's "
        "final oracle entering the model. `delay-D`: the back-end's first token D s later than live. "
        "`live-no-follow`: live, with the front-end's oracle-following decoding policy off.",
    ]
    return "\n".join(lines) + "\n"


def accuracy_png(results: dict) -> bytes:
    """Grouped bars per condition: text, audio and back-end oracle accuracy; the targets as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["conditions"])
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 4), dpi=110)
    width = 0.27
    views = (("text", "text stream", None), ("audio", "audio (STT)", None),
             ("backend_oracle", "back-end's final oracle (ceiling)", "lightgray"))  # fmt: skip
    for i, (view, label, colour) in enumerate(views):
        values = [(results["conditions"][n][view] or {}).get("accuracy") for n in names]
        bars = ax.bar([x + (i - 1) * width for x in xs], [v or 0.0 for v in values], width, label=label,
                      color=colour)  # fmt: skip
        ax.bar_label(bars, labels=["" if v is None else f"{v:.0%}" for v in values], fontsize=7)
    ax.axhline(results["targets"]["text_keyword_accuracy_oracle"]["at_least"], color="green",
               linestyle="--", linewidth=0.8, label="target with oracle (text)")  # fmt: skip
    ax.axhline(results["targets"]["text_keyword_accuracy_no_oracle"]["at_most"], color="red",
               linestyle=":", linewidth=0.8, label="target without oracle (text)")  # fmt: skip
    ax.set_xticks(list(xs), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("key-word accuracy (all key words found)")
    ax.set_title(f"KAME-tiny, {results['questions']} held-out questions", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
