"""Prometheus endpoints of one `citypatrol worker` or `citypatrol casekeeper` process (`--metrics-port`).

`cluster exporter` says what the deployment does as a whole; these say what one process does, for
dashboards per host and for a liveness probe (the endpoint answers while the process runs). Read
at each scrape from the process's own counters; cameras are labelled by id only.

Worker: citypatrol_worker_frames_analysed_total, …_messages_published_total,
  …_messages_dropped_total, …_messages_waiting, …_segments_total, …_errors_total,
  …_detector_calls_total, …_detector_seconds_total, …_cameras_held, …_cameras_lost_total;
  per held camera (label `camera`): citypatrol_worker_camera_up, …_camera_frames_analysed_total,
  …_camera_reconnects_total, …_camera_decode_errors_total.
Casekeeper: citypatrol_casekeeper_messages_applied_total, …_messages_skipped_total,
  …_changes_total, …_dead_letters_total, …_segments_total, …_shards_held.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citypatrol.streams.source import SourceState

if TYPE_CHECKING:
    from citypatrol.pipeline.distributed.casekeeper import Casekeeper
    from citypatrol.pipeline.distributed.worker import Worker


class WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self._w = worker

    def collect(self) -> Iterator[Metric]:
        w = self._w
        link = getattr(w, "link", None)  # set once the worker runs
        link_stats = link.stats if link is not None else None
        info = GaugeMetricFamily("citypatrol_worker_info", "This worker's id.", labels=["worker"])
        info.add_metric([w.worker_id], 1.0)
        yield info
        yield CounterMetricFamily("citypatrol_worker_frames_analysed", "Frames analysed (cameras and footage segments).", value=w.frames_analysed)
        yield CounterMetricFamily("citypatrol_worker_segments", "Footage segments finished.", value=w.segments)
        yield CounterMetricFamily("citypatrol_worker_errors", "Detector batches or frames that failed.", value=w.errors)
        yield CounterMetricFamily("citypatrol_worker_detector_calls", "Detector calls.", value=w.detect_calls)
        yield CounterMetricFamily("citypatrol_worker_detector_seconds", "Seconds spent in detector calls.", value=w.detect_seconds)
        yield CounterMetricFamily("citypatrol_worker_messages_published", "Event messages added to the shard streams.",
                                  value=link_stats.published if link_stats else 0)  # fmt: skip
        yield CounterMetricFamily("citypatrol_worker_messages_dropped", "Frame messages dropped while Redis was away and the outbox full.",
                                  value=link_stats.dropped if link_stats else 0)  # fmt: skip
        yield CounterMetricFamily("citypatrol_worker_cameras_lost", "Cameras found held by another worker (lease lost).",
                                  value=link_stats.lost if link_stats else 0)  # fmt: skip
        yield GaugeMetricFamily("citypatrol_worker_messages_waiting", "Messages not yet sent to Redis.", value=link.waiting if link else 0)
        feeds = w.camera_feeds()
        yield GaugeMetricFamily("citypatrol_worker_cameras_held", "Cameras this worker holds.", value=len(feeds))
        families = {
            "up": GaugeMetricFamily("citypatrol_worker_camera_up", "1 while the camera delivers frames.", labels=["camera"]),
            "frames": CounterMetricFamily("citypatrol_worker_camera_frames_analysed", "Frames of the camera taken for analysis.", labels=["camera"]),
            "reconnects": CounterMetricFamily("citypatrol_worker_camera_reconnects", "Connection attempts after the first.", labels=["camera"]),
            "errors": CounterMetricFamily("citypatrol_worker_camera_decode_errors", "Connections that ended in an error.", labels=["camera"]),
        }
        for camera_id, feed in feeds:
            st = feed.stats
            cam = [camera_id]
            families["up"].add_metric(cam, 1.0 if st.state is SourceState.running else 0.0)
            families["frames"].add_metric(cam, st.frames_analysed)
            families["reconnects"].add_metric(cam, st.reconnects)
            families["errors"].add_metric(cam, st.decode_errors)
        yield from families.values()


class CasekeeperCollector(Collector):
    def __init__(self, keeper: Casekeeper) -> None:
        self._k = keeper

    def collect(self) -> Iterator[Metric]:
        k = self._k
        s = k.stats
        info = GaugeMetricFamily("citypatrol_casekeeper_info", "This casekeeper's id.", labels=["casekeeper"])
        info.add_metric([k.id], 1.0)
        yield info
        yield CounterMetricFamily("citypatrol_casekeeper_messages_applied", "Messages whose case changes were written.", value=s.applied)
        yield CounterMetricFamily("citypatrol_casekeeper_messages_skipped", "Messages already applied (re-delivered or replayed).", value=s.skipped)
        yield CounterMetricFamily("citypatrol_casekeeper_changes", "Case changes written.", value=s.changes)
        yield CounterMetricFamily("citypatrol_casekeeper_dead_letters", "Messages set aside as dead letters.", value=s.dead)
        yield CounterMetricFamily("citypatrol_casekeeper_segments", "Footage segments applied.", value=s.segments)
        yield GaugeMetricFamily("citypatrol_casekeeper_shards_held", "Event shards this casekeeper holds.", value=len(k.shards))
