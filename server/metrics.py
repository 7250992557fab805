"""What the server counts, for Prometheus: every metric is defined here and nowhere else.

The run service and the sessions record into one ``Metrics``; figures owned by someone else
(the queue's depth, the warm pool's counts) are read from their owner when scraped, not
copied, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PoolStats = Callable[[], Mapping[str, Mapping[str, int]]]

# A warm run's first output takes milliseconds, a cold one a few hundred, a queued one more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class PoolCollector(Collector):
    """The warm pool's size, idle containers, hits and misses per runtime, read at scrape."""

    def __init__(self, stats: PoolStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._stats()
        size = GaugeMetricFamily(
            "execstream_pool_size", "Warm containers the pool aims to keep", labels=["language"]
        )
        idle = GaugeMetricFamily(
            "execstream_pool_idle", "Warm containers ready right now", labels=["language"]
        )
        hits = CounterMetricFamily(
            "execstream_pool_hits", "Runs that got a warm container", labels=["language"]
        )
        misses = CounterMetricFamily(
            "execstream_pool_misses", "Runs that started cold", labels=["language"]
        )
        for language, figures in sorted(stats.items()):
            size.add_metric([language], figures.get("size", 0))
            idle.add_metric([language], figures.get("idle", 0))
            hits.add_metric([language], figures.get("hits", 0))
            misses.add_metric([language], figures.get("misses", 0))
        yield from (size, idle, hits, misses)


class Metrics:
    """The server's metrics, in a registry of their own (one per running server)."""

    def __init__(
        self,
        *,
        queue_depth: Callable[[], int],
        pool_stats: PoolStats | None = None,
        finishing: Callable[[], int] | None = None,
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            "execstream_runs",
            "Runs that ended, by language and status",
            ["language", "status"],
            registry=registry,
        )
        self.run_seconds = Histogram(
            "execstream_run_duration_seconds",
            "How long programs ran (their own clock, without any wait for a slot)",
            ["language"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.first_output_seconds = Histogram(
            "execstream_first_output_seconds",
            "From asking for a run to its first output, waiting for a slot included",
            ["language"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            "execstream_queue_wait_seconds",
            "How long runs waited for a slot (0 for those that got one at once)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_refused = Counter(
            "execstream_queue_refused",
            "Runs refused because the queue was full (server_busy) or the user's was "
            "(too_many_runs)",
            ["code"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "execstream_queue_depth", "Runs waiting for a slot", registry=registry
        )
        self.queue_depth.set_function(queue_depth)
        self.sessions = Gauge(
            "execstream_sessions_open", "Open WebSocket sessions", registry=registry
        )
        self.engine_errors = Counter(
            "execstream_engine_errors",
            "Runs the engine failed to start (backend_unavailable)",
            registry=registry,
        )
        if pool_stats is not None:
            registry.register(PoolCollector(pool_stats))
        if finishing is not None:
            self.finishing = Gauge(
                "execstream_containers_finishing",
                "Containers whose run has ended, waiting to be removed at a lull in starts",
                registry=registry,
            )
            self.finishing.set_function(finishing)
