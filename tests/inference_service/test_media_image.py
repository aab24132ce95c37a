"""Header parsing for PNG/JPEG/WebP, and decoding after the size check."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_service.media import MediaError, load_image_bgr
from inference_service.media.image_header import read_image_header
from tests.media_fixtures import portrait_path


def _encoded(ext: str, width: int, height: int, *params: int) -> bytes:
    image = np.full((height, width, 3), 120, np.uint8)
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(
    ("ext", "params", "fmt"),
    [
        (".png", (), "png"),
        (".jpg", (), "jpeg"),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), "webp"),  # lossy VP8
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), "webp"),  # lossless VP8L
    ],
)
def test_header_size_matches_the_decoded_size(ext: str, params: tuple[int, ...], fmt: str) -> None:
    header = read_image_header(io.BytesIO(_encoded(ext, 333, 211, *params)))
    assert (header.format, header.width, header.height) == (fmt, 333, 211)


def test_jpeg_header_is_found_after_a_large_exif_segment() -> None:
    data = _encoded(".jpg", 64, 48)
    app1 = b"\xff\xe1" + struct.pack(">H", 60002) + b"Exif\x00\x00" + b"\x00" * 59994
    header = read_image_header(io.BytesIO(data[:2] + app1 + data[2:]))
    assert (header.width, header.height) == (64, 48)


def test_truncated_jpeg_header_is_refused() -> None:
    with pytest.raises(MediaError, match="image could not be decoded"):
        read_image_header(io.BytesIO(_encoded(".jpg", 64, 48)[:20]))


def test_load_image_bgr_decodes_the_portrait() -> None:
    image = load_image_bgr(portrait_path())
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8


def test_corrupt_pixel_data_is_a_user_error(tmp_path: Path) -> None:
    data = _encoded(".png", 200, 100)
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[:60])  # header intact, pixel data cut off
    with pytest.raises(MediaError, match="image could not be decoded"):
        load_image_bgr(broken)


def test_load_image_bgr_checks_the_size_limit_first(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(_encoded(".png", 300, 20))
    with pytest.raises(MediaError, match="image is 300x20 pixels, over the limit of 256x256"):
        load_image_bgr(path, max_pixels_side=256)
