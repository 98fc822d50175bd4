"""Pull sources: one small interface, chosen from a registry by URL scheme and extension."""

from cdnrec.engine.sources.base import AvPull, Pull, Source, SourceError
from cdnrec.engine.sources.registry import open_source, probe_live, source_for, sources

__all__ = [
    "AvPull",
    "Pull",
    "Source",
    "SourceError",
    "open_source",
    "probe_live",
    "source_for",
    "sources",
]
