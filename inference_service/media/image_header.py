"""Read an image's format and pixel size from its header, without decoding pixels.

Why our own parser: the size limit (8000 x 8000 by default) exists to stop
decompression bombs, so it must be enforced *before* any decoder allocates the
full bitmap. ``cv2.imread`` always decodes everything, Pillow is not a
dependency, and FFmpeg's image demuxers may decode a frame while probing. The
three formats the API accepts (PNG, JPEG, WebP) store their dimensions at
documented offsets, so a few dozen lines of ``struct`` are enough and cost
microseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from inference_service.media.errors import MediaError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range
# but are not frames.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "png", "jpeg" or "webp"
    width: int
    height: int


def _undecodable(reason: str) -> MediaError:
    return MediaError(f"image could not be decoded: {reason}")


def read_image_header(stream: BinaryIO) -> ImageHeader:
    """Return the format and size of a PNG, JPEG or WebP image; MediaError otherwise."""
    head = stream.read(32)
    if head.startswith(_PNG_SIGNATURE):
        return _png(head)
    if head.startswith(b"\xff\xd8"):
        stream.seek(2)
        return _jpeg(stream)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if not head:
        raise _undecodable("the file is empty")
    raise _undecodable("not a PNG, JPEG or WebP image")


def _png(head: bytes) -> ImageHeader:
    # The first chunk must be IHDR: length(4) "IHDR" width(4) height(4), big endian.
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise _undecodable("truncated PNG header")
    width, height = struct.unpack(">II", head[16:24])
    return _checked("png", width, height)


def _jpeg(stream: BinaryIO) -> ImageHeader:
    # Walk the marker segments until a start-of-frame; skip APPn/EXIF blobs by
    # seeking, so a large EXIF thumbnail costs no reading.
    while True:
        byte = stream.read(1)
        if not byte:
            raise _undecodable("truncated JPEG: no frame header")
        if byte != b"\xff":
            continue
        marker = stream.read(1)
        while marker == b"\xff":  # fill bytes before a marker are allowed
            marker = stream.read(1)
        if not marker:
            raise _undecodable("truncated JPEG: no frame header")
        code = marker[0]
        if code in _JPEG_STANDALONE or code == 0x00:
            continue
        if code in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            raise _undecodable("JPEG has no frame header")
        length_bytes = stream.read(2)
        if len(length_bytes) < 2:
            raise _undecodable("truncated JPEG segment")
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            raise _undecodable("corrupt JPEG segment length")
        if code in _JPEG_SOF_MARKERS:
            body = stream.read(5)
            if len(body) < 5:
                raise _undecodable("truncated JPEG frame header")
            height, width = struct.unpack(">HH", body[1:5])
            return _checked("jpeg", width, height)
        stream.seek(length - 2, 1)


def _webp(head: bytes) -> ImageHeader:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit sizes.
        if head[23:26] != b"\x9d\x01\x2a" or len(head) < 30:
            raise _undecodable("corrupt WebP (VP8) header")
        width, height = struct.unpack("<HH", head[26:30])
        return _checked("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        # Lossless: signature 0x2f, then 14-bit width-1 and height-1, packed little endian.
        if head[20] != 0x2F or len(head) < 25:
            raise _undecodable("corrupt WebP (VP8L) header")
        bits = int.from_bytes(head[21:25], "little")
        return _checked("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        # Extended: 24-bit canvas width-1 and height-1 at offsets 24 and 27.
        if len(head) < 30:
            raise _undecodable("truncated WebP (VP8X) header")
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return _checked("webp", width, height)
    raise _undecodable("unknown WebP chunk")


def _checked(fmt: str, width: int, height: int) -> ImageHeader:
    if width <= 0 or height <= 0:
        raise _undecodable(f"{fmt.upper()} header declares a {width}x{height} image")
    return ImageHeader(format=fmt, width=width, height=height)
