"""Responses that stream, named by what they carry, so the API's schema says so."""

from __future__ import annotations

from fastapi.responses import Response, StreamingResponse


class NdjsonResponse(StreamingResponse):
    """One JSON object a line (exec output, image build progress), ending with ``exit``,
    ``done`` or an ``error`` object."""

    media_type = "application/x-ndjson"


class BytesResponse(StreamingResponse):
    """A file's bytes; a folder comes as a tar stream (header ``X-Bungalow-Kind: dir``)."""

    media_type = "application/octet-stream"


class PngResponse(Response):
    """An image in PNG (a VM's screen)."""

    media_type = "image/png"
