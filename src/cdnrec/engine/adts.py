"""AAC in ADTS framing (from MPEG-TS/HLS/SRT sources) turned into raw AAC plus its config.

MP4 and FLV need raw AAC frames and an AudioSpecificConfig; fragmented MP4 in particular does
not insert FFmpeg's ``aac_adtstoasc`` filter by itself. The recorder therefore converts ADTS
once, before every writer, and hands the config to the writers as the stream's extradata.
"""

from __future__ import annotations

from typing import Any

import av

_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def needs_conversion(stream: Any) -> bool:
    """Whether ``stream`` is AAC without an AudioSpecificConfig (so framed as ADTS)."""
    cc = stream.codec_context
    return bool(cc.codec.canonical_name == "aac" and not cc.extradata)


def config_from_adts(header: bytes) -> bytes | None:
    """The 2-byte AudioSpecificConfig described by an ADTS header, or None if not ADTS."""
    if len(header) < 7 or header[0] != 0xFF or (header[1] & 0xF0) != 0xF0:
        return None
    object_type = ((header[2] >> 6) & 3) + 1
    rate_index = (header[2] >> 2) & 0xF
    channels = ((header[2] & 1) << 2) | (header[3] >> 6)
    return ((object_type << 11) | (rate_index << 7) | (channels << 3)).to_bytes(2, "big")


def config_from_stream(stream: Any) -> bytes:
    """An AAC-LC AudioSpecificConfig from a stream's sample rate and channels (fallback)."""
    cc = stream.codec_context
    rate_index = _RATES.index(cc.sample_rate) if cc.sample_rate in _RATES else 4
    channels = min(int(cc.channels or 2), 7)
    return ((2 << 11) | (rate_index << 7) | (channels << 3)).to_bytes(2, "big")


class AdtsToRaw:
    """Strips ADTS headers from the packets of one audio stream (FFmpeg's aac_adtstoasc)."""

    def __init__(self, stream: Any) -> None:
        self.bsf = av.BitStreamFilterContext("aac_adtstoasc", stream)
        self.config: bytes | None = None

    def observe(self, pkt: Any) -> None:
        """Learn the config from a packet's ADTS header (before recording starts)."""
        if self.config is None:
            self.config = config_from_adts(bytes(memoryview(pkt)[:7]))

    def filter(self, pkt: Any) -> Any:
        """The packet as raw AAC, or None if the filter kept it."""
        if self.config is None:
            self.observe(pkt)
        out = self.bsf.filter(pkt)
        return out[0] if out else None
