"""Services that run beside the live runner in one process: the review center and the dispatcher.

`citypatrol run` on one machine is the whole product: cameras → cases → review center and
dispatch. Each service is a thread over the runner's store and stops with the runner.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from citypatrol.pipeline.config.models import Config
from citypatrol.pipeline.store.case_store import Store

log = logging.getLogger("citypatrol.live")


@dataclass
class Services:
    threads: list[threading.Thread] = field(default_factory=list)
    stoppers: list = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def stop(self, timeout_s: float = 10.0) -> None:
        for stopper in self.stoppers:
            stopper()
        for t in self.threads:
            t.join(timeout_s)


def start_services(config: Config, store: Store, stop: threading.Event, *, serve: bool, dispatch: bool) -> Services:
    services = Services()
    if serve:
        _start_api(config, store, services)
    if dispatch and config.dispatch.enabled:
        _start_dispatcher(config, store, stop, services)
    return services


def _start_api(config: Config, store: Store, services: Services) -> None:
    import uvicorn

    from citypatrol.api.app import create_app, proxy_options
    from citypatrol.api.health import StatusFileHealth

    app = create_app(config, store, config.storage.evidence_dir, health=StatusFileHealth(config.live.status_file))
    server = uvicorn.Server(uvicorn.Config(app, host=config.api.host, port=config.api.port, log_level="warning",
                                           server_header=False, timeout_graceful_shutdown=3, **proxy_options(config)))
    thread = threading.Thread(target=server.run, name="review-center", daemon=True)
    thread.start()
    services.threads.append(thread)
    services.stoppers.append(lambda: setattr(server, "should_exit", True))
    services.urls.append(f"review center http://{config.api.host}:{config.api.port}/")


def _start_dispatcher(config: Config, store: Store, stop: threading.Event, services: Services) -> None:
    from citypatrol.pipeline.dispatch.dispatcher import Dispatcher, make_adapter

    dispatcher = Dispatcher(store, config, make_adapter(config), evidence_dir=config.storage.evidence_dir)

    def loop() -> None:
        try:
            dispatcher.run(stop)
        except Exception:  # the runner goes on; the outbox keeps the messages for the next start
            log.exception("dispatcher stopped")
        finally:
            dispatcher.close()

    thread = threading.Thread(target=loop, name="dispatcher", daemon=True)
    thread.start()
    services.threads.append(thread)
    services.urls.append(f"dispatcher → {config.dispatch.adapter}")
