"""Zones drawn in the review center reach the cameras that are running.

The review center stores each camera's zones as numbered versions (version 0 is the config
file's). The live runner and distributed workers ask for the newest saved version of every
camera they run at start and every `live.zones_poll_s` seconds; a camera whose zones changed gets a new `Camera` with those zones,
which the analyzer and the case recorder take from the next frame on. The tracker keeps its
tracks, so a car already standing for its dwell in a newly drawn no-parking zone becomes a case at
once. A saved version that no longer validates is logged and skipped (the zones in use stay);
with the database away the zones in use stay too (said once, and once again when it is back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.engine import Engine

from citypatrol.pipeline.config.models import Camera, Config
from citypatrol.pipeline.store.review import ReviewStore

log = logging.getLogger("citypatrol.live.zones")


class SavedZones:
    """The newest zone versions saved for the running cameras, fetched on a timer."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self._review = ReviewStore(engine, config.codes)
        self._poll_s = config.live.zones_poll_s
        self._applied: dict[str, int] = {}  # camera → version in use; 0 (or absent) = the config's zones
        self._next = 0.0
        self._unreadable = False

    def due(self) -> bool:
        return self._poll_s > 0 and time.monotonic() >= self._next

    def changed(self, cameras: Sequence[Camera]) -> list[Camera]:
        """Those of `cameras` whose saved zones differ from the version in use, with the new zones."""
        self._next = time.monotonic() + self._poll_s
        out = []
        for cam in cameras:
            try:
                saved = self._review.zones(cam.id)
            except Exception as exc:  # the database away: keep every camera's zones as they are
                if not self._unreadable:
                    log.warning("saved zones cannot be read (%s); the zones in use stay", type(exc).__name__)
                self._unreadable = True
                return out
            if self._unreadable:
                log.info("saved zones readable again")
                self._unreadable = False
            if saved is None or saved.version == self._applied.get(cam.id, 0):
                continue
            self._applied[cam.id] = saved.version
            try:
                updated = Camera.model_validate({**cam.model_dump(), "zones": saved.zones})
            except ValidationError as exc:
                log.error("camera %s: saved zones version %d are not valid, the zones in use stay: %s",
                          cam.id, saved.version, exc.errors()[0].get("msg", exc))
                continue
            log.info("camera %s: zones version %d saved by %s (%d zone(s)) in use", cam.id, saved.version,
                     saved.created_by, len(updated.zones))
            out.append(updated)
        return out

    def apply(self, cameras: Sequence[Camera]) -> list[Camera]:
        """`cameras` (as configured) with the newest saved zones in place of the config's."""
        for cam in cameras:
            self._applied.pop(cam.id, None)
        newer = {c.id: c for c in self.changed(cameras)}
        return [newer.get(c.id, c) for c in cameras]
