"""cdnrec: a self-hosted live-stream recording service speaking ZEGOCLOUD's CDN-recording API."""

from cdnrec.native import install_switch

__version__ = "0.1.0"

install_switch()
