#!/usr/bin/env python3
"""Writes the hand-made seed corpus under tests/fuzz/corpus/<target>/.

Each seed follows its target's input layout (see the comment at the top of
tests/fuzz/<target>_fuzz.cc): option bytes first, then split point and
chunking seed, then the byte stream. Re-run after changing a layout:

    python3 tests/fuzz/make_corpus.py

Crash reproducers found by scripts/fuzz.sh are added to the corpus by hand
as regression-<what>; this script never deletes files.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def be(width, v):
    return v.to_bytes(width, "big")


def le(width, v):
    return v.to_bytes(width, "little")


# ------------------------------------------------------------ length_field
WIDTH_IDX = {1: 0, 2: 1, 4: 2, 8: 3}


def length_seed(width=4, little=False, fail_fast=True, adj_mode=0,
                strip_mode=1, offset=None, adj_byte=0, strip_byte=0,
                mf_mode=2, mf_value=0, adj_raw=0, cut=0, seed=0,
                stream=b""):
    b0 = (WIDTH_IDX[width] | (4 if little else 0) | (8 if fail_fast else 0)
          | (adj_mode << 4) | (strip_mode << 6))
    b1 = 0 if offset is None else 0x40 | offset
    return (bytes([b0, b1, adj_byte & 0xFF, strip_byte, mf_mode])
            + struct.pack(">H", mf_value) + struct.pack(">Q", adj_raw)
            + struct.pack(">HH", cut, seed) + stream)


def lp(width, payload, little=False):
    n = len(payload)
    return (le(width, n) if little else be(width, n)) + payload


L = "length_field"
# The server default: 4-byte BE payload length, header stripped, 1 MiB.
write(L, "default-one-frame", length_seed(stream=lp(4, b"HELLO")))
write(L, "default-coalesced", length_seed(
    cut=7, stream=lp(4, b"HELLO") + lp(4, b"") + lp(4, b"abc") + b"\0\0"))
write(L, "default-ffffffff", length_seed(stream=b"\xff\xff\xff\xff" + b"abc"))
write(L, "empty", length_seed())
write(L, "nothing-at-all", b"")
# Discarding mode: an oversize frame (max_frame 16), then a good one.
write(L, "discard-then-frame", length_seed(
    fail_fast=False, mf_mode=0, mf_value=16, cut=5,
    stream=lp(4, b"x" * 20) + lp(4, b"ok")))
write(L, "failfast-oversize", length_seed(
    mf_mode=0, mf_value=16, stream=lp(4, b"x" * 20) + lp(4, b"ok")))
for w in (1, 2, 8):
    for little in (False, True):
        write(L, "width%d-%s" % (w, "le" if little else "be"), length_seed(
            width=w, little=little, mf_mode=1, mf_value=300, cut=3,
            stream=lp(w, b"ab", little) + lp(w, b"cdef", little)
            + lp(w, b"", little) + lp(w, b"gh", little)[:-1]))
# The 8-byte field is signed: above INT64_MAX is corrupt.
write(L, "width8-above-int64max", length_seed(
    width=8, stream=be(8, 1 << 63) + b"abc"))
write(L, "width8-ffff", length_seed(width=8, little=True, mf_mode=3,
                                    stream=b"\xff" * 8 + b"abc"))
# Netty-style: 2 leading bytes, 2-byte length counting the whole frame
# (adjustment -header_end), nothing stripped.
write(L, "offset2-whole-frame-length", length_seed(
    width=2, offset=2, adj_mode=1, strip_mode=0, mf_mode=1, mf_value=100,
    stream=b"\xca\xfe" + be(2, 9) + b"hello" + b"\xca\xfe" + be(2, 3)))
# Positive adjustment (a 2-byte trailer not counted), strip 1 byte.
write(L, "adj-plus2-strip1", length_seed(
    width=2, adj_mode=2, adj_byte=2, strip_mode=2, strip_byte=1,
    mf_mode=1, mf_value=64,
    stream=be(2, 3) + b"abc" + b"\r\n" + be(2, 0) + b"\r\n"))
# Negative adjustment and a value below it: corrupt.
write(L, "adj-negative-corrupt", length_seed(
    width=1, adj_mode=2, adj_byte=-5, strip_mode=0, mf_mode=1, mf_value=64,
    stream=b"\x07ab" + b"\x02"))
# Extreme 64-bit adjustment (INT64_MIN): invalid options.
write(L, "adj-int64min-invalid", length_seed(
    width=8, adj_mode=3, adj_raw=1 << 63, stream=lp(8, b"x")))
# Strip past the header: invalid options.
write(L, "strip-too-far-invalid", length_seed(strip_mode=3, strip_byte=200))
# Round-trip shaped: [len][bytes] payload pieces, little-endian field.
write(L, "payload-pieces", length_seed(
    width=2, little=True, mf_mode=0, mf_value=40,
    stream=b"\x03abc\x00\x05hello\x26" + b"y" * 38))

# ------------------------------------------------------------ fixed_length
F = "fixed_length"


def fixed_seed(mode, size_value, max_value=0, cut=0, seed=0, stream=b""):
    return (bytes([mode]) + struct.pack(">HHHH", size_value, max_value, cut,
                                        seed) + stream)


write(F, "size4-coalesced", fixed_seed(0, 3, cut=5, stream=b"abcdefghij"))
write(F, "size1", fixed_seed(0, 0, stream=b"xyz"))
write(F, "empty", fixed_seed(0, 3))
write(F, "size0-invalid", fixed_seed(1, 0))
write(F, "size-over-max-invalid", fixed_seed(2 | (2 << 2), 100, 50))
write(F, "size-equals-max", fixed_seed(1 | (1 << 2), 5, stream=b"12345678901"))
write(F, "payload-pieces", fixed_seed(0, 3, stream=b"\x04abcd\x04efgh\x02zz"))

# --------------------------------------------------------------- delimiter
D = "delimiter"


def delim_seed(delims, keep=False, map_=False, mf_mode=2, mf_value=0,
               len_mode=2, cut=0, seed=0, stream=b""):
    mode = ((len(delims) - 1) | (4 if keep else 0) | (8 if map_ else 0)
            | (mf_mode << 4) | (len_mode << 6))
    out = bytes([mode]) + struct.pack(">H", mf_value)
    for d in delims:
        # len_mode 2: len = 1 + b % 64; len_mode 3: len = b % 68
        out += bytes([len(d) - 1 if len_mode == 2 else len(d)]) + d
    return out + struct.pack(">HH", cut, seed) + stream


write(D, "nl-strip", delim_seed([b"\n"], cut=3, stream=b"a\nbb\n\nccc"))
write(D, "nl-keep", delim_seed([b"\n"], keep=True, stream=b"a\nbb\n\nccc"))
write(D, "delimiter-only", delim_seed([b"\n"], stream=b"\n\n\n\n"))
write(D, "empty", delim_seed([b"\n"]))
write(D, "crlf-and-lf", delim_seed([b"\r\n", b"\n"], cut=2,
                                   stream=b"a\r\nb\nc\r\r\nd\r"))
write(D, "ab-a-docs-example", delim_seed([b"ab", b"a"], stream=b"xabya"))
write(D, "ab-a-mapped", delim_seed([b"ab", b"a"], map_=True,
                                   stream=bytes(range(40))))
write(D, "four-delims", delim_seed(
    [b"abc", b"bcd", b"x", b"\0"], keep=True, cut=4,
    stream=b"11abc22bcd33x44\x0055ab"))
write(D, "too-long", delim_seed([b"\n"], mf_mode=0, mf_value=5,
                                stream=b"aaaaaaaaaa\nb\n"))
write(D, "too-long-multi", delim_seed([b"--", b"-"], mf_mode=0, mf_value=3,
                                      stream=b"abc-" + b"abcd--"))
write(D, "max-length-delim", delim_seed(
    [b"=" * 63 + b"!"], stream=b"payload" + b"=" * 63 + b"!" + b"==="))
write(D, "prefix-first-invalid", delim_seed([b"a", b"ab"], stream=b"xab"))
write(D, "delim-65-invalid", delim_seed([b"z" * 65], len_mode=3))
write(D, "zero-max-invalid", delim_seed([b"\n"], mf_mode=0, mf_value=0))
write(D, "payload-pieces", delim_seed(
    [b"\r\n", b"\n"], stream=b"\x03abc\x02d\r\x00\x04e\nfg"))

# -------------------------------------------------------------------- line
N = "line"


def line_seed(crlf=False, mf_mode=2, mf_value=0, map_=False, cut=0, seed=0,
              stream=b""):
    mode = (1 if crlf else 0) | (mf_mode << 1) | (8 if map_ else 0)
    return bytes([mode]) + struct.pack(">HHH", mf_value, cut, seed) + stream


write(N, "mixed-endings", line_seed(cut=6, stream=b"hello\r\nworld\nfoo\r\n"))
write(N, "cr-split-from-lf", line_seed(cut=4, stream=b"abc\r\ndef\r"))
write(N, "lone-cr-is-data", line_seed(stream=b"a\rb\n\r\r\n"))
write(N, "delimiter-only", line_seed(stream=b"\n\n\r\n\n"))
write(N, "empty", line_seed())
write(N, "too-long", line_seed(mf_mode=0, mf_value=4,
                               stream=b"abcd\r\nabcd\r" + b"\n" + b"abcde\n"))
write(N, "limit-with-cr", line_seed(mf_mode=0, mf_value=3,
                                    stream=b"abc\r" + b"\n" + b"abc\r"))
write(N, "mapped", line_seed(map_=True, crlf=True, mf_mode=0, mf_value=6,
                             stream=bytes(range(64))))
write(N, "zero-max-invalid", line_seed(mf_mode=0, mf_value=0))
write(N, "payload-pieces", line_seed(stream=b"\x02ab\x01\r\x00\x03a\nb"))

# --------------------------------------------------------------- heartbeat
H = "heartbeat"


def hb_seed(mode=0, cut=0, seed=0, stream=b""):
    return bytes([mode]) + struct.pack(">HH", cut, seed) + stream


def probe(t, seq, ts):
    return bytes([t]) + be(8, seq) + be(8, ts)


def frame(p):
    return be(4, len(p)) + p


good = (frame(probe(1, 7, 123456789)) + frame(probe(2, 7, 123456789))
        + frame(b"\x03hello") + frame(b"\x03"))
write(H, "ping-pong-data", hb_seed(cut=10, stream=good))
write(H, "ping-pong-data-truncated", hb_seed(cut=30, stream=good[:-3]))
write(H, "empty-payload", hb_seed(stream=frame(b"") + frame(b"\x03x")))
write(H, "unknown-type", hb_seed(stream=frame(b"\x07abc")))
write(H, "short-ping", hb_seed(stream=frame(b"\x01abcde")))
write(H, "ffffffff", hb_seed(stream=b"\xff\xff\xff\xff" + b"\x03"))
write(H, "max-payload", hb_seed(stream=be(4, 65507) + b"\x03"))
write(H, "over-max-payload", hb_seed(stream=be(4, 65508) + b"\x03"))
write(H, "single-ping-payload", hb_seed(stream=probe(1, 1, 2)))
write(H, "payload-pieces", hb_seed(
    mode=3, stream=b"\x11" + probe(1, 5, 6) + b"\x03\x02ab\x00\x05\x07zzzz"))
write(H, "empty", hb_seed())

# ---------------------------------------------------------------- rudp_wire
# Layout: [packet type for the sealed check] + body (see rudp_wire_fuzz.cc).
import zlib  # noqa: E402

W = "rudp_wire"
VARINT_MAX = (1 << 62) - 1


def vi(v):
    """A minimal QUIC varint (RFC 9000 §16)."""
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return be(2, v | 0x4000)
    if v < 1 << 30:
        return be(4, v | 0x80000000)
    return be(8, v | 0xC000000000000000)


def ack(ranges, delay=0):
    """ranges: inclusive (low, high), descending, non-adjacent."""
    out = b"\x02" + vi(ranges[0][1]) + vi(delay) + vi(len(ranges) - 1)
    out += vi(ranges[0][1] - ranges[0][0])
    for (plo, _), (lo, hi) in zip(ranges, ranges[1:]):
        out += vi(plo - hi - 2) + vi(hi - lo)
    return out


def stream(off, data, fin=False):
    return (b"\x04" if fin else b"\x03") + vi(off) + vi(len(data)) + data


def params(mm=1 << 20, win=4 << 20, idle=30000, mad=5, md=1400):
    return vi(mm) + vi(win) + vi(idle) + vi(mad) + vi(md)


def datagram(ptype, dst, body):
    d = bytes([1, ptype, 0, 0, 0, 0, 0, 0]) + be(4, dst) + body
    return d[:4] + be(4, zlib.crc32(d)) + d[8:]


all_frames = (b"\x01" + ack([(40, 50), (0, 0)], 1234) + stream(0, b"first")
              + stream(77, b"the end", fin=True) + b"\x05" + vi(VARINT_MAX)
              + b"\x06" + vi(9) + vi(3) + b"zzz" + b"\x08" + vi(0xBAD) + b"\x07")
write(W, "frames-every-type", b"\x04" + all_frames)
write(W, "data-body-every-type", b"\x04" + be(8, 42) + all_frames)
write(W, "ack-32-ranges", b"\x04" + ack([(p, p) for p in range(62, -1, -2)], 7))
write(W, "ack-first-past-zero", b"\x04" + b"\x02" + vi(5) + vi(0) + vi(0) + vi(6))
write(W, "ack-absurd-count", b"\x04" + b"\x02" + vi(1000) + vi(0) + vi(VARINT_MAX)
      + vi(0) + b"\x01\x01\x01\x01")
write(W, "ack-below-zero", b"\x04" + b"\x02" + vi(5) + vi(0) + vi(1) + vi(3) + vi(1)
      + vi(0))
write(W, "stream-at-2-62", b"\x04" + stream(VARINT_MAX - 3, b"abc")
      + stream(VARINT_MAX, b"a"))
write(W, "stream-length-past-end", b"\x04" + b"\x03" + vi(0) + vi(VARINT_MAX) + b"abc")
write(W, "frames-truncated", b"\x04" + all_frames[:-9])
write(W, "unknown-frame", b"\x04" + b"\x01\x09\x07")
init = be(4, 0x11223344) + b"\x00" + params()
write(W, "initial-no-cookie", b"\x01" + init + bytes(1188 - len(init)))
init = be(4, 7) + b"\x14" + bytes(range(20)) + params(md=65507, mad=0)
write(W, "initial-cookie", b"\x01" + init + bytes(1188 - len(init)))
write(W, "initial-short", b"\x01" + init + bytes(100))
write(W, "retry", b"\x02" + b"\x14" + bytes(range(100, 120)))
write(W, "retry-bad-length", b"\x02" + b"\x13" + bytes(range(100, 120)))
write(W, "accept", b"\x03" + be(4, 0xFEEDFACE) + params(mm=VARINT_MAX, md=256))
write(W, "varints-rfc9000-a1", b"\x04" + bytes.fromhex(
    "c2197c5eff14e88c" "9d7f3e7d" "7bbd" "25" "4025"))
# Whole datagrams (byte 0 is also the version, so the sealed check sees 1).
write(W, "datagram-data", datagram(4, 0xDEADBEEF, be(8, 3) + all_frames))
write(W, "datagram-accept", datagram(3, 9, be(4, 5) + params()))
write(W, "datagram-bad-crc", datagram(4, 1, be(8, 0) + b"\x01")[:-1] + b"\x02")
write(W, "empty", b"")
