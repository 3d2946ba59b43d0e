"""What every request handler of the review center shares: config, stores, evidence dir, limiter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

from citypatrol.api.ratelimit import LoginLimiter
from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.store.case_store import Store
from citypatrol.pipeline.store.review import ReviewStore
from citypatrol.pipeline.store.users import UserStore

#: camera id -> health dict (status, fps, last frame time …) or None when not known yet.
HealthProvider = Callable[[str], dict[str, Any] | None]


@dataclass
class AppState:
    config: Config
    store: Store
    review: ReviewStore
    users: UserStore
    evidence_dir: Path
    limiter: LoginLimiter
    health: HealthProvider | None = None
    live_poll_s: float = 1.0
    events_recheck_s: float = 15.0  # a live stream re-checks its sign-in this often
    stream_max_s: float = 600.0  # an SSE connection ends after this; the browser reconnects with Last-Event-ID
    hash_cache: dict[int, tuple[float, int, str]] = field(default_factory=dict)  # evidence id -> (mtime, size, sha256)


def app_state(request: Request) -> AppState:
    return request.app.state.cp
