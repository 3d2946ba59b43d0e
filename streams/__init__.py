"""citypatrol.streams: sources of frames (files, folders, stills sequences, RTSP) at the analysis cadence.

Start with `open_source(camera_id, source, cadence_s)`; every source yields `Frame`s from
`frames()`, exposes `stats`, and closes as a context manager.
"""

from citypatrol.streams.frame import Frame
from citypatrol.streams.live import LiveOptions, LiveSource
from citypatrol.streams.media import iter_media_files
from citypatrol.streams.open import SourceKind, open_source, source_kind
from citypatrol.streams.recorded import FileSource, RecordedSource
from citypatrol.streams.redact import redact_text, redact_url
from citypatrol.streams.source import Source, SourceError, SourceState, SourceStats
from citypatrol.streams.stills import StillsSource

__all__ = [
    "FileSource",
    "Frame",
    "LiveOptions",
    "LiveSource",
    "RecordedSource",
    "Source",
    "SourceError",
    "SourceKind",
    "SourceState",
    "SourceStats",
    "StillsSource",
    "iter_media_files",
    "open_source",
    "redact_text",
    "redact_url",
    "source_kind",
]
