"""What every dispatch adapter shares: the delivery it is handed and the outcome it reports.

An adapter (HTTP, MQTT, JSONL file) takes one `Delivery` — the exact body bytes, the idempotency
key and the signing timestamp — and says whether it arrived (`ok`), and if not, whether trying
again can help (`retry`). It never raises for a failed delivery and never logs the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from citypatrol.pipeline.dispatch.signing import CASE_HEADER, IDEMPOTENCY_HEADER, KIND_HEADER, signed_headers


@dataclass(frozen=True, slots=True)
class Delivery:
    case_id: str
    camera_id: str
    kind: str  # case.submit | case.reopen | case.verified
    idempotency_key: str
    body: bytes  # UTF-8 JSON; exactly what is signed
    timestamp: int  # Unix seconds, signed with the body
    attempt: int  # 1 for the first try

    def headers(self, secret: str) -> dict[str, str]:
        """Idempotency key, case id, kind and — when there is a key — timestamp and signature."""
        h = {IDEMPOTENCY_HEADER: self.idempotency_key, CASE_HEADER: self.case_id, KIND_HEADER: self.kind}
        if secret:
            h.update(signed_headers(secret, self.timestamp, self.body))
        return h


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    retry: bool = True  # for a failure: may a later attempt succeed?
    detail: str = ""  # one line for the log and the outbox row's last_error (no secrets)
    duplicate: bool = False  # delivered before: the receiver already had this idempotency key

    @classmethod
    def delivered(cls, detail: str = "", *, duplicate: bool = False) -> "Outcome":
        return cls(True, False, detail, duplicate)

    @classmethod
    def failed(cls, detail: str, *, retry: bool = True) -> "Outcome":
        return cls(False, retry, detail)


class Adapter(Protocol):
    name: str

    def send(self, delivery: Delivery) -> Outcome: ...

    def close(self) -> None: ...
