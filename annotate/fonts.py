"""Finding a font that can draw Chinese, at run time.

Evidence labels and report plots carry Chinese category names; OpenCV's Hershey fonts and
matplotlib's default DejaVu draw them as boxes. We ask fontconfig for a font covering zh
(Debian: fonts-wqy-microhei), then try well-known paths. With none, callers fall back to
English-only text and we warn once, naming the package to install.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

# Tried in order when fontconfig is missing or finds nothing.
_KNOWN = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
ENV_VAR = "CITYPATROL_CJK_FONT"


@functools.lru_cache(maxsize=1)
def cjk_font_path() -> Path | None:
    """Path of a font file that draws Chinese, or None (warned once).

    `CITYPATROL_CJK_FONT` overrides the search; set it to an empty string to force the
    English-only fallback.
    """
    override = os.environ.get(ENV_VAR)
    if override is not None:
        if override and Path(override).is_file():
            return Path(override)
        log.warning("%s=%r is not a font file; evidence labels will be English only", ENV_VAR, override)
        return None
    for candidate in _from_fontconfig() + [Path(p) for p in _KNOWN]:
        if candidate.is_file():
            return candidate
    log.warning(
        "no font with Chinese glyphs found (fc-list :lang=zh is empty); evidence labels and report "
        "plots will be English only. Install fonts-wqy-microhei (make system-deps) or set %s.",
        ENV_VAR,
    )
    return None


def _from_fontconfig() -> list[Path]:
    exe = shutil.which("fc-list")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, ":lang=zh", "file", "style"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    regular, other = [], []
    for line in out.splitlines():
        path, _, style = line.partition(":")
        path = path.strip()
        if not path.lower().endswith((".ttf", ".ttc", ".otf")):
            continue
        # Prefer a proportional regular face: "Mono" faces are wide and hard to read in labels.
        (regular if "regular" in style.lower() and "mono" not in path.lower() else other).append(Path(path))
    return sorted(set(regular)) + sorted(set(other) - set(regular))
