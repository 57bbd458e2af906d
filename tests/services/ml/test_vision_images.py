"""Photo preparation: what leaves the service has no metadata, whichever path it takes.

A JPEG that fits the limits and is upright is sent as its own compressed data
with the metadata segments cut out (checked here to be pixel-identical and
free of EXIF, XMP, ICC and comments); everything else is re-encoded from
pixels. Bad files are refused on either path.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services.ml.vision.images import ImageRejected, prepare_image
from services.ml.vision.jpeg import strip_metadata

GPS_IFD = 0x8825
ORIENTATION = 0x0112
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>secret-xmp</rdf:RDF></x:xmpmeta>'
ICC = b"\x00\x00\x02\x0cfake-icc-profile-bytes" + b"\x00" * 64


def _pixels(width: int = 320, height: int = 240, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(width * height)
    image = Image.fromarray((rng.random((height, width, 3)) * 255).astype("uint8"), "RGB")
    return image if mode == "RGB" else image.convert(mode)


def _jpeg(image: Image.Image, *, orientation: int | None = None, **options: Any) -> bytes:
    exif = Image.Exif()
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    if orientation is not None:
        exif[ORIENTATION] = orientation
    out = io.BytesIO()
    image.save(
        out,
        format="JPEG",
        quality=80,
        exif=exif,
        xmp=XMP,
        icc_profile=ICC,
        comment=b"shot at 12 Elm Street",
        **options,
    )
    return out.getvalue()


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _assert_no_metadata(data: bytes) -> None:
    sent = _decoded(data)
    assert not sent.getexif()
    for key in ("exif", "xmp", "icc_profile", "comment"):
        assert key not in sent.info, key
    for secret in (b"Exif\x00\x00", b"secret-xmp", b"fake-icc", b"Elm Street"):
        assert secret not in data, secret


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"progressive": True},
        {"restart_marker_rows": 1},  # RSTn markers inside the scan
        {"progressive": True, "restart_marker_blocks": 4},
    ],
)
def test_a_fitting_upright_jpeg_is_sent_unchanged_but_for_its_metadata(
    options: dict[str, Any],
) -> None:
    original = _jpeg(_pixels(), **options)
    prepared = prepare_image(original)
    _assert_no_metadata(prepared.data)
    assert prepared.data != original
    # Not re-encoded: the very same pixels decode from what is sent.
    assert _decoded(prepared.data).tobytes() == _decoded(original).tobytes()
    assert (prepared.width, prepared.height) == (320, 240)


@pytest.mark.parametrize(
    ("image", "orientation"),
    [
        (_pixels(), 6),  # needs rotating
        (_pixels(mode="CMYK"), None),  # needs converting to RGB
        (_pixels(2000, 1000), None),  # needs resizing
    ],
)
def test_other_photos_are_re_encoded_without_metadata(
    image: Image.Image, orientation: int | None
) -> None:
    prepared = prepare_image(_jpeg(image, orientation=orientation))
    _assert_no_metadata(prepared.data)
    sent = _decoded(prepared.data)
    assert sent.mode == "RGB"
    assert max(sent.size) <= 1568
    if orientation == 6:
        assert sent.size == (240, 320)


def test_stripping_keeps_adobe_colour_transform_and_drops_what_follows_the_image() -> None:
    original = _jpeg(_pixels(mode="CMYK"))  # Pillow writes Adobe's APP14 for CMYK
    assert b"Adobe" in original
    stripped = strip_metadata(original + b"trailing vendor data")
    assert stripped is not None
    assert b"Adobe" in stripped
    assert stripped.endswith(b"\xff\xd9")
    assert _decoded(stripped).tobytes() == _decoded(original).tobytes()


@pytest.mark.parametrize(
    "data",
    [
        b"not a jpeg at all",
        b"\xff\xd8\xff\xe1\x00",  # a segment cut short
        b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 6,  # a scan before any frame header
        b"\xff\xd8\xff\xc9\x00\x04\x00\x00\xff\xd9",  # arithmetic coding: re-encode instead
    ],
)
def test_streams_it_does_not_understand_are_left_to_re_encoding(data: bytes) -> None:
    assert strip_metadata(data) is None


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9])
def test_a_truncated_fitting_jpeg_is_refused(cut: float) -> None:
    original = _jpeg(_pixels())
    with pytest.raises(ImageRejected) as refused:
        prepare_image(original[: int(len(original) * cut)])
    assert refused.value.reason == "not_an_image"
