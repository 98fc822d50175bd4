"""cdnrec: a self-hosted live-stream recording service speaking ZEGOCLOUD's CDN-recording API."""

__version__ = "0.1.0"
