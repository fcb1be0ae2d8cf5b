"""Front doors share one session code: a door is a wire protocol on `Conversation`, nothing more.

A door module (`kamevoice/server/doors/`) may not import the engine, the front-end, the STT,
the LLM providers or the scheduler, nor build a `Session`: the server's `converse` makes the
session and `Conversation` runs it, the same for every door (docs/architecture.md).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import kamevoice
from kamevoice.server.conversation import Conversation

DOORS = Path(kamevoice.__file__).resolve().parent / "server" / "doors"
# What a door must leave to the session: the frame loop, the model, the back-end.
FORBIDDEN = (
    "kamevoice.runtime.engine",
    "kamevoice.frontend",
    "kamevoice.backend",
    "kamevoice.runtime.oracle_feed",
)


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_doors_leave_stt_scheduling_and_the_engine_to_the_session():
    found = []
    for path in sorted(DOORS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.name}: imports {m}" for m in _imports(tree) if m.startswith(FORBIDDEN)]
        found += [
            f"{path.name}:{node.lineno}: builds a Session"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Session"
        ]
    assert not found, "\n".join(found)


def test_the_doors_are_conversations():
    doors = set()
    for path in sorted(DOORS.glob("*.py")):
        module = importlib.import_module(f"kamevoice.server.doors.{path.stem}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, Conversation)
                and cls is not Conversation
                and cls.__module__ == module.__name__
            ):
                doors.add(path.stem)
    assert {"moshi", "twilio"} <= doors, doors
