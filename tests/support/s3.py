"""A real S3-compatible server on loopback (moto's server mode), and a client for it."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.support.service import free_port

ACCESS_KEY = "cdnrec-test"
SECRET_KEY = "cdnrec-test-secret"


class S3Server:
    """moto serving S3 over HTTP on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        """The endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        """Start serving."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def settings(self, bucket: str, **extra: Any) -> dict[str, Any]:
        """A `[storage.NAME]` table for this server."""
        return {
            "type": "s3",
            "endpoint_url": self.endpoint,
            "bucket": bucket,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            **extra,
        }
