"""A native RTMP play client: handshake, chunk streams and commands, read in batches."""
