"""HTTP JSON adapter: one signed POST per delivery (httpx).

Headers: Content-Type JSON, `Idempotency-Key` (the case id for a first submission),
`X-Citypatrol-Case-Id`, `X-Citypatrol-Kind`, `X-Citypatrol-Timestamp` and
`X-Citypatrol-Signature` (HMAC-SHA256 over timestamp + body, see `dispatch/signing.py`).

Answers: 2xx = delivered; 409 = the receiver already has this idempotency key = delivered (a
resend after a crash or a lost answer); 408, 425, 429, 5xx, timeouts and connection errors are
retried; any other 4xx (bad request, bad signature, unknown endpoint) cannot be fixed by retrying
and goes straight to dead-letter for a person to look at.
"""

from __future__ import annotations

import httpx

from citypatrol.pipeline.dispatch.base import Delivery, Outcome

RETRYABLE = frozenset({408, 425, 429})


class HttpAdapter:
    name = "http"

    def __init__(self, url: str, secret: str, timeout_s: float, *, client: httpx.Client | None = None) -> None:
        if not url:
            raise ValueError("dispatch.url is empty: the http adapter needs the dispatch system's endpoint")
        self.url = url
        self._secret = secret
        self._client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._where = _safe_url(url)

    def send(self, delivery: Delivery) -> Outcome:
        headers = {"Content-Type": "application/json; charset=utf-8", **delivery.headers(self._secret)}
        try:
            r = self._client.post(self.url, content=delivery.body, headers=headers)
        except httpx.TimeoutException:
            return Outcome.failed(f"no answer from {self._where} in time")
        except httpx.HTTPError as exc:
            return Outcome.failed(f"cannot reach {self._where}: {type(exc).__name__}: {exc}")
        text = " ".join(r.text.split())[:200]
        if 200 <= r.status_code < 300:
            return Outcome.delivered(f"HTTP {r.status_code}")
        if r.status_code == 409:
            return Outcome.delivered(f"HTTP 409: already received ({text})", duplicate=True)
        retry = r.status_code in RETRYABLE or r.status_code >= 500
        return Outcome.failed(f"HTTP {r.status_code} from {self._where}: {text}", retry=retry)

    def close(self) -> None:
        self._client.close()


def _safe_url(url: str) -> str:
    """The URL without user info or query (they may hold credentials)."""
    try:
        u = httpx.URL(url)
        return str(u.copy_with(userinfo=b"", query=None))
    except Exception:
        return "the dispatch endpoint"
