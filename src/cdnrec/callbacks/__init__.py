"""Callbacks: building, signing, storing and delivering `record` (and later `compose`) callbacks."""

from cdnrec.callbacks.payloads import extra_params, record_payload
from cdnrec.callbacks.publisher import Publisher
from cdnrec.callbacks.sender import CallbackSender
from cdnrec.callbacks.signing import callback_signature, signed

__all__ = [
    "CallbackSender",
    "Publisher",
    "callback_signature",
    "extra_params",
    "record_payload",
    "signed",
]
