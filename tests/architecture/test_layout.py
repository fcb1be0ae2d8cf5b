"""The architecture's rules, checked on the source: one vocabulary, small modules, no private reach-ins.

These read `src/` as text and syntax trees; they fail when a change breaks a rule of the house
(docs/architecture.md), not when behaviour changes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kamevoice
from kamevoice.runtime.messages import VOCABULARY, EventKind

SRC = Path(kamevoice.__file__).resolve().parent
# The one module that spells event kinds.
VOCABULARY_MODULE = SRC / "runtime" / "messages.py"
# Real-time code is read in one sitting: no module above this many lines.
MAX_MODULE_LINES = 500
# Private names of third-party objects we must reach (no public accessor exists), each with its why.
UPSTREAM_PRIVATE = {
    "_streaming_state": "moshi's LMGen keeps the per-step sum condition and delay cache there",
    "_lm_kwargs": "moshi.models.loaders: the published 7B's configuration (repos without config.json)",
    "_mimi_config": "moshi.models.loaders: Mimi's configuration",
    "_fully_shard": "torch.distributed.fsdp: fully_shard's implementation module",
    "_SubParsersAction": "argparse: the type add_subparsers() returns has no public name",
}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_event_kind_is_declared_with_its_fields():
    assert set(VOCABULARY) == set(EventKind)
    for kind, spec in VOCABULARY.items():
        assert spec.kind is kind and spec.doc and "." in kind.value
        assert spec.private <= spec.fields
        assert spec.client or not spec.coalesce  # coalescing is about what clients receive


def test_event_kinds_are_spelled_only_in_the_vocabulary():
    values = {k.value for k in EventKind}
    found = []
    for path in _modules():
        if path == VOCABULARY_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in values:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    for page in (SRC / "server" / "static").rglob("*.js"):
        text = page.read_text(encoding="utf-8")
        found += [f"{page.relative_to(SRC)}: {v!r}" for v in values if f'"{v}"' in text or f"'{v}'" in text]
    assert not found, "event kinds written as strings (use EventKind):\n" + "\n".join(found)


def test_no_module_is_longer_than_the_limit():
    long = [
        f"{p.relative_to(SRC)}: {n} lines"
        for p in _modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, long


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines itself: its functions, classes, and attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


def test_no_module_reaches_into_another_objects_private_attributes():
    """`obj._name` only for names the module itself defines (its classes share them), on `self`,
    `cls` or `super()`, or for the upstream names listed above, each with its reason."""
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
                continue
            if node.attr.startswith("__") or node.attr in UPSTREAM_PRIVATE or node.attr in own:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            found.append(f"{path.relative_to(SRC)}:{node.lineno}: .{node.attr}")
    assert not found, "private attributes reached from outside their object:\n" + "\n".join(found)
