"""Whether a stream is live at its sources now, asked off the event loop."""

from __future__ import annotations

import asyncio

import av


def source_serves(url: str, timeout: float) -> bool:
    """Open `url` and read one packet; True when that works within `timeout` seconds."""
    options = {"rw_timeout": str(int(timeout * 1_000_000)), "analyzeduration": "500000"}
    try:
        with av.open(url, "r", options=options) as container:
            for packet in container.demux():
                if packet.size:
                    return True
    except (av.FFmpegError, OSError):
        return False
    return False


class SourceProbe:
    """A StreamProbe that tries each source URL of a configuration in order."""

    def __init__(self, timeout: float = 3.0) -> None:
        self._timeout = timeout

    async def is_live(self, sources: tuple[str, ...], stream_id: str) -> bool:
        """True when one of the sources serves the stream now."""
        for template in sources:
            url = template.replace("{stream_id}", stream_id)
            if await asyncio.to_thread(source_serves, url, self._timeout):
                return True
        return False
