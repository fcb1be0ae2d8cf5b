"""Run one data stage over a stream of items: worker processes, resume, progress bar, summary.

Every stage (`dialogues`, `synth`, `oracles`) is a stream of `Item`s (or
`BadInput`s for inputs that could not even be read) and a picklable `work`
function turning one item into an `Outcome`. This module does the rest:

- items already finished (per the stage's `done` check) are skipped, so a
  rerun after an interruption redoes only what is missing;
- `workers > 1` spreads items over processes, with a bounded number in flight
  so the input is streamed, never loaded whole;
- a failure (exception in `work`, bad input, duplicate id) is recorded with its
  reason and the run goes on;
- a `Summary` adds up the outcomes' figures and is written as JSON.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kamevoice.data.formats import atomic_write_json

log = logging.getLogger(__name__)

# Items submitted per worker before waiting for results: keeps workers busy while bounding memory.
IN_FLIGHT_PER_WORKER = 4
# Failures listed one by one in the printed summary (all of them go to the JSON file).
FAILURES_PRINTED = 20


@dataclass(frozen=True)
class Item:
    """One unit of work: an id unique within the stage, and what `work` needs."""

    id: str
    payload: Any


@dataclass(frozen=True)
class BadInput:
    """An input that could not be turned into an item (unreadable line, missing file)."""

    locator: str
    reason: str


@dataclass
class Outcome:
    """What `work` reports for one item: figures to add up, or the reason it failed."""

    id: str
    totals: dict[str, float] = field(default_factory=dict)
    result: Any = None
    error: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """How a stage runs."""

    workers: int = 1
    progress: bool = True
    # Stop after this many new items (None: all); for trials and tests.
    limit: int | None = None


@dataclass
class Summary:
    """Totals of one stage run; printed at the end and written as JSON."""

    stage: str
    done: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    totals: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        """Count one finished or failed item."""
        if outcome.error is not None:
            self.failures.append({"id": outcome.id, "reason": outcome.error})
        else:
            self.done += 1
            self.totals.update(outcome.totals)

    def fail(self, locator: str, reason: str) -> None:
        """Record an input that never became an item."""
        self.failures.append({"id": locator, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view of the summary."""
        return {
            "stage": self.stage,
            "items_done": self.done,
            "items_skipped_already_done": self.skipped,
            "items_failed": len(self.failures),
            "seconds": round(self.seconds, 3),
            "totals": {k: round(v, 6) if isinstance(v, float) else v for k, v in sorted(self.totals.items())},
            "failures": self.failures,
        }

    def write(self, path: str | Path) -> None:
        """Write the summary as JSON (atomically)."""
        atomic_write_json(path, self.to_dict())

    def render(self) -> str:
        """Human-readable summary."""
        lines = [
            f"{self.stage}: {self.done} done, {self.skipped} already done, {len(self.failures)} failed"
            f" in {self.seconds:.1f} s"
        ]
        lines += [
            f"  {k}: {round(v, 3) if isinstance(v, float) else v}" for k, v in sorted(self.totals.items())
        ]
        for failure in self.failures[:FAILURES_PRINTED]:
            lines.append(f"  FAILED {failure['id']}: {failure['reason']}")
        if len(self.failures) > FAILURES_PRINTED:
            lines.append(
                f"  ... and {len(self.failures) - FAILURES_PRINTED} more failures (see the JSON summary)"
            )
        return "\n".join(lines)


def _guarded(work: Callable[[Item], Outcome], item: Item) -> Outcome:
    """Run `work`, turning an exception into a failed outcome (runs in the worker)."""
    try:
        return work(item)
    except Exception as exc:
        log.debug("item %s failed:\n%s", item.id, traceback.format_exc())
        return Outcome(item.id, error=f"{type(exc).__name__}: {exc}")


def _progress(options: RunOptions, stage: str, total: int | None):
    from tqdm import tqdm

    return tqdm(
        total=total, desc=stage, unit="item", disable=not options.progress, file=sys.stderr, leave=True
    )


def _admitted(
    stage: str,
    inputs: Iterable[Item | BadInput],
    done: Callable[[str], bool],
    options: RunOptions,
    summary: Summary,
    bar: Any,
) -> Iterable[Item]:
    """Inputs that need work: bad ones and duplicates reported, finished ones skipped, `limit` kept."""
    seen: set[str] = set()
    submitted = 0
    for entry in inputs:
        if isinstance(entry, BadInput):
            summary.fail(entry.locator, entry.reason)
            log.warning("%s: skipping %s: %s", stage, entry.locator, entry.reason)
            bar.update(1)
            continue
        if entry.id in seen:
            summary.fail(entry.id, "duplicate id in the input (first occurrence kept)")
            bar.update(1)
            continue
        seen.add(entry.id)
        if done(entry.id):
            summary.skipped += 1
            bar.update(1)
            continue
        if options.limit is not None and submitted >= options.limit:
            return
        submitted += 1
        yield entry


def _record(stage: str, outcome: Outcome, summary: Summary, bar, on_outcome) -> None:
    """One item done: handed on when it succeeded, counted, logged when it failed, shown."""
    if on_outcome is not None and outcome.error is None:
        on_outcome(outcome)
    summary.add(outcome)
    if outcome.error is not None:
        log.warning("%s: %s failed: %s", stage, outcome.id, outcome.error)
    bar.update(1)


def run_stage(
    stage: str,
    inputs: Iterable[Item | BadInput],
    work: Callable[[Item], Outcome],
    done: Callable[[str], bool],
    options: RunOptions,
    on_outcome: Callable[[Outcome], None] | None = None,
    total: int | None = None,
) -> Summary:
    """Run `work` over `inputs`, skipping finished items; returns the summary.

    `work` must be picklable when `options.workers > 1` (a module-level
    function or a `functools.partial` of one). `on_outcome` runs in this
    process for every outcome, in completion order (e.g. to append a line to
    an output file).
    """
    summary = Summary(stage)
    started = time.monotonic()
    bar = _progress(options, stage, total)

    def finish(outcome: Outcome) -> None:
        _record(stage, outcome, summary, bar, on_outcome)

    def items() -> Iterable[Item]:
        return _admitted(stage, inputs, done, options, summary, bar)

    try:
        if options.workers <= 1:
            for item in items():
                finish(_guarded(work, item))
        else:
            # spawn: workers start clean (no inherited locks, threads or C library state).
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=options.workers, mp_context=context)
            try:
                pending: set[Future] = set()
                for item in items():
                    pending.add(pool.submit(_guarded, work, item))
                    if len(pending) >= options.workers * IN_FLIGHT_PER_WORKER:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in finished:
                            finish(future.result())
                for future in pending:
                    finish(future.result())
            except BaseException:
                # Interrupted (Ctrl-C) or broken: drop queued items; finished files are already complete.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    finally:
        bar.close()
        summary.seconds = time.monotonic() - started
    return summary


def write_jsonl_line(f, obj: Any) -> None:
    """Append one JSON line and flush it, so a crash loses at most the line being written."""
    f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    f.flush()


def repair_jsonl(path: Path) -> set[str]:
    """Ids of the complete lines of an output JSONL.

    A torn last line (a crash mid-write) is cut off; an unreadable line in the
    middle is reported and left alone (its item will be made again).
    """
    ids: set[str] = set()
    if not path.exists():
        return ids
    good_end = 0
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            offset += len(raw)
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no newline")
                ids.add(str(json.loads(raw)["id"]))
                good_end = offset
            except (ValueError, KeyError, TypeError):
                log.warning("%s:%d: unreadable output line ignored", path, lineno)
    if good_end != offset:
        log.warning("%s: cutting off an incomplete tail after byte %d", path, good_end)
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return ids


async def run_stage_async(
    stage: str,
    inputs: Iterable[Item | BadInput],
    work: Callable[[Item], Any],
    done: Callable[[str], bool],
    options: RunOptions,
    concurrency: int,
    on_outcome: Callable[[Outcome], None] | None = None,
    total: int | None = None,
) -> Summary:
    """Like `run_stage`, in one process: `work` is a coroutine function, `concurrency` items at a time.

    For stages bound by network calls (an LLM simulator) rather than CPU.
    """
    import asyncio

    summary = Summary(stage)
    started = time.monotonic()
    bar = _progress(options, stage, total)
    slots = asyncio.Semaphore(max(1, concurrency))
    tasks: set[asyncio.Task] = set()

    async def guarded(item: Item) -> None:
        try:
            outcome = await work(item)
        except Exception as exc:
            log.debug("item %s failed:\n%s", item.id, traceback.format_exc())
            outcome = Outcome(item.id, error=f"{type(exc).__name__}: {exc}")
        finally:
            slots.release()
        _record(stage, outcome, summary, bar, on_outcome)

    try:
        for entry in _admitted(stage, inputs, done, options, summary, bar):
            await slots.acquire()  # bounds the items in flight: the input is streamed
            task = asyncio.create_task(guarded(entry))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        bar.close()
        summary.seconds = time.monotonic() - started
    return summary
