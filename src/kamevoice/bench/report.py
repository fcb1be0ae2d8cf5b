"""Where a benchmark's figures go: `--json FILE` writes them to FILE, `--json -` to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_json(payload: Any, destination: str) -> None:
    """Write `payload` as indented JSON to `destination` ('-': standard output)."""
    text = json.dumps(payload, indent=2) + "\n"
    if destination == "-":
        sys.stdout.write(text)
    else:
        Path(destination).write_text(text, encoding="utf-8")
