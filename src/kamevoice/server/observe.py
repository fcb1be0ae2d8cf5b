"""Prometheus metrics of the server: sessions, the engine's frame loop, and what session logs report.

Names carry the `kamevoice_` namespace:
`sessions_active`, `sessions_started_total`, `sessions_ended_total{reason}` (an `EndCause`),
`sessions_rejected_total{why}` (busy, auth, origin), `engine_steps_total`,
`engine_overruns_total`, `engine_underruns_total`, `engine_step_seconds`
(histogram), `audio_frames_in_total` / `audio_frames_out_total` (80 ms frames from and to clients),
`text_pieces_total`, `oracle_pieces_total`, `stt_lag_seconds{final}`,
`stt_errors_total`, `barge_ins_total` (a caller spoke over the model's queued speech), plus the
LLM metrics of `kamevoice.backend.observe`.
"""

from __future__ import annotations

from prometheus_client import Gauge

from kamevoice.backend.observe import LLMMetrics
from kamevoice.runtime.engine import Engine
from kamevoice.runtime.events import Event, EventLog
from kamevoice.runtime.messages import EndCause, EventKind
from kamevoice.runtime.metrics import Metrics

# Step-time buckets (seconds): a small model steps in a few ms, the 80 ms budget is the line that matters.
STEP_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.12, 0.16, 0.25, 0.5, 1.0)


class ServerMetrics:
    """Server-wide metrics in one `Metrics` registry."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.active = Gauge(
            "sessions_active",
            "conversations now open",
            namespace=metrics.namespace,
            registry=metrics.registry,
        )
        self.started = metrics.counter("sessions_started", "conversations that got an engine slot")
        self.ended = metrics.counter("sessions_ended", "conversations that ended, by reason", ["reason"])
        self.rejected = metrics.counter("sessions_rejected", "connections refused, by why", ["why"])
        self.steps = metrics.counter("engine_steps", "frame-loop steps")
        self.overruns = metrics.counter("engine_overruns", "paced steps longer than one 80 ms frame")
        self.underruns = metrics.counter("engine_underruns", "user frames missing when their step ran")
        self.catch_up = metrics.counter(
            "engine_catch_up_steps", "extra steps that drained piled-up user audio"
        )
        self.step_time = metrics.histogram(
            "engine_step_seconds", "duration of one batch step", buckets=STEP_BUCKETS
        )
        self.frames_in = metrics.counter("audio_frames_in", "80 ms frames of user audio received")
        self.frames_out = metrics.counter("audio_frames_out", "80 ms frames of model audio sent to clients")
        self.text = metrics.counter("text_pieces", "inner-monologue pieces produced by the front-end")
        self.oracle = metrics.counter("oracle_pieces", "oracle ids that entered the front-end")
        self.stt_lag = metrics.histogram("stt_lag_seconds", "STT hypothesis lag behind the audio", ["final"])
        self.stt_errors = metrics.counter("stt_errors", "STT streams that failed")
        self.barge_ins = metrics.counter("barge_ins", "callers who spoke over the model's queued speech")
        self.llm = LLMMetrics(metrics)
        gauge = dict(namespace=metrics.namespace, registry=metrics.registry)
        self.capacity_slots = Gauge("capacity_slots", "conversation slots of this server", **gauge)
        self.load = Gauge("load_conversations", "conversations admitted (slots taken)", **gauge)
        self.used = Gauge("capacity_used_ratio", "slots taken / slots (1: full)", **gauge)
        self.draining = Gauge("draining", "1 while the server drains (no new conversations)", **gauge)
        self._seen = {"steps": 0, "overruns": 0, "underruns": 0, "catch_up_steps": 0}

    def attach(self, log: EventLog) -> None:
        """Feed a session's events into the metrics."""
        log.subscribe(self.observe)
        self.llm.attach(log)

    def observe(self, event: Event) -> None:
        kind = event["kind"]
        if kind == EventKind.FRONTEND_TEXT:
            self.text.inc()
        elif kind == EventKind.ORACLE_PIECE:
            self.oracle.inc()
        elif kind in (EventKind.STT_PARTIAL, EventKind.STT_FINAL):
            self.stt_lag.labels(str(kind == EventKind.STT_FINAL).lower()).observe(event.get("lag_s", 0.0))
        elif kind in (EventKind.STT_ERROR, EventKind.STT_UNAVAILABLE):
            self.stt_errors.inc()
        elif kind == EventKind.CALL_BARGE_IN:
            self.barge_ins.inc()
        elif kind == EventKind.SESSION_END:
            self.ended.labels(str(event.get("cause") or EndCause.INTERNAL)).inc()

    def capacity(self, slots: int, taken: int, draining: bool) -> None:
        """Set the capacity gauges (a load balancer or autoscaler reads them)."""
        self.capacity_slots.set(slots)
        self.load.set(taken)
        self.used.set(taken / slots if slots else 1.0)
        self.draining.set(1 if draining else 0)

    def poll_engine(self, engine: Engine) -> None:
        """Carry the engine thread's counters and new step times over (call it often, on the loop)."""
        stats = engine.stats
        steps = stats.steps
        new = steps - self._seen["steps"]
        if new > 0:
            recent = list(stats.step_ms)[-new:]  # the deque holds far more than one poll interval of steps
            for ms in recent:
                self.step_time.observe(ms / 1e3)
            self.steps.inc(new)
        for name, counter in (
            ("overruns", self.overruns),
            ("underruns", self.underruns),
            ("catch_up_steps", self.catch_up),
        ):
            value = getattr(stats, name)
            if value > self._seen[name]:
                counter.inc(value - self._seen[name])
            self._seen[name] = value
        self._seen["steps"] = steps
