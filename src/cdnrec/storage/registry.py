"""The storage targets of a process, by name: `local` plus every declared S3 bucket."""

from __future__ import annotations

from cdnrec.config import Settings
from cdnrec.storage.base import Storage
from cdnrec.storage.local import LocalStorage
from cdnrec.storage.s3 import S3Storage


class Storages:
    """Storage targets by name; `local` is also the staging folder of every target."""

    def __init__(self, settings: Settings) -> None:
        public_url = settings.server.public_url
        self.local = LocalStorage(settings.storage_root(), public_url)
        self._targets: dict[str, Storage] = {"local": self.local}
        for name, s3 in settings.storage.items():
            self._targets[name] = S3Storage(name, s3, self.local, public_url)

    def get(self, name: str) -> Storage:
        """The target called `name` (files recorded under a since-removed name fall back to local)."""
        return self._targets.get(name, self.local)

    def names(self) -> list[str]:
        """Every target's name."""
        return list(self._targets)
