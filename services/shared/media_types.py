"""What a file is, from its first bytes: for checking inputs and provider results before trusting a declared type."""

from __future__ import annotations

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"heif"})


def sniff_image_type(data: bytes) -> str | None:
    """The image type (PNG, JPEG, WebP, HEIC/HEIF) that the bytes start like, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic" if data[8:12].startswith(b"he") else "image/heif"
    return None


def is_mp4(data: bytes) -> bool:
    # ISO BMFF: the first box is `ftyp` (size, then the type at bytes 4..8).
    return data[4:8] == b"ftyp" and sniff_image_type(data) is None
