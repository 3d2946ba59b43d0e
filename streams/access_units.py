"""Whole pictures out of demuxed packets: a multi-slice picture split over several packets is rejoined.

Many IP cameras (and RTP payloaders) repeat the parameter sets (SPS/PPS, and VPS for H.265)
before every keyframe slice. By the H.264/H.265 rules a parameter set after a slice begins a new
access unit, so FFmpeg's parser cuts such a keyframe into several packets: H.264 gives one packet
per slice (over RTSP all with the picture's pts, in an MPEG-TS recording the later ones with
none); H.265 gives the first slice alone and puts the other slices in one packet with the next
picture. The decoder takes every packet for a whole picture: the first slice comes out with the
rest of the image missing (green), the later slices as broken pictures of their own, and a
keyframe decoded alone and drained (keyframes-only sampling) keeps only its first slice.

`whole_pictures` reads the slice headers (H.264 first_mb_in_slice, H.265
first_slice_segment_in_pic_flag): a packet whose first slice continues a picture is appended to
the packet before it, up to where a new picture starts in it, if one does; that part goes on as
a packet of its own. So each packet is passed on when the next one arrives (one frame interval
later on a live stream). Other codecs pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import av

JOINED_CODECS = ("h264", "hevc")


def nal_length_size(extradata: bytes | None, codec: str) -> int | None:
    """Bytes of each NAL length prefix in MP4-style (avcC/hvcC) packets; None for Annex B start codes."""
    if not extradata or extradata[0] != 1:  # Annex B extradata (or none): packets use start codes
        return None
    at = 21 if codec == "hevc" else 4  # lengthSizeMinusOne in the low two bits (ISO/IEC 14496-15)
    return (extradata[at] & 3) + 1 if len(extradata) > at else 4


def _nal_units(data: bytes, length_size: int | None) -> Iterator[tuple[int, int]]:
    """(where the NAL unit's start code or length prefix begins, where its header begins) in one packet."""
    if length_size is None:
        i = data.find(b"\0\0\1")
        while i >= 0:
            yield (i - 1 if i and data[i - 1] == 0 else i), i + 3  # a 4-byte start code begins with a zero
            i = data.find(b"\0\0\1", i + 3)
        return
    i = 0
    while i + length_size < len(data):
        size = int.from_bytes(data[i : i + length_size], "big")
        yield i, i + length_size
        i += length_size + size


def _slice_info(data: bytes, h: int, codec: str) -> tuple[bool, bool] | None:
    """For the NAL unit whose header is at `h`: (starts a picture, keyframe slice) if it is a slice, else None."""
    if codec == "h264":
        if h + 1 >= len(data):
            return None
        kind = data[h] & 0x1F
        if kind not in (1, 2, 5):  # slice, data partition A, IDR slice
            return None
        return bool(data[h + 1] & 0x80), kind == 5  # first_mb_in_slice is ue(v): 0 is the single bit 1
    if h + 2 >= len(data):
        return None
    kind = (data[h] >> 1) & 0x3F
    if kind >= 32:  # not a VCL NAL unit
        return None
    return bool(data[h + 2] & 0x80), 16 <= kind <= 23  # first_slice_segment_in_pic_flag; IRAP


def starts_picture(data: bytes, codec: str, length_size: int | None = None) -> bool | None:
    """True if the packet's first slice begins a picture, False if it continues one, None if it holds no slice."""
    for _, h in _nal_units(data, length_size):
        info = _slice_info(data, h, codec)
        if info is not None:
            return info[0]
    return None


def split_continuation(data: bytes, codec: str, length_size: int | None = None) -> tuple[bytes, bytes | None, bool]:
    """For a packet that begins with the rest of a picture: (that rest, the packet from the next picture on, keyframe).

    The next picture starts with the first NAL unit after the last slice of the rest (its access
    unit delimiter or parameter sets), or with its first slice. (data, None, False) if no picture
    starts in the packet; `keyframe` says whether the part that follows holds a keyframe slice.
    """
    seen_slice = False
    cut: int | None = None  # first non-slice NAL unit after a slice
    for pos, h in _nal_units(data, length_size):
        info = _slice_info(data, h, codec)
        if info is None:
            if seen_slice and cut is None:
                cut = pos
            continue
        if info[0] and seen_slice:
            at = pos if cut is None else cut
            rest = data[at:]
            return data[:at], rest, any(
                (i := _slice_info(rest, k, codec)) is not None and i[1] for _, k in _nal_units(rest, length_size)
            )
        seen_slice, cut = True, None
    return data, None, False


def _new_packet(data: bytes, like: av.Packet, *, times: bool = True) -> av.Packet:
    """A packet holding `data`, in `like`'s time base (with its timestamps and key flag if `times`)."""
    packet = av.Packet(data)
    if like.time_base is not None:
        packet.time_base = like.time_base
    if times:
        packet.pts, packet.dts = like.pts, like.dts
        packet.is_keyframe = like.is_keyframe
    return packet


def _join(parts: list[av.Packet]) -> av.Packet:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    joined = _new_packet(b"".join(bytes(p) for p in parts), first, times=False)
    joined.pts = next((p.pts for p in parts if p.pts is not None), None)
    joined.dts = next((p.dts for p in parts if p.dts is not None), None)
    if first.duration:
        joined.duration = first.duration
    joined.is_keyframe = any(p.is_keyframe for p in parts)
    return joined


def whole_pictures(packets: Iterable[av.Packet], codec_context: av.VideoCodecContext) -> Iterator[av.Packet]:
    """`packets` regrouped so that each holds one whole picture (H.264 and H.265).

    Packets that hold no slice (parameter sets alone) go with the picture after them. Slices that
    continue a picture whose start was never seen (a stream joined mid-picture) are dropped: they
    cannot make a whole image. A picture cut out of a packet has no timestamps. The empty packet
    that ends a stream passes through, after the last picture.
    """
    codec = codec_context.name
    if codec not in JOINED_CODECS:
        yield from packets
        return
    length_size = nal_length_size(bytes(codec_context.extradata or b""), codec)
    parts: list[av.Packet] = []
    has_slice = False  # whether `parts` holds the start of a picture yet
    for packet in packets:
        if not packet.size:
            if parts:
                yield _join(parts)
                parts, has_slice = [], False
            yield packet
            continue
        data = bytes(packet)
        starts = starts_picture(data, codec, length_size)
        if starts is False:
            tail, rest, rest_key = split_continuation(data, codec, length_size)
            if has_slice:  # else: the rest of a picture whose first slice never came
                parts.append(packet if rest is None else _new_packet(tail, packet))
            if rest is None:
                continue
            packet = _new_packet(rest, packet, times=False)
            packet.is_keyframe = rest_key
            starts = True
        if has_slice:
            yield _join(parts)
            parts, has_slice = [], False
        parts.append(packet)
        has_slice = starts is True
    if parts:
        yield _join(parts)
