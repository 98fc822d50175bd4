"""api/zego."""
