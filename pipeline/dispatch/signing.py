"""HMAC-SHA256 signing of messages between citypatrol and the dispatch system, both directions.

The signature covers the timestamp and the exact body bytes:

    X-Citypatrol-Timestamp: 1767225600                      (Unix seconds)
    X-Citypatrol-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>." + body)>

so a captured message cannot be re-dated, and a receiver refuses timestamps outside its window
(replays inside the window are caught by the idempotency key or callback id). Pure: the clock is
passed in. Keys are never put into messages, logs or errors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Citypatrol-Timestamp"
SIGNATURE_HEADER = "X-Citypatrol-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CASE_HEADER = "X-Citypatrol-Case-Id"
KIND_HEADER = "X-Citypatrol-Kind"
SCHEME = "sha256="


class SignatureError(ValueError):
    """A message whose signature or timestamp does not check out; the message says which, never the key."""


def signature(key: str | bytes, timestamp: int, body: bytes) -> str:
    """The header value: 'sha256=' + hex HMAC over '<timestamp>.' + body."""
    k = key.encode() if isinstance(key, str) else key
    mac = hmac.new(k, f"{int(timestamp)}.".encode() + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def signed_headers(key: str | bytes, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(int(timestamp)), SIGNATURE_HEADER: signature(key, timestamp, body)}


def verify(key: str | bytes, headers: Mapping[str, str], body: bytes, *, now: float, window_s: float) -> int:
    """Check a signed message; returns its timestamp or raises SignatureError.

    `headers` is looked up case-insensitively. The signature is checked first (constant-time), so
    an unsigned caller learns nothing else; then the timestamp must be within ±`window_s` of `now`.
    """
    if not key:
        raise SignatureError("no key configured to check signatures with")
    lower = {k.lower(): v for k, v in headers.items()}
    ts_text = lower.get(TIMESTAMP_HEADER.lower(), "").strip()
    sig = lower.get(SIGNATURE_HEADER.lower(), "").strip()
    if not ts_text or not sig:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        timestamp = int(ts_text)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not Unix seconds") from None
    if not hmac.compare_digest(signature(key, timestamp, body), sig):
        raise SignatureError("signature does not match")
    skew = now - timestamp
    if abs(skew) > window_s:
        raise SignatureError(f"timestamp is {skew:+.0f} s from now, outside the ±{window_s:.0f} s window")
    return timestamp
