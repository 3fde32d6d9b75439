"""The size of an encoded image read from its header, before any decoding.

The server refuses images over ``--max-pixels`` with 413 from this size
alone, so a 200-megapixel PNG of a few kilobytes never reaches a decoder, and
it groups encoded images of one size into one batch.

Example:
    >>> image_size(bytes.fromhex("89504e470d0a1a0a0000000d49484452") + (640).to_bytes(4, "big")
    ...            + (480).to_bytes(4, "big"))
    (480, 640)
"""

import struct

FORMATS = "JPEG, PNG, GIF, BMP or WebP"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageHeaderError(ValueError):
    """The bytes are not an image of a supported format, or its header is cut short."""


def _png(data):
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageHeaderError("a PNG cut short before its IHDR header (truncated image)")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _gif(data):
    if len(data) < 10:
        raise ImageHeaderError("a GIF cut short before its screen size (truncated image)")
    width, height = struct.unpack("<HH", data[6:10])
    return height, width


def _bmp(data):
    if len(data) < 26:
        raise ImageHeaderError("a BMP cut short before its size (truncated image)")
    width, height = struct.unpack("<ii", data[18:26])
    return abs(height), abs(width)


def _jpeg(data):
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            raise ImageHeaderError(f"a JPEG with a broken marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return height, width
        i += 2 + length
    raise ImageHeaderError("a JPEG that ends before its frame header (truncated image)")


def _webp(data):
    if len(data) < 30:
        raise ImageHeaderError("a WebP cut short before its size (truncated image)")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return height, width
    raise ImageHeaderError(f"a WebP with an unknown chunk {chunk!r}")


def image_size(data):
    """``(height, width)`` from the header of encoded JPEG/PNG/GIF/BMP/WebP bytes.

    Raises :class:`ImageHeaderError` for any other bytes or a header cut short.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(data)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(data)
    if data[:2] == b"BM":
        return _bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    raise ImageHeaderError(
        f"not an image: expected {FORMATS} bytes, received {len(data)} bytes starting with "
        f"{bytes(data[:8])!r}")
