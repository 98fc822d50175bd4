"""engine/sources."""
