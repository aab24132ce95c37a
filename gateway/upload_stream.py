"""Reading an upload's multipart body into a temporary file, within its size cap.

The body is parsed as it arrives (python-multipart's streaming parser), never
held whole: the `file` part goes to a temporary file chunk by chunk. Its first
`SNIFF_BYTES` are kept back until they decide the kind from the content (the
`filetype` library reads file signatures; neither the file name nor the
declared type counts), which sets the cap: the download limit of that kind
(`lipsync_common.config.max_media_bytes`). The answer is `415` as soon as the
signature is not one we take and `413` as soon as a byte past the cap arrives,
with the rest of the body left unread. An honest Content-Length past the
largest cap is refused before anything is read.

The 64 KiB limit of JSON bodies (gateway/validation.py `read_body`) is per
route and this route does not use it. Chunks are written to the file from the
event loop: each is at most what the server read from the socket (tens of
KiB), which a local disk takes in microseconds; the store's put, which may be a
network upload, runs in a thread (gateway/routes_uploads.py).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import filetype
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.problems import FieldError, Problem, invalid_parameters

FIELD = "file"
# filetype reads at most this many bytes of a file's start.
SNIFF_BYTES = 8192
# Room for the multipart framing around the file and a few small fields.
OVERHEAD_BYTES = 64 * 1024
MAX_OTHER_PART_BYTES = 64 * 1024

# Sniffed MIME type -> (kind, the type we answer with).
ACCEPTED: Mapping[str, tuple[str, str]] = {
    "image/png": ("image", "image/png"),
    "image/jpeg": ("image", "image/jpeg"),
    "image/webp": ("image", "image/webp"),
    "audio/mpeg": ("audio", "audio/mpeg"),
    "audio/x-wav": ("audio", "audio/wav"),
    "audio/mp4": ("audio", "audio/mp4"),
    "audio/aac": ("audio", "audio/aac"),
    "audio/ogg": ("audio", "audio/ogg"),
    "audio/x-flac": ("audio", "audio/flac"),
    "video/mp4": ("video", "video/mp4"),
    "video/quicktime": ("video", "video/quicktime"),
    "video/webm": ("video", "video/webm"),
    "video/x-matroska": ("video", "video/x-matroska"),
}
ACCEPTED_NAMES = "PNG, JPEG, WebP, MP3, WAV, M4A/AAC, OGG, FLAC, MP4, MOV, WebM or MKV"


@dataclass(frozen=True)
class Received:
    """A file part read to `path` (the caller's to store or delete)."""

    path: Path
    kind: str
    content_type: str
    size: int


def sniff(head: bytes) -> tuple[str, str]:
    """(kind, content type) of a file from its first bytes; 415 when not one we take."""
    guess = filetype.guess(head) if head else None
    accepted = ACCEPTED.get(guess.mime) if guess is not None else None
    if accepted is None:
        raise Problem(
            415,
            "unsupported_media_type",
            f"the file must be an image, audio or video file ({ACCEPTED_NAMES}); "
            f"its content is {'of type ' + guess.mime if guess else 'of no type we know'}",
        )
    return accepted


def too_large(kind: str, limit: int) -> Problem:
    return Problem(
        413,
        "file_too_large",
        f"an uploaded {kind} file must be at most {limit // (1024 * 1024)} MB",
    )


def _malformed() -> Problem:
    return Problem(400, "bad_request", "the body is not a complete multipart/form-data body")


def multipart_boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Problem(
            415,
            "unsupported_media_type",
            "the body must be multipart/form-data with the file in a part named file",
        )
    return boundary


@dataclass
class _Reader:
    """The parser's callbacks: one part at a time, the file part to disk."""

    limits: Mapping[str, int]
    folder: Path
    headers: dict[bytes, bytes] = field(default_factory=dict)
    header_field: bytes = b""
    header_value: bytes = b""
    in_file: bool = False
    other_bytes: int = 0
    head: bytearray = field(default_factory=bytearray)
    out: IO[bytes] | None = None
    path: Path | None = None
    kind: str = ""
    content_type: str = ""
    limit: int = 0
    size: int = 0
    done: bool = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        self.in_file = options.get(b"name") == FIELD.encode()
        if self.in_file and self.path is not None:
            raise invalid_parameters([FieldError(FIELD, "file must be sent once")])
        if self.in_file:
            descriptor, name = tempfile.mkstemp(dir=self.folder, prefix=".upload-")
            self.out = os.fdopen(descriptor, "wb")
            self.path = Path(name)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if not self.in_file:
            self.other_bytes += len(chunk)
            if self.other_bytes > MAX_OTHER_PART_BYTES:
                raise Problem(413, "payload_too_large", "the parts besides file are too large")
            return
        self.size += len(chunk)
        if not self.kind:
            self.head += chunk
            if len(self.head) < SNIFF_BYTES:
                return
            self._decide()
            chunk, self.head = bytes(self.head), bytearray()
        if self.size > self.limit:
            raise too_large(self.kind, self.limit)
        assert self.out is not None
        self.out.write(chunk)

    def _decide(self) -> None:
        self.kind, self.content_type = sniff(bytes(self.head))
        self.limit = self.limits[self.kind]

    def on_part_end(self) -> None:
        if not self.in_file:
            return
        if not self.kind:
            self._decide()
            if self.size > self.limit:
                raise too_large(self.kind, self.limit)
            assert self.out is not None
            self.out.write(bytes(self.head))
        assert self.out is not None
        self.out.close()
        self.in_file = False

    def on_end(self) -> None:
        self.done = True

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


async def receive_file(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    limits: Mapping[str, int],
    folder: Path,
) -> Received:
    """Read a multipart body into a temporary file in `folder` (which exists);
    the contract's 400/413/415/422 problems otherwise, with nothing left on disk."""
    boundary = multipart_boundary(content_type)
    most = max(limits.values()) + OVERHEAD_BYTES
    if content_length and content_length.strip().isdigit() and int(content_length) > most:
        raise Problem(
            413,
            "file_too_large",
            f"an upload must be at most {max(limits.values()) // (1024 * 1024)} MB",
        )
    reader = _Reader(limits, folder)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": reader.on_part_begin,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_end": reader.on_end,
        },
    )
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except MultipartParseError:
                raise _malformed() from None
        parser.finalize()
        if not reader.done:
            raise _malformed()
        if reader.path is None or not reader.kind:
            raise invalid_parameters([FieldError(FIELD, "file is required")])
    except BaseException:
        reader.close()
        if reader.path is not None:
            reader.path.unlink(missing_ok=True)
        raise
    return Received(reader.path, reader.kind, reader.content_type, reader.size)
