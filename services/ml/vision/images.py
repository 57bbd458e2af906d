"""Photo preparation before Claude sees it.

The original bytes are hashed (sha256: the photo's identity for
exactly-once); no EXIF (GPS positions are personal data), ICC or XMP
metadata leaves the service. The image sent is re-encoded from pixels, or,
for an upright RGB or greyscale JPEG that already fits the limits, is the
photo's own compressed data with its metadata segments cut out
(``services.ml.vision.jpeg``): checked by decoding, never re-encoded.
Sizes follow Anthropic's vision guide: a long edge of at most 1,568 px and
about 1.15 megapixels at most, beyond which the API downsizes anyway (and
bills the tokens). Images over 8,000 px on a side are refused, as the API
would refuse them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from services.ml.vision.jpeg import strip_metadata

MAX_SIDE_PX = 8_000
TARGET_LONG_EDGE_PX = 1_568
TARGET_MAX_PIXELS = 1_150_000
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
JPEG_QUALITY = 85


class ImageRejected(ValueError):  # noqa: N818 - reads as the condition
    """The bytes are not an acceptable photo; ``reason`` is machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A photo ready to send: JPEG bytes without metadata, and the original's hash."""

    sha256: str
    data: bytes
    media_type: str
    width: int
    height: int
    original_width: int
    original_height: int


def target_size(width: int, height: int) -> tuple[int, int]:
    """The size within both limits, keeping the aspect ratio (never upscaled)."""
    scale = min(
        1.0,
        TARGET_LONG_EDGE_PX / max(width, height),
        math.sqrt(TARGET_MAX_PIXELS / (width * height)),
    )
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


@contextlib.contextmanager
def _decoding() -> Iterator[None]:
    """Pillow's errors (and decompression-bomb warnings) as ``ImageRejected`` 422s."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("not_an_image", "the content is not a decodable image") from None
    except (OSError, ValueError, SyntaxError):
        raise ImageRejected("not_an_image", "the image data is truncated or corrupt") from None


def _open(data: bytes) -> Image.Image:
    """Open ``data`` and check its format and size from the header (no pixel decoded yet)."""
    image = Image.open(io.BytesIO(data))
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected(
            "unsupported_image_type",
            f"expected a JPEG, PNG, WebP or GIF photo, got {image.format or 'unknown'}",
        )
    width, height = image.size
    if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
        raise ImageRejected(
            "image_too_large",
            f"the photo is {width}x{height} px; at most {MAX_SIDE_PX} px a side",
        )
    return image


def _unchanged_jpeg(image: Image.Image, data: bytes) -> bytes | None:
    """The photo's own JPEG bytes without metadata, when nothing else needs changing.

    That is: a JPEG within the size limits (no resize), upright (no EXIF
    rotation to apply), in RGB or greyscale, whose segments ``strip_metadata``
    accepts. Its compressed pixels are sent as they are: no re-encoding.
    """
    if image.format != "JPEG" or image.mode not in ("RGB", "L"):
        return None
    if target_size(*image.size) != image.size:
        return None
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        return None
    return strip_metadata(data)


def prepare_image(data: bytes, *, sha256: str | None = None) -> PreparedImage:
    """Decode, check, orient, strip and resize ``data`` (CPU-bound: run in a thread).

    A JPEG is decoded at the smallest of libjpeg's 1/2, 1/4 and 1/8 scales
    that still covers the size it is sent at (``draft``): a 4000x3000 phone
    photo bound for 1,568 px is decoded at 2000x1500, a quarter of the pixels.
    Every byte of its scans is still decoded, so a truncated or corrupt file
    is refused as at full size. A JPEG sent as it is (``_unchanged_jpeg``) is
    decoded at 1/8 scale, only to check it. ``sha256`` is the caller's hash of
    ``data`` when it has one (not computed twice).
    """
    digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    with _decoding():
        image = _open(data)
        width, height = image.size
        unchanged = _unchanged_jpeg(image, data)
        if image.format == "JPEG":
            scale_to = target_size(width, height)
            if unchanged is not None:
                scale_to = (math.ceil(width / 8), math.ceil(height / 8))
            image.draft(image.mode, scale_to)
        image.load()
    if unchanged is not None:
        return PreparedImage(
            sha256=digest,
            data=unchanged,
            media_type="image/jpeg",
            width=width,
            height=height,
            original_width=width,
            original_height=height,
        )
    # Rotate by the EXIF orientation first, or the EXIF-less copy comes out
    # sideways (in place: no copy of the pixels when there is nothing to do).
    ImageOps.exif_transpose(image, in_place=True)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    size = target_size(*rgb.size)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh image from pixels: no exif=, icc_profile= or xmp= is passed on,
    # and the original's info goes too (Pillow would copy its JPEG comment).
    rgb.info.clear()
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
    return PreparedImage(
        sha256=digest,
        data=out.getvalue(),
        media_type="image/jpeg",
        width=rgb.width,
        height=rgb.height,
        original_width=width,
        original_height=height,
    )
