"""FLV tags without FFmpeg: AMF0 values, tag parsing and tag-level file writing."""
