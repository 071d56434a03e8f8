"""PNG and MP4 generation: real files, the right sizes, readable by standard tools."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from services.simulator.media import MEDIA_SCALE, encode_png, gemini_image_size, gemini_png, png_size
from services.simulator.mp4 import ark_video_spec, build_mp4, iter_boxes, last_frame_png

GEMINI_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9", "1:4", "4:1", "1:8", "8:1"]


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Check every chunk CRC and return width, height and the decompressed scanlines."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    idat = b""
    width = height = 0
    kinds = []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", payload[:10])
            assert (depth, colour_type) == (8, 2)
        elif kind == b"IDAT":
            idat += payload
        pos += 12 + length
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


@pytest.mark.parametrize("ratio", GEMINI_RATIOS)
def test_gemini_image_keeps_the_aspect_ratio(ratio: str) -> None:
    rw, rh = (int(x) for x in ratio.split(":"))
    previous_width = 0
    for size in ("512", "1K", "2K", "4K"):
        width, height = gemini_image_size(ratio, size)
        assert abs(width / height - rw / rh) / (rw / rh) < 0.1, (ratio, size, width, height)
        assert width > previous_width
        previous_width = width


def test_gemini_1k_matches_the_published_size_scaled_down() -> None:
    # Google's table: 1K 16:9 is 1376x768, 1:1 is 1024x1024.
    assert gemini_image_size("16:9", "1K") == (1376 // MEDIA_SCALE, 768 // MEDIA_SCALE)
    assert gemini_image_size("16:9", "2K") == (2752 // MEDIA_SCALE, 1536 // MEDIA_SCALE)
    assert gemini_image_size("1:1", "1K") == (1024 // MEDIA_SCALE, 1024 // MEDIA_SCALE)
    assert gemini_image_size("1:1", "4K") == (4096 // MEDIA_SCALE, 4096 // MEDIA_SCALE)


def test_png_is_valid_and_depends_on_the_prompt() -> None:
    first = gemini_png("a red fox", "4:3", "512")
    width, height, raw = decode_png(first)
    assert (width, height) == gemini_image_size("4:3", "512") == png_size(first)
    assert raw[0] == 0  # filter byte of the first scanline
    assert gemini_png("a red fox", "4:3", "512") == first
    assert gemini_png("a blue whale", "4:3", "512") != first


def test_encode_png_rejects_rows_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="rows"):
        encode_png(2, 2, [b"\x00" * 6])


def find_box(data: bytes, path: list[bytes]) -> tuple[int, int]:
    """Payload range of a nested box, e.g. [b"moov", b"trak", b"mdia"]."""
    start, end = 0, len(data)
    for kind in path:
        boxes = iter_boxes(data, start, end)
        match = [b for b in boxes if b[0] == kind]
        assert match, f"no {kind!r} box in {[b[0] for b in boxes]}"
        _, start, end = match[0]
    return start, end


def test_mp4_is_iso_bmff_with_an_h264_track() -> None:
    spec = ark_video_spec("a dog on a beach", "720p", "16:9", 24, 3)
    data = build_mp4(spec)
    top = [kind for kind, _, _ in iter_boxes(data)]
    assert top == [b"ftyp", b"moov", b"mdat"]
    ftyp_start, ftyp_end = find_box(data, [b"ftyp"])
    assert data[ftyp_start : ftyp_start + 4] == b"isom"
    assert b"avc1" in data[ftyp_start + 8 : ftyp_end]
    stbl = [b"moov", b"trak", b"mdia", b"minf", b"stbl"]
    stsd_start, _ = find_box(data, [*stbl, b"stsd"])
    avc1 = data[stsd_start + 8 : stsd_start + 16]
    assert avc1[4:8] == b"avc1"
    width, height = struct.unpack(">HH", data[stsd_start + 8 + 8 + 24 : stsd_start + 8 + 8 + 28])
    assert (width, height) == (spec.width, spec.height) == (1248 // MEDIA_SCALE, 704 // MEDIA_SCALE)
    # Every sample lies inside mdat, one after another, starting where stco says.
    stsz_start, _ = find_box(data, [*stbl, b"stsz"])
    _, _, count = struct.unpack(">III", data[stsz_start : stsz_start + 12])
    assert count == 24 * 3
    sizes = struct.unpack(f">{count}I", data[stsz_start + 12 : stsz_start + 12 + 4 * count])
    stco_start, _ = find_box(data, [*stbl, b"stco"])
    (offset,) = struct.unpack(">I", data[stco_start + 8 : stco_start + 12])
    mdat_start, mdat_end = find_box(data, [b"mdat"])
    assert offset == mdat_start
    assert offset + sum(sizes) == mdat_end
    # The first sample is an IDR picture (NAL type 5) behind a 4-byte length.
    assert data[offset + 4] & 0x1F == 5


def test_last_frame_png_has_the_video_size() -> None:
    spec = ark_video_spec("a cat", "480p", "9:16", 24, 2)
    assert png_size(last_frame_png(spec)) == (spec.width, spec.height)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_mp4_decodes_with_ffmpeg(tmp_path: Path) -> None:
    spec = ark_video_spec("a dog", "1080p", "21:9", 24, 2)
    path = tmp_path / "video.mp4"
    path.write_bytes(build_mp4(spec))
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "default=noprint_wrappers=1",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "codec_name=h264" in probe.stdout
    assert f"width={spec.width}" in probe.stdout
    assert f"height={spec.height}" in probe.stdout
    assert "nb_read_frames=48" in probe.stdout
    if shutil.which("ffmpeg") is not None:
        decoded = subprocess.run(
            ["ffmpeg", "-v", "error", "-err_detect", "explode", "-i", str(path), "-f", "null", "-"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert decoded.returncode == 0
        assert decoded.stderr == ""
