"""Pictures the simulator hands out: PNG encoding and the colours and sizes derived from a request.

Everything here is pure and deterministic so a test can predict what it will get back. PNGs are encoded
with zlib and struct only. Sizes are the provider's nominal output sizes divided by ``MEDIA_SCALE`` so that
generating a "4K" image stays fast (1K 16:9 is 1376x768 nominal, a 172x96 PNG); the aspect ratio is kept.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

# Every image and video the simulator produces is 1/MEDIA_SCALE of the provider's nominal size per side.
MEDIA_SCALE = 8

RGB = tuple[int, int, int]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Media:
    """A file a stand-in serves (an image, a video), with its media type."""

    body: bytes
    media_type: str


# Gemini image sizes as a factor of the 1K size.
GEMINI_IMAGE_SIZES: dict[str, float] = {"512": 0.5, "1K": 1.0, "2K": 2.0, "4K": 4.0}
# Google's published 1K output sizes; other sizes scale these.
GEMINI_1K_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (848, 1264),
    "3:2": (1264, 848),
    "3:4": (896, 1200),
    "4:3": (1200, 896),
    "4:5": (928, 1152),
    "5:4": (1152, 928),
    "9:16": (768, 1376),
    "16:9": (1376, 768),
    "21:9": (1584, 672),
}


def parse_ratio(ratio: str) -> tuple[int, int]:
    """``"16:9"`` -> ``(16, 9)``; raises ValueError for anything else."""
    left, sep, right = ratio.partition(":")
    if not sep or not left.isdigit() or not right.isdigit() or int(left) == 0 or int(right) == 0:
        raise ValueError(f"not an aspect ratio: {ratio!r}")
    return int(left), int(right)


def gemini_nominal_size(aspect_ratio: str, image_size: str) -> tuple[int, int]:
    """Nominal pixel size of a Gemini image: Google's table for the common ratios; for the others, the area of a
    1024-pixel square in that ratio, rounded to multiples of 16."""
    factor = GEMINI_IMAGE_SIZES[image_size]
    if aspect_ratio in GEMINI_1K_SIZES:
        width, height = GEMINI_1K_SIZES[aspect_ratio]
        return round(width * factor), round(height * factor)
    rw, rh = parse_ratio(aspect_ratio)
    height_1k = 1024 * (rh / rw) ** 0.5
    return _round_to(height_1k * rw / rh * factor, 16), _round_to(height_1k * factor, 16)


def gemini_image_size(aspect_ratio: str, image_size: str) -> tuple[int, int]:
    """The size of the PNG the simulator actually returns (nominal size / MEDIA_SCALE)."""
    width, height = gemini_nominal_size(aspect_ratio, image_size)
    return scaled(width, height)


def scaled(width: int, height: int) -> tuple[int, int]:
    """Scale a nominal size down, keeping both sides even (video needs 4:2:0 chroma) and at least 2."""
    return max(2, _round_to(width / MEDIA_SCALE, 2)), max(2, _round_to(height / MEDIA_SCALE, 2))


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def palette(*seeds: bytes | str) -> tuple[RGB, RGB]:
    """Two colours derived from the seeds, so different prompts give visibly different pictures."""
    digest = hashlib.sha256()
    for seed in seeds:
        digest.update(seed.encode() if isinstance(seed, str) else seed)
        digest.update(b"\x00")
    raw = digest.digest()
    first = (raw[0], raw[1], raw[2])
    second = (255 - raw[0], raw[4], 255 - raw[2])
    return first, second


def shifted(colour: RGB, step: int) -> RGB:
    """The colour rotated a little, used to make consecutive video seconds differ."""
    r, g, b = colour
    return ((r + 47 * step) % 256, (g + 23 * step) % 256, (b + 71 * step) % 256)


def render_rows(width: int, height: int, background: RGB, band: RGB, band_start: int) -> list[bytes]:
    """RGB rows of a picture: a vertical gradient from ``background`` to ``band`` with a vertical band of
    ``band`` colour starting at column ``band_start``. Cheap to build and easy to tell apart."""
    band_width = max(1, width // 6)
    band_start %= width
    # Runs of (is_band, length) across one row; the band may wrap around the right edge.
    in_band = [(x - band_start) % width < band_width for x in range(width)]
    runs: list[tuple[bool, int]] = []
    for flag in in_band:
        if runs and runs[-1][0] == flag:
            runs[-1] = (flag, runs[-1][1] + 1)
        else:
            runs.append((flag, 1))
    band_pixel = bytes(band)
    rows: list[bytes] = []
    for y in range(height):
        t = y / max(1, height - 1)
        row_colour = bytes(round(a + (b - a) * t * 0.5) for a, b in zip(background, band, strict=True))
        rows.append(b"".join((band_pixel if flag else row_colour) * length for flag, length in runs))
    return rows


def encode_png(width: int, height: int, rows: Iterable[bytes]) -> bytes:
    """Encode 8-bit RGB rows (each ``3 * width`` bytes) as a PNG."""
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 (None) on every scanline
    if len(raw) != height * (1 + 3 * width):
        raise ValueError("rows do not match the image size")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"".join(
        [_PNG_SIGNATURE, _chunk(b"IHDR", ihdr), _chunk(b"IDAT", zlib.compress(raw, 6)), _chunk(b"IEND", b"")]
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR; raises ValueError if it is not a PNG."""
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def gemini_png(prompt: str, aspect_ratio: str, image_size: str, extra_seed: bytes = b"") -> bytes:
    """The image Gemini "generates" for a prompt."""
    width, height = gemini_image_size(aspect_ratio, image_size)
    background, band = palette(prompt, extra_seed)
    seed = hashlib.sha256(prompt.encode()).digest()
    return encode_png(width, height, render_rows(width, height, background, band, seed[8] * width // 256))
