"""Prometheus metrics of the LLM back-end, derived from the scheduler's events."""

from __future__ import annotations

from kamevoice.runtime.events import Event, EventLog
from kamevoice.runtime.messages import EventKind
from kamevoice.runtime.metrics import Metrics


class LLMMetrics:
    """Counts and latency histograms of LLM requests; subscribe it to a session's event log.

    Metric names (with the `kamevoice_` namespace): `llm_requests_total{reason}`,
    `llm_first_token_seconds{since}` (since = "change" or "start"),
    `llm_request_seconds`, `llm_deltas_total`, `llm_cancels_total{why}`
    (why = "cancelled" or "superseded"), `llm_errors_total{kind}`,
    `oracle_unavailable_total`.
    """

    def __init__(self, metrics: Metrics):
        self.requests = metrics.counter("llm_requests", "LLM requests started", ["reason"])
        self.first_token = metrics.histogram(
            "llm_first_token_seconds",
            "time to the first text delta, from the transcript change or from the request start",
            ["since"],
        )
        self.duration = metrics.histogram("llm_request_seconds", "duration of completed LLM requests")
        self.deltas = metrics.counter("llm_deltas", "text deltas streamed by completed requests")
        self.cancels = metrics.counter("llm_cancels", "LLM requests stopped early", ["why"])
        self.errors = metrics.counter("llm_errors", "failed LLM attempts, by error kind", ["kind"])
        self.unavailable = metrics.counter("oracle_unavailable", "requests that gave up without an oracle")

    def attach(self, log: EventLog) -> LLMMetrics:
        """Subscribe to `log`; returns self."""
        log.subscribe(self.observe)
        return self

    def observe(self, event: Event) -> None:
        """Update the metrics from one event (other kinds are ignored)."""
        kind = event["kind"]
        if kind == EventKind.LLM_REQUEST:
            self.requests.labels(event["reason"]).inc()
        elif kind == EventKind.LLM_FIRST_TOKEN:
            self.first_token.labels("change").observe(max(0.0, event["from_change_s"]))
            self.first_token.labels("start").observe(event["from_start_s"])
        elif kind == EventKind.LLM_DONE:
            self.duration.observe(event["total_s"])
            self.deltas.inc(event["deltas"])
        elif kind == EventKind.LLM_CANCEL:
            self.cancels.labels("cancelled").inc()
        elif kind == EventKind.LLM_SUPERSEDED:
            self.cancels.labels("superseded").inc()
        elif kind == EventKind.LLM_ERROR:
            self.errors.labels(event["error"]).inc()
        elif kind == EventKind.ORACLE_UNAVAILABLE:
            self.unavailable.inc()
