"""Fixtures of the storage contract suite."""
