"""Media helpers: probing files and repairing partial files after a crash."""

from cdnrec.media.probe import MediaInfo, probe
from cdnrec.media.repair import find_partials, repair

__all__ = ["MediaInfo", "find_partials", "probe", "repair"]
