"""`citypatrol cluster exporter`: a distributed deployment's state as Prometheus metrics.

One exporter per deployment (it only reads Redis), scraped like any other target. Each scrape
reads `read_cluster` afresh; when Redis cannot be read, `citypatrol_cluster_redis_up` is 0 and
nothing else is reported, so alerts on stale series do not fire on old values. Series carry
camera ids and shard numbers only, never a source URL.

  citypatrol_cluster_redis_up, citypatrol_cluster_workers, citypatrol_cluster_casekeepers,
  citypatrol_cluster_findings (how many things need a person: `citypatrol cluster status` says which),
  citypatrol_cluster_dead_letters, citypatrol_cluster_segments_queued;
  per camera (label `camera`): citypatrol_cluster_camera_held (1 = a worker holds it),
  citypatrol_cluster_camera_cost_cores, citypatrol_cluster_camera_analysed_age_seconds,
  citypatrol_cluster_camera_applied_behind_seconds;
  per shard (label `shard`): citypatrol_cluster_shard_held, citypatrol_cluster_shard_retained,
  citypatrol_cluster_shard_pending, citypatrol_cluster_shard_unread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citypatrol.pipeline.distributed.cluster_status import ClusterStatus

log = logging.getLogger(__name__)


class ClusterCollector(Collector):
    def __init__(self, read: Callable[[], ClusterStatus]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        try:
            st = self._read()
        except Exception as exc:  # Redis down or answering garbage: say so, keep serving
            log.warning("cannot read the cluster from Redis: %s", exc)
            yield GaugeMetricFamily("citypatrol_cluster_redis_up", "1 when the last scrape could read Redis.", value=0.0)
            return
        now = datetime.now(UTC)
        yield GaugeMetricFamily("citypatrol_cluster_redis_up", "1 when the last scrape could read Redis.", value=1.0)
        yield GaugeMetricFamily("citypatrol_cluster_workers", "Live workers.", value=len(st.workers))
        yield GaugeMetricFamily("citypatrol_cluster_casekeepers", "Live casekeepers.", value=len(st.casekeepers))
        yield GaugeMetricFamily("citypatrol_cluster_findings", "Things that need a person (see `citypatrol cluster status`).", value=len(st.findings))
        yield GaugeMetricFamily("citypatrol_cluster_dead_letters", "Messages casekeepers set aside.", value=st.dead)
        yield GaugeMetricFamily("citypatrol_cluster_segments_queued", "Footage segments not yet taken by a worker.", value=st.segments_queued)

        def per(items, label: str, key: Callable, name: str, doc: str, value: Callable) -> Metric:  # noqa: ANN001
            family = GaugeMetricFamily(name, doc, labels=[label])
            for item in items:
                v = value(item)
                if v is not None:
                    family.add_metric([str(key(item))], float(v))
            return family

        cam, shard = (lambda c: c.camera_id), (lambda s: s.shard)
        yield per(st.cameras, "camera", cam, "citypatrol_cluster_camera_held", "1 when a worker holds the camera.", lambda c: c.owner is not None)
        yield per(st.cameras, "camera", cam, "citypatrol_cluster_camera_cost_cores", "CPU cores the camera keeps busy, as its owner measured.", lambda c: c.cores)
        yield per(st.cameras, "camera", cam, "citypatrol_cluster_camera_analysed_age_seconds", "Seconds since the capture time of its last analysed frame.",
                  lambda c: max(0.0, (now - c.clock).total_seconds()) if c.clock else None)  # fmt: skip
        yield per(st.cameras, "camera", cam, "citypatrol_cluster_camera_applied_behind_seconds", "How long its newest analysed frame has waited for a casekeeper.",
                  lambda c: c.behind_s)  # fmt: skip
        yield per(st.shards, "shard", shard, "citypatrol_cluster_shard_held", "1 when a casekeeper holds the shard.", lambda s: s.owner is not None)
        yield per(st.shards, "shard", shard, "citypatrol_cluster_shard_retained", "Entries retained in the shard's event stream.", lambda s: s.length)
        yield per(st.shards, "shard", shard, "citypatrol_cluster_shard_pending", "Entries delivered to a casekeeper, not yet acknowledged.", lambda s: s.pending)
        yield per(st.shards, "shard", shard, "citypatrol_cluster_shard_unread", "Entries not yet delivered to any casekeeper.", lambda s: s.unread)
