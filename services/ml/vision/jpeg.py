"""Lossless removal of a JPEG's metadata segments (EXIF, XMP, ICC, IPTC, comments).

A listing photo that already fits the size limits need not be decoded and
re-encoded to lose its metadata: the segments that carry it can be cut out
of the byte stream, leaving the compressed image data untouched (no second
generation of JPEG loss, and none of the CPU a re-encode costs). This is what
``jpegtran -copy none`` does; no maintained Python library does it without
re-encoding, so the walk over the segments is here, kept to an allow-list:

- kept: the frame header (baseline, extended or progressive Huffman
  ``SOF0``-``SOF2``), quantisation and Huffman tables, restart interval,
  scans with their entropy-coded data, and Adobe's ``APP14`` segment (twelve
  bytes saying how colours are transformed; dropping it can change colours);
- dropped: every other ``APPn`` (EXIF with GPS positions, XMP, ICC, IPTC,
  JFIF, vendor blocks), comments, and anything after the end of the image;
- anything else (arithmetic coding, hierarchical frames, malformed lengths,
  a truncated stream) makes ``strip_metadata`` return None, and the caller
  re-encodes from pixels instead.

Only structure is checked here; that the scans decode is the caller's check.
"""

from __future__ import annotations

from typing import Final

_SOI: Final = b"\xff\xd8"
_EOI: Final = 0xD9
_SOS: Final = 0xDA
_APP14: Final = 0xEE
_COM: Final = 0xFE
_APP_MARKERS: Final = range(0xE0, 0xF0)
_RESTART_MARKERS: Final = range(0xD0, 0xD8)
#: SOF0-SOF2 (Huffman: baseline, extended, progressive), DHT, DQT, DRI.
_KEPT_SEGMENTS: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC4, 0xDB, 0xDD})


def _scan_end(data: bytes, pos: int) -> int | None:
    """Where the entropy-coded data starting at ``pos`` ends (the next real marker)."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return None
        following = data[pos + 1]
        if following == 0x00 or following in _RESTART_MARKERS:
            pos += 2  # a stuffed 0xFF data byte, or a restart marker inside the scan
        elif following == 0xFF:
            pos += 1  # fill byte before a marker
        else:
            return pos


def strip_metadata(data: bytes) -> bytes | None:
    """``data`` without its metadata segments, or None when it must be re-encoded instead."""
    if not data.startswith(_SOI):
        return None
    kept = [_SOI]
    pos, size = 2, len(data)
    framed = False
    while pos + 1 < size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _EOI:
            # Whatever follows the image (trailers, a second image) is not sent.
            return b"".join((*kept, b"\xff\xd9")) if framed else None
        if pos + 4 > size:
            return None
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end <= pos + 3 or end > size:
            return None
        if marker == _SOS:
            if not framed:
                return None
            scan_end = _scan_end(data, end)
            if scan_end is None:
                return None
            kept.append(data[pos:scan_end])
            pos = scan_end
            continue
        if marker in _KEPT_SEGMENTS:
            framed = framed or marker in (0xC0, 0xC1, 0xC2)
            kept.append(data[pos:end])
        elif marker == _APP14 and data[pos + 4 : pos + 9] == b"Adobe":
            kept.append(data[pos:end])
        elif marker not in _APP_MARKERS and marker != _COM:
            return None
        pos = end
    return None
