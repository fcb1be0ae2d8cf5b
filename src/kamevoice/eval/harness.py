"""The measurement harness of the evaluations: what makes a run resumable and accounted for.

Both evaluations (`kamevoice eval mtbench`, `kamevoice eval tiny`) run the same way:

    config = start_run(out, full_config(...))          # OUT/config.json
    records = RecordStore(tally)                       # one JSON file per unit of work
    record = records.get(path, key, compute, group)    # read back when `key` matches, else computed
    finish_run(out, config, results, write_report, work)   # the report, a line in OUT/runs.jsonl

`key` is a fingerprint (`kamevoice.eval.store.fingerprint`) of everything a record is computed
from, so a rerun with the same configuration computes nothing, and a change redoes exactly the
records it touches. `Engines` loads the heavy parts (TTS, front-end) once per run and only when a
record has to be computed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kamevoice.eval.store import read_json, write_json

# -- the run: its configuration and its log ---------------------------------------------------------


def start_run(out: Path, config: dict) -> dict:
    """Create `out` and write `OUT/config.json`: this kamevoice's version, then `config`.

    Returns the configuration as written (what `finish_run` logs at the end)."""
    import kamevoice

    config = {"kamevoice": kamevoice.__version__, **config}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", config)
    return config


def finish_run(out: Path, config: dict, results: dict, write_report: Callable, work: dict) -> None:
    """End a run: `results` name their configuration file, `write_report(out, results)` writes the
    report, and `OUT/runs.jsonl` gets one line: when, with which configuration, what it did."""
    results["config"] = "config.json"
    write_report(out, results)
    with open(Path(out) / "runs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.time(), "config": config, "work": work}) + "\n")


# -- records ----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Records of one kind (sessions, judgements): how many were computed and how many read back,
    and the wall-clock seconds of each computed one per group (a system, a condition)."""

    run: int = 0
    reused: int = 0
    wall_s: dict[str, list[float]] = field(default_factory=dict)


class RecordStore:
    """Records as atomic JSON files, each holding under `key` the fingerprint of what it was computed
    from; a stored record counts only when its key matches. Every record is counted in `tally`."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def load(self, path: Path, key: str, accept: Callable[[dict], bool] | None = None) -> dict | None:
        """The record at `path` if it was computed from `key` (and `accept` takes it), else None."""
        stored = read_json(path)
        if stored is None or stored.get("key") != key or (accept is not None and not accept(stored)):
            return None
        self.tally.reused += 1
        return stored

    def save(self, path: Path, record: dict, group: str | None = None) -> None:
        """Write a computed record; with a `group`, its `wall_s` is counted under that group."""
        write_json(path, record)
        self.tally.run += 1
        if group is not None:
            self.tally.wall_s.setdefault(group, []).append(record.get("wall_s", 0.0))

    def get(self, path: Path, key: str, compute: Callable[[], dict], group: str | None = None) -> dict:
        """The record at `path` computed from `key`: read back, or computed now (its folder exists
        by then, for the files that go with it) and saved with `key` set."""
        stored = self.load(path, key)
        if stored is not None:
            return stored
        path.parent.mkdir(parents=True, exist_ok=True)
        record = compute()
        record["key"] = key
        self.save(path, record, group)
        return record


def slug(text: str) -> str:
    """`text` as a file name: every character but letters, digits, '-', '_' and '.' becomes '_'."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


# -- what a run shows and loads ---------------------------------------------------------------------


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "it", leave: bool = False):
    """A tqdm bar over `total` units (a no-op when not `enabled`); use it as a context manager."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=leave)


class Engines:
    """The heavy engines of a run, each loaded at most once and only when a record needs it: TTS
    engines by name, front-ends by (checkpoint, device) with their sampling from `settings`."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.tts_engines: dict = {}
        self.frontends: dict[tuple[str, str], tuple] = {}

    def tts(self, name: str):
        """The TTS engine `name` (`kamevoice.tts.get_engine`)."""
        if name not in self.tts_engines:
            from kamevoice.tts import get_engine

            self.tts_engines[name] = get_engine(name)
        return self.tts_engines[name]

    def frontend(self, checkpoint: str, device: str) -> tuple:
        """`(frontend, sampling)`: the front-end at `checkpoint` on `device`, and its sampling options
        (the settings over the checkpoint's own generation config)."""
        if (checkpoint, device) not in self.frontends:
            from kamevoice.startup import load_frontend

            fs = self.settings.frontend.model_copy(update={"checkpoint": checkpoint, "device": device})
            self.frontends[checkpoint, device] = load_frontend(
                self.settings.model_copy(update={"frontend": fs})
            )
        return self.frontends[checkpoint, device]
