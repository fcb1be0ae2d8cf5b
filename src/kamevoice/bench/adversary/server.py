"""A kamevoice server in a process of its own, as an attacker meets it: started, watched, stopped.

`ServerProcess` runs `kamevoice serve --port 0` (the embedded KAME-tiny unless the
environment says otherwise) with extra environment settings, waits for the line that
names its address, and reads what an operator would watch from `/proc`: the resident
memory of the server (and its STT children) and the child processes themselves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

# The line `kamevoice serve` prints once it listens.
_LISTENING = re.compile(r"serving on http://([^/\s]+):(\d+)/")
# How long a server may take to load its model and knowledge base and listen (seconds).
START_TIMEOUT_S = 120.0
# How long it may take to stop after SIGTERM before it is killed (seconds).
STOP_TIMEOUT_S = 15.0


def rss_mb(pid: int) -> float:
    """Resident memory of one process (MB), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The direct child processes of `pid`, oldest first."""
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        return []
    return sorted(set(kids), key=_start_time)


def _start_time(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


class ServerProcess:
    """`kamevoice serve` in a child process (use as a context manager)."""

    def __init__(self, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()):
        self.env = {**os.environ, **(env or {})}
        self.args = args
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []

    def __enter__(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "kamevoice.cli", "serve", "--port", "0", *self.args]
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            match = _LISTENING.search(line)
            if match:
                self.url = f"http://{match.group(1)}:{match.group(2)}"
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.output[-30:]))
        # Keep draining its output, or a chatty server would block on a full pipe.
        threading.Thread(target=self._drain, daemon=True, name="server-output").start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self, with_children: bool = False) -> float:
        """Resident memory of the server (and of its STT children)."""
        total = rss_mb(self.pid)
        if with_children:
            total += sum(rss_mb(c) for c in children(self.pid))
        return total

    def children(self) -> list[int]:
        return children(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            del self.output[:-500]
