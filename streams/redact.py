"""Keep camera credentials out of logs and error messages.

RTSP URLs carry passwords (`rtsp://admin:pw@host/…`, or `?user=admin&password=pw` on some
cameras), and FFmpeg puts the URL it failed on into its exception text. Everything the streams
package logs or raises goes through `redact_url` / `redact_text` first.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# Query parameters that carry secrets on common cameras and gateways.
_SECRET_KEYS = r"(?:password|passwd|pwd|pass|token|access_token|auth|key|secret|signature|sign)"
_QUERY_SECRET = re.compile(rf"(?i)([?&;]{_SECRET_KEYS}=)[^&;#\s'\"]*")
# The user info ends at the last '@' before the path: passwords may contain '@' unescaped.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#\s]*)@")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL with its user info and secret query values replaced by `***`.

    `rtsp://admin:pw@10.0.0.5:554/ch1?token=x` → `rtsp://***@10.0.0.5:554/ch1?token=***`.
    Anything that is not a URL (a file path) comes back unchanged.
    """
    m = _USERINFO.match(url)
    out = f"{m.group(1)}{MASK}@{url[m.end():]}" if m else url
    return _QUERY_SECRET.sub(lambda q: q.group(1) + MASK, out)


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret strings inside a URL (password, user, secret query values), raw and unquoted."""
    found: list[str] = []
    m = _USERINFO.match(url)
    if m:
        user, _, password = m.group(2).partition(":")
        found += [user, password]
    found += [q.group(0).split("=", 1)[1] for q in _QUERY_SECRET.finditer(url)]
    out: list[str] = []
    for s in found:
        for v in (s, unquote(s)):
            if len(v) >= 3 and v not in out:  # too short a secret would blank out ordinary words
                out.append(v)
    return tuple(out)


def redact_text(text: str, url: str | None = None) -> str:
    """`text` with every URL in it redacted, and the secrets of `url` masked wherever they appear."""
    out = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    if url:
        for secret in sorted(url_secrets(url), key=len, reverse=True):
            out = out.replace(secret, MASK)
    return out
