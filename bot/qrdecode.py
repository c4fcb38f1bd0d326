"""Read QR codes out of photos people send in a chat.

:func:`decode_qr` takes the bytes of a JPEG/PNG/WebP/GIF/BMP picture and
returns the texts of the QR codes in it, or ``[]`` for anything it cannot use:
not an image, a corrupt or truncated file, a decompression bomb, a picture
without a QR code. It never raises.

A phone photo is often 12 megapixels. Decoding that at full resolution costs
hundreds of milliseconds, so the picture is first read downscaled, in
grayscale, to a longest side between :data:`FAST_LONG_SIDE` and twice that (a
4000 × 3000 JPEG is read at 2000 × 1500: libjpeg scales by 1/2, 1/4 or 1/8
while decoding, so most pixels are never reconstructed).
Only when that finds nothing is the picture read again at full resolution
(so a large picture without a QR code costs both passes).
EXIF orientation is applied, and transparent pixels count as white.

Decoding is CPU-bound (tens of milliseconds for a phone photo, mostly JPEG
entropy decoding): call it from a worker thread (``asyncio.to_thread``) rather
than on the event loop.
"""

from __future__ import annotations

import io
import logging
from typing import Final

import zxingcpp
from PIL import Image, UnidentifiedImageError

__all__ = ["FAST_LONG_SIDE", "MAX_BYTES", "MAX_PIXELS", "decode_qr"]

log = logging.getLogger(__name__)

MAX_BYTES: Final = 20 * 1024 * 1024
"""Larger uploads are not looked at (a 12 MP JPEG is 3–8 MB)."""
MAX_PIXELS: Final = 50_000_000
"""Larger pictures are refused before any pixel is decoded (a 48 MP phone
camera is just under; Pillow's own bomb limit is ~89 MP)."""
FAST_LONG_SIDE: Final = 1600
"""Longest side of the first, fast attempt."""
MAX_RESULTS: Final = 8


def _available(wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The formats of ``wanted`` this Pillow can open (WebP needs libwebp)."""
    Image.init()
    return tuple(name for name in wanted if name in Image.OPEN)


# JPEG includes the multi-picture (MPO) files some phone cameras write.
_FORMATS: Final = _available(("JPEG", "PNG", "WEBP", "GIF", "BMP"))
_QR: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
# AIM symbology identifiers of QR codes whose data carries ECI designators.
_ECI_IDENTIFIERS: Final = frozenset({"]Q2", "]Q4", "]Q6"})

# EXIF orientation tag value -> the transposition that puts the picture upright
# (the same table as PIL.ImageOps.exif_transpose).
_ORIENTATION = 0x0112
_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decode_qr(data: bytes) -> list[str]:
    """Texts of the QR codes in the picture ``data`` (JPEG/PNG/…); ``[]`` if none."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return []
    try:
        return _decode(bytes(data))
    except UnidentifiedImageError:
        log.debug("qr decode: not a picture (%d bytes)", len(data))
    except Exception as error:  # a hostile or broken upload must never break a chat
        log.info("qr decode failed: %s: %s", type(error).__name__, error)
    return []


def _decode(data: bytes) -> list[str]:
    if not data or len(data) > MAX_BYTES:
        return []
    with _open(data) as image:
        width, height = image.size
        if width < 1 or height < 1 or width * height > MAX_PIXELS:
            return []
        orientation = _orientation(image)
        if max(width, height) <= FAST_LONG_SIDE:
            return _read(_grayscale(image, orientation))
        small = _downscaled(image)
        reduced = small.size != (width, height)
        found = _read(_grayscale(small, orientation))
    if found or not reduced:  # nothing more to see at full resolution
        return found
    with _open(data) as image:  # draft() above changed how this one decodes
        return _read(_grayscale(image, orientation))


def _open(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=_FORMATS)


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # broken EXIF: keep the picture as stored
        return 1
    return value if isinstance(value, int) else 1


def _downscaled(image: Image.Image) -> Image.Image:
    """``image`` with its longest side in [:data:`FAST_LONG_SIDE`, 2 × that)."""
    width, height = image.size
    ratio = FAST_LONG_SIDE / max(width, height)
    # JPEG: the decoder produces 1/2, 1/4 or 1/8 scale grayscale directly (never
    # smaller than asked); other formats ignore this.
    image.draft("L", (max(1, round(width * ratio)), max(1, round(height * ratio))))
    factor = max(image.size) // FAST_LONG_SIDE
    if factor >= 2:  # a cheap box-filter reduction by a whole factor
        return _flatten(image).reduce(factor)
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """A grayscale picture; transparent pixels become white (QR codes are dark on light)."""
    if image.mode == "L":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return image.convert("L")


def _grayscale(image: Image.Image, orientation: int) -> Image.Image:
    gray = _flatten(image)
    method = _TRANSPOSE.get(orientation)
    return gray.transpose(method) if method is not None else gray


def _read(image: Image.Image) -> list[str]:
    texts: list[str] = []
    for barcode in zxingcpp.read_barcodes(image, formats=_QR):
        text = _text(barcode)
        if text and text not in texts:
            texts.append(text)
        if len(texts) >= MAX_RESULTS:
            break
    return texts


def _text(barcode: zxingcpp.Barcode) -> str:
    """The barcode's text; UTF-8 when no ECI names a character set.

    Without an ECI, zxing guesses the character set of byte-mode data and
    reads UTF-8 as ISO-8859-1 ("Dénpasar" comes back as "DÃ©npasar"), or even
    as Shift_JIS. QRIS payloads are UTF-8 (their CRC is computed over UTF-8
    bytes), so raw bytes that are valid UTF-8 are read as such.
    """
    if barcode.symbology_identifier in _ECI_IDENTIFIERS:
        return barcode.text
    try:
        return barcode.bytes.decode("utf-8")
    except UnicodeDecodeError:
        return barcode.text
