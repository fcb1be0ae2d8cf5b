"""Print the event vocabulary (`kamevoice.runtime.messages.VOCABULARY`) as a Markdown table.

    PYTHONPATH=src python scripts/event_table.py

docs/architecture.md holds its output; rerun this and paste it there when a kind changes.
Fields are listed sorted; a field marked `*` is private (kept in the server's log, never sent
to clients).
"""

from __future__ import annotations

from kamevoice.runtime.messages import VOCABULARY


def table() -> str:
    rows = [
        "| kind | emitter | client | fields | meaning |",
        "|---|---|---|---|---|",
    ]
    for kind, spec in VOCABULARY.items():
        fields = ", ".join(f"`{f}`*" if f in spec.private else f"`{f}`" for f in sorted(spec.fields))
        client = "yes" if spec.client else "no"
        rows.append(f"| `{kind.value}` | {spec.emitter.value} | {client} | {fields} | {spec.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
