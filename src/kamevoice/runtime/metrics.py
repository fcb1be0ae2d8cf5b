"""Prometheus metrics, held in a registry object rather than module globals.

`Metrics` wraps one `prometheus_client.CollectorRegistry`. Parts of the system
ask it for their counters and histograms by name (`counter()`,
`histogram()`): the first call creates the metric, later calls return the
same one, so any number of sessions can share one `Metrics` (the server's) or
each have their own (tests, benchmarks) without clashing registrations.

Most metrics are derived from the event log: a component emits events and an
observer subscribed to the `EventLog` turns them into counts and histograms.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets in seconds, from one 80 ms frame to a hopeless 20 s.
LATENCY_BUCKETS = (0.02, 0.05, 0.08, 0.12, 0.16, 0.25, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)

#: MIME type of `Metrics.exposition()`, for the HTTP handler that serves it.
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """A registry of named metrics, created on first use."""

    def __init__(self, namespace: str = "kamevoice", registry: CollectorRegistry | None = None):
        self.namespace = namespace
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Counter | Histogram] = {}

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """The counter `{namespace}_{name}_total` (created on first call)."""
        metric = self._get(name, Counter, documentation, labels)
        assert isinstance(metric, Counter)
        return metric

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        """The histogram `{namespace}_{name}` (created on first call)."""
        metric = self._get(name, Histogram, documentation, labels, buckets=tuple(buckets))
        assert isinstance(metric, Histogram)
        return metric

    def _get(self, name: str, cls: type, documentation: str, labels: Sequence[str], **kw: object):
        metric = self._metrics.get(name)
        if metric is None:
            metric = cls(
                name, documentation, tuple(labels), namespace=self.namespace, registry=self.registry, **kw
            )
            self._metrics[name] = metric
        elif not isinstance(metric, cls):
            raise TypeError(f"metric {name!r} already exists as a {type(metric).__name__}")
        return metric

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Current value of one sample, by its full exposition name (for tests and reports)."""
        return self.registry.get_sample_value(name, labels or {})

    def exposition(self) -> bytes:
        """All metrics in Prometheus' text format."""
        return generate_latest(self.registry)
