"""Merge jobs: claimed from the store, merged in a worker thread, stored, announced by callback."""

from cdnrec.merging.runner import JobRunner

__all__ = ["JobRunner"]
