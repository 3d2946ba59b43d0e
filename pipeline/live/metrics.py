"""The live runner's Prometheus endpoint: `/metrics` built at each scrape from one status snapshot.

A custom collector (rather than counters bumped from many threads) reads `StatusBook.snapshot()`
so the endpoint, the status file and `citypatrol status` always show the same figures. Series are
labelled by camera id only: source URLs (which may carry credentials) never become labels.

Per camera (label `camera`):
  citypatrol_camera_frames_analysed_total, citypatrol_camera_analysed_fps,
  citypatrol_camera_lag_seconds, citypatrol_camera_last_frame_age_seconds,
  citypatrol_camera_skipped_frames_total, citypatrol_camera_reconnects_total,
  citypatrol_camera_decode_errors_total, citypatrol_camera_corrupt_packets_total,
  citypatrol_camera_cases_opened_total, citypatrol_camera_frames_withheld_total, citypatrol_camera_frames_gated_total,
  citypatrol_camera_up (1 while running),
  citypatrol_camera_state{state=…} (1 for the current state, 0 for the others).
Runner: citypatrol_live_info{state, model}, citypatrol_detector_batches_total,
  citypatrol_detector_images_total, citypatrol_detector_seconds_total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from citypatrol.pipeline.live.status import LiveStatus
from citypatrol.streams.source import SourceState

STATES = [s.value for s in SourceState]


class LiveCollector(Collector):
    def __init__(self, snapshot: Callable[[], LiveStatus]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        cams = s.cameras

        def per_camera(kind, name: str, doc: str, value: Callable) -> Metric:
            family = kind(name, doc, labels=["camera"])
            for c in cams:
                v = value(c)
                if v is not None:
                    family.add_metric([c.camera_id], float(v))
            return family

        yield per_camera(CounterMetricFamily, "citypatrol_camera_frames_analysed", "Frames of the camera analysed by the detector.", lambda c: c.frames_analysed)
        yield per_camera(GaugeMetricFamily, "citypatrol_camera_analysed_fps", "Analysed frames per second, recent average.", lambda c: c.analysed_fps)
        yield per_camera(GaugeMetricFamily, "citypatrol_camera_lag_seconds", "Wall time between the last analysed frame's capture and its analysis.", lambda c: c.lag_s)
        yield per_camera(GaugeMetricFamily, "citypatrol_camera_last_frame_age_seconds", "Seconds since the camera's last analysed frame.", lambda c: c.last_frame_age_s)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_skipped_frames", "Sampled frames replaced by a newer one before the detector took them.", lambda c: c.skips)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_reconnects", "Connection attempts after the first.", lambda c: c.reconnects)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_decode_errors", "Connections or files that ended in an error.", lambda c: c.decode_errors)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_corrupt_packets", "Packets the decoder rejected.", lambda c: c.corrupt_packets)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_cases_opened", "Cases opened on the camera since the runner started.", lambda c: c.cases_opened)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_frames_withheld", "Frames a live hook kept from the rules (camera health).", lambda c: c.withheld)
        yield per_camera(CounterMetricFamily, "citypatrol_camera_frames_gated", "Frames no model looked at: nothing had changed in the zones.", lambda c: c.gated)
        yield per_camera(GaugeMetricFamily, "citypatrol_camera_up", "1 while the camera delivers frames.", lambda c: 1 if c.state == "running" else 0)
        state = GaugeMetricFamily("citypatrol_camera_state", "The camera source's state (1 = current).", labels=["camera", "state"])
        for c in cams:
            for name in STATES:
                state.add_metric([c.camera_id, name], 1.0 if c.state == name else 0.0)
        yield state
        info = GaugeMetricFamily("citypatrol_live_info", "The runner's state and model.", labels=["state", "model"])
        info.add_metric([s.state, s.model], 1.0)
        yield info
        yield CounterMetricFamily("citypatrol_detector_batches", "Detector calls.", value=s.batches)
        yield CounterMetricFamily("citypatrol_detector_images", "Images sent to the detector.", value=s.batch_images)
        yield CounterMetricFamily("citypatrol_detector_seconds", "Seconds spent in detector calls.", value=s.detect_seconds)


def serve_metrics(host: str, port: int, snapshot: Callable[[], LiveStatus]) -> WSGIServer:
    """Start the live runner's /metrics endpoint on a daemon thread; stop it with `server.shutdown()`."""
    return serve_collector(host, port, LiveCollector(snapshot))


def serve_collector(host: str, port: int, collector: Collector) -> WSGIServer:
    """Serve one collector's metrics on http://host:port/metrics from a daemon thread.

    Raises OSError (address in use, …) with the address in the message.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}") from None
    return server
