"""Photo preparation before Claude sees it.

The original bytes are hashed (sha256: the photo's identity for
exactly-once); the image sent is re-encoded from pixels only, so no EXIF
(GPS positions are personal data), ICC or XMP metadata leaves the service.
Sizes follow Anthropic's vision guide: a long edge of at most 1,568 px and
about 1.15 megapixels at most, beyond which the API downsizes anyway (and
bills the tokens). Images over 8,000 px on a side are refused, as the API
would refuse them.
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

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


def prepare_image(data: bytes) -> PreparedImage:
    """Decode, check, orient, strip and resize ``data`` (CPU-bound: run in a thread)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = image.format
            width, height = image.size
            if image_format not in ACCEPTED_FORMATS:
                raise ImageRejected(
                    "unsupported_image_type",
                    f"expected a JPEG, PNG, WebP or GIF photo, got {image_format or 'unknown'}",
                )
            # The header gives the size before any pixel is decoded.
            if width > MAX_SIDE_PX or height > MAX_SIDE_PX:
                raise ImageRejected(
                    "image_too_large",
                    f"the photo is {width}x{height} px; at most {MAX_SIDE_PX} px a side",
                )
            image.load()
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("not_an_image", "the content is not a decodable image") from None
    except (OSError, ValueError, SyntaxError):
        raise ImageRejected("not_an_image", "the image data is truncated or corrupt") from None
    # Rotate by the EXIF orientation first, or the EXIF-less copy comes out sideways.
    oriented = ImageOps.exif_transpose(image)
    rgb = oriented.convert("RGB")
    size = target_size(*rgb.size)
    if size != rgb.size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh image from pixels: no exif=, icc_profile= or XMP is passed on.
    rgb.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return PreparedImage(
        sha256=digest,
        data=out.getvalue(),
        media_type="image/jpeg",
        width=rgb.width,
        height=rgb.height,
        original_width=width,
        original_height=height,
    )
