"""A tiny but real MP4 video, built by hand with struct.

The file is ISO BMFF (``ftyp`` isom/avc1, ``moov`` before ``mdat``) holding one H.264 Constrained Baseline
track that any decoder plays. The encoder is the simplest one the standard allows: every second starts with
an IDR picture whose macroblocks are all I_PCM (raw samples, no prediction or transform), and the other
frames of that second are P pictures in which every macroblock is skipped (a copy of the previous picture).
So the video shows one still picture per second, each second a different colour with a band that moves.
Sizes follow Seedance's published output sizes divided by ``media.MEDIA_SCALE``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .media import RGB, encode_png, palette, render_rows, scaled, shifted

# Seedance 1.x output sizes (width, height) per resolution and ratio.
ARK_VIDEO_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "480p": {
        "16:9": (864, 480),
        "4:3": (736, 544),
        "1:1": (640, 640),
        "3:4": (544, 736),
        "9:16": (480, 864),
        "21:9": (960, 416),
    },
    "720p": {
        "16:9": (1248, 704),
        "4:3": (1120, 832),
        "1:1": (960, 960),
        "3:4": (832, 1120),
        "9:16": (704, 1248),
        "21:9": (1504, 640),
    },
    "1080p": {
        "16:9": (1920, 1088),
        "4:3": (1664, 1248),
        "1:1": (1440, 1440),
        "3:4": (1248, 1664),
        "9:16": (1088, 1920),
        "21:9": (2176, 928),
    },
}

_LOG2_MAX_FRAME_NUM = 8  # frame_num never wraps inside one second of video at up to 255 fps
_TIMESCALE_PER_FRAME = 512


class VideoSpec:
    """What to draw: derived from the task so the same task always yields the same bytes."""

    def __init__(self, seed: str, width: int, height: int, fps: int, duration: int) -> None:
        if width % 2 or height % 2:
            raise ValueError("video sides must be even")
        self.seed = seed
        self.width = width
        self.height = height
        self.fps = fps
        self.duration = duration

    def picture(self, second: int) -> tuple[RGB, RGB, int]:
        """Background, band colour and band position of the picture shown during ``second``."""
        background, band = palette(self.seed)
        step = max(1, self.width // max(1, self.duration))
        return shifted(background, second), band, second * step

    def rgb_rows(self, second: int) -> list[bytes]:
        background, band, start = self.picture(second)
        return render_rows(self.width, self.height, background, band, start)


def ark_video_spec(seed: str, resolution: str, ratio: str, fps: int, duration: int) -> VideoSpec:
    width, height = scaled(*ARK_VIDEO_SIZES[resolution][ratio])
    return VideoSpec(seed, width, height, fps, duration)


def last_frame_png(spec: VideoSpec) -> bytes:
    """The last frame of the video as a PNG (what Ark's ``return_last_frame`` returns)."""
    return encode_png(spec.width, spec.height, spec.rgb_rows(spec.duration - 1))


def build_mp4(spec: VideoSpec) -> bytes:
    mb_cols = (spec.width + 15) // 16
    mb_rows = (spec.height + 15) // 16
    sps = _nal(3, 7, _sps(mb_cols, mb_rows, spec.width, spec.height))
    pps = _nal(3, 8, _pps())
    samples: list[bytes] = []
    sync: list[int] = []
    for second in range(spec.duration):
        planes = _yuv_planes(spec.rgb_rows(second), spec.width, spec.height, mb_cols * 16, mb_rows * 16)
        sync.append(len(samples) + 1)
        samples.append(_nal(3, 5, _idr_slice(planes, mb_cols, mb_rows, idr_pic_id=second % 2)))
        for frame_num in range(1, spec.fps):
            samples.append(_nal(2, 1, _skip_slice(frame_num, mb_cols * mb_rows)))
    # Each sample is one NAL unit behind a 4-byte length, as avcC's lengthSizeMinusOne = 3 says.
    payloads = [struct.pack(">I", len(s)) + s for s in samples]
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 512), b"isom", b"iso2", b"avc1", b"mp41")
    moov_size = len(_moov(spec, sps, pps, payloads, sync, 0))
    mdat_payload_offset = len(ftyp) + moov_size + 8
    moov = _moov(spec, sps, pps, payloads, sync, mdat_payload_offset)
    return ftyp + moov + _box(b"mdat", *payloads)


# --- H.264 bitstream -------------------------------------------------------------------------------------------


class _BitWriter:
    def __init__(self) -> None:
        self._out = bytearray()
        self._current = 0
        self._count = 0

    def u(self, bits: int, value: int) -> None:
        for shift in range(bits - 1, -1, -1):
            self._current = (self._current << 1) | ((value >> shift) & 1)
            self._count += 1
            if self._count == 8:
                self._out.append(self._current)
                self._current = 0
                self._count = 0

    def ue(self, value: int) -> None:
        length = (value + 1).bit_length()
        self.u(length - 1, 0)
        self.u(length, value + 1)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        while self._count:
            self.u(1, 0)

    def raw(self, data: bytes) -> None:
        if self._count:
            raise ValueError("raw bytes need byte alignment")
        self._out += data

    def trailing(self) -> bytes:
        self.u(1, 1)  # rbsp_stop_one_bit
        self.align()
        return bytes(self._out)


def _nal(ref_idc: int, unit_type: int, rbsp: bytes) -> bytes:
    return bytes([(ref_idc << 5) | unit_type]) + _escape(rbsp)


def _escape(rbsp: bytes) -> bytes:
    """Emulation prevention: 00 00 0x (x <= 3) inside a NAL unit becomes 00 00 03 0x."""
    out = bytearray()
    pos = 0
    while True:
        i = rbsp.find(b"\x00\x00", pos)
        if i == -1 or i + 2 >= len(rbsp):
            out += rbsp[pos:]
            return bytes(out)
        if rbsp[i + 2] <= 3:
            out += rbsp[pos : i + 2] + b"\x03"
            pos = i + 2
        else:
            out += rbsp[pos : i + 3]
            pos = i + 3


_PROFILE_BASELINE = 66
_CONSTRAINT_FLAGS = 0b11000000  # constraint_set0 and set1: Constrained Baseline
_LEVEL = 30


def _sps(mb_cols: int, mb_rows: int, width: int, height: int) -> bytes:
    w = _BitWriter()
    w.u(8, _PROFILE_BASELINE)
    w.u(8, _CONSTRAINT_FLAGS)
    w.u(8, _LEVEL)
    w.ue(0)  # seq_parameter_set_id
    w.ue(_LOG2_MAX_FRAME_NUM - 4)
    w.ue(2)  # pic_order_cnt_type 2: output order = decoding order
    w.ue(1)  # max_num_ref_frames
    w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    w.ue(mb_cols - 1)
    w.ue(mb_rows - 1)
    w.u(1, 1)  # frame_mbs_only_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    crop_right = (mb_cols * 16 - width) // 2  # crop units are 2 pixels in 4:2:0
    crop_bottom = (mb_rows * 16 - height) // 2
    if crop_right or crop_bottom:
        w.u(1, 1)
        w.ue(0)
        w.ue(crop_right)
        w.ue(0)
        w.ue(crop_bottom)
    else:
        w.u(1, 0)
    w.u(1, 0)  # vui_parameters_present_flag
    return w.trailing()


def _pps() -> bytes:
    w = _BitWriter()
    w.ue(0)  # pic_parameter_set_id
    w.ue(0)  # seq_parameter_set_id
    w.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    w.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    w.ue(0)  # num_slice_groups_minus1
    w.ue(0)  # num_ref_idx_l0_default_active_minus1
    w.ue(0)  # num_ref_idx_l1_default_active_minus1
    w.u(1, 0)  # weighted_pred_flag
    w.u(2, 0)  # weighted_bipred_idc
    w.se(0)  # pic_init_qp_minus26
    w.se(0)  # pic_init_qs_minus26
    w.se(0)  # chroma_qp_index_offset
    w.u(1, 1)  # deblocking_filter_control_present_flag
    w.u(1, 0)  # constrained_intra_pred_flag
    w.u(1, 0)  # redundant_pic_cnt_present_flag
    return w.trailing()


_SLICE_P = 5  # P, and every slice of the picture is P
_SLICE_I = 7  # I, and every slice of the picture is I
_MB_TYPE_I_PCM = 25


def _idr_slice(
    planes: tuple[list[bytes], list[bytes], list[bytes]], mb_cols: int, mb_rows: int, idr_pic_id: int
) -> bytes:
    luma, cb, cr = planes
    w = _BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(_SLICE_I)
    w.ue(0)  # pic_parameter_set_id
    w.u(_LOG2_MAX_FRAME_NUM, 0)  # frame_num
    w.ue(idr_pic_id)
    w.u(1, 0)  # no_output_of_prior_pics_flag
    w.u(1, 0)  # long_term_reference_flag
    w.se(0)  # slice_qp_delta
    w.ue(1)  # disable_deblocking_filter_idc: off
    for mb_y in range(mb_rows):
        for mb_x in range(mb_cols):
            w.ue(_MB_TYPE_I_PCM)
            w.align()  # pcm_alignment_zero_bit
            x, y = mb_x * 16, mb_y * 16
            block = [row[x : x + 16] for row in luma[y : y + 16]]
            cx, cy = mb_x * 8, mb_y * 8
            block += [row[cx : cx + 8] for row in cb[cy : cy + 8]]
            block += [row[cx : cx + 8] for row in cr[cy : cy + 8]]
            w.raw(b"".join(block))
    return w.trailing()


def _skip_slice(frame_num: int, mb_count: int) -> bytes:
    w = _BitWriter()
    w.ue(0)  # first_mb_in_slice
    w.ue(_SLICE_P)
    w.ue(0)  # pic_parameter_set_id
    w.u(_LOG2_MAX_FRAME_NUM, frame_num)
    w.u(1, 0)  # num_ref_idx_active_override_flag
    w.u(1, 0)  # ref_pic_list_modification_flag_l0
    w.u(1, 0)  # adaptive_ref_pic_marking_mode_flag
    w.se(0)  # slice_qp_delta
    w.ue(1)  # disable_deblocking_filter_idc: off
    w.ue(mb_count)  # mb_skip_run: the whole picture is a copy of the previous one
    return w.trailing()


def _yuv_planes(
    rows: Sequence[bytes], width: int, height: int, padded_width: int, padded_height: int
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """BT.601 limited-range Y, Cb, Cr planes (4:2:0), padded to whole macroblocks by repeating edges.

    Limited range keeps every sample above zero, as PCM samples must be."""
    cache: dict[bytes, tuple[int, int, int]] = {}
    luma: list[bytes] = []
    cb: list[bytes] = []
    cr: list[bytes] = []
    for y in range(padded_height):
        row = rows[min(y, height - 1)]
        ys = bytearray()
        us = bytearray()
        vs = bytearray()
        for x in range(padded_width):
            sx = min(x, width - 1) * 3
            pixel = row[sx : sx + 3]
            yuv = cache.get(pixel)
            if yuv is None:
                yuv = cache[pixel] = _to_yuv(pixel[0], pixel[1], pixel[2])
            ys.append(yuv[0])
            if x % 2 == 0 and y % 2 == 0:
                us.append(yuv[1])
                vs.append(yuv[2])
        luma.append(bytes(ys))
        if y % 2 == 0:
            cb.append(bytes(us))
            cr.append(bytes(vs))
    return luma, cb, cr


def _to_yuv(r: int, g: int, b: int) -> tuple[int, int, int]:
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)


# --- ISO BMFF container ----------------------------------------------------------------------------------------

_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, *payloads: bytes) -> bytes:
    body = b"".join(payloads)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version: int, flags: int, *payloads: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payloads)


def _moov(spec: VideoSpec, sps: bytes, pps: bytes, payloads: list[bytes], sync: list[int], data_offset: int) -> bytes:
    count = len(payloads)
    timescale = spec.fps * _TIMESCALE_PER_FRAME
    media_duration = count * _TIMESCALE_PER_FRAME
    movie_duration = round(count * 1000 / spec.fps)  # mvhd timescale is 1000
    mvhd = _full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, 1000, movie_duration),
        struct.pack(">IH", 0x00010000, 0x0100),
        bytes(10),
        _MATRIX,
        bytes(24),
        struct.pack(">I", 2),  # next_track_ID
    )
    tkhd = _full_box(
        b"tkhd",
        0,
        3,  # enabled, in movie
        struct.pack(">IIII", 0, 0, 1, 0),
        struct.pack(">I", movie_duration),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),
        _MATRIX,
        struct.pack(">II", spec.width << 16, spec.height << 16),
    )
    mdhd = _full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, media_duration, 0x55C4, 0))
    hdlr = _full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", bytes(12), b"VideoHandler\x00")
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),  # version, profile, compat, level, 4-byte lengths, 1 SPS
        struct.pack(">H", len(sps)),
        sps,
        bytes([1]),
        struct.pack(">H", len(pps)),
        pps,
    )
    compressor = b"simulator"
    avc1 = _box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),
        struct.pack(">HH", spec.width, spec.height),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        struct.pack(">IH", 0, 1),  # reserved, frame_count
        bytes([len(compressor)]) + compressor + bytes(31 - len(compressor)),
        struct.pack(">Hh", 0x0018, -1),
        avcc,
    )
    stbl = _box(
        b"stbl",
        _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        _full_box(b"stts", 0, 0, struct.pack(">III", 1, count, _TIMESCALE_PER_FRAME)),
        _full_box(b"stss", 0, 0, struct.pack(f">I{len(sync)}I", len(sync), *sync)),
        _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, count, 1)),
        _full_box(b"stsz", 0, 0, struct.pack(f">II{count}I", 0, count, *(len(p) for p in payloads))),
        _full_box(b"stco", 0, 0, struct.pack(">II", 1, data_offset)),
    )
    dinf = _box(b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1)))
    minf = _box(b"minf", _full_box(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
    trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
    return _box(b"moov", mvhd, trak)


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """Top-level boxes of an ISO BMFF byte range as (type, payload start, payload end); for checks and tests."""
    end = len(data) if end is None else end
    boxes: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size < 8 or pos + size > end:
            raise ValueError(f"bad box size {size} at {pos}")
        boxes.append((kind, pos + 8, pos + size))
        pos += size
    if pos != end:
        raise ValueError("trailing bytes after the last box")
    return boxes
