#!/usr/bin/env python3
"""An independent rudp client, written from docs/RUDP.md alone.

It checks that the wire format is specified completely enough to
interoperate with sluice's server: it connects to an echo server over rudp,
sends messages (some spanning several datagrams), checks every echo byte for
byte and in order, closes with a FIN, and waits for the server's FIN and
CLOSE.

  python3 tests/rudp_peer.py --port P [--host 127.0.0.1] [--messages N]
                             [--size S] [--drop P] [--seed K] [--garbage]

--drop P drops that fraction of the datagrams this client receives and of
those it sends (seeded), so both sides must retransmit.  --garbage first sends
malformed datagrams (bad checksum, wrong version, unknown type, short and
unpadded INITIALs, DATA for an unknown connection id) and, during the
session, a corrupted DATA packet and one with a malformed frame, and checks
that the server ignores them all.

Exit status 0 and a line "ok: ..." on success; 1 and "error: ..." otherwise.
Standard library only.
"""

import argparse
import os
import random
import select
import socket
import struct
import sys
import time

# ---------------------------------------------------------------- constants

VERSION = 1
T_INITIAL, T_RETRY, T_ACCEPT, T_DATA = 1, 2, 3, 4
F_PING, F_ACK, F_STREAM, F_STREAM_FIN = 0x01, 0x02, 0x03, 0x04
F_MAX_DATA, F_UNRELIABLE, F_CLOSE, F_RESET = 0x05, 0x06, 0x07, 0x08
HEADER = 12
INITIAL_SIZE = 1200
PN_SIZE = 8

MY_MAX_MESSAGE = 1 << 20
MY_WINDOW = 4 << 20
MY_IDLE_MS = 30000
MY_MAX_ACK_DELAY_MS = 5
MY_MAX_DATAGRAM = 1400

RETX_TIMEOUT = 0.2          # resend a packet's STREAM data after this
FIN_RETX_TIMEOUT = 0.02     # resend our FIN after this once the server's FIN is in
FIN_GRACE = 2.0             # then give up waiting for its ACK (see run())
MAX_IN_FLIGHT = 128 * 1024  # stream bytes in flight at most
TOTAL_TIMEOUT = 30.0
MAX_ACK_RANGES = 32
TRACE = bool(os.environ.get("RUDP_PEER_TRACE"))


class ProtocolError(Exception):
    pass


class Failure(Exception):
    pass


# ---------------------------------------------------------------- CRC-32C

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC-32C check value"


# ---------------------------------------------------------------- varints

def varint(v):
    if v < 0:
        raise ValueError("negative varint")
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return struct.pack(">H", v | 0x4000)
    if v < 1 << 30:
        return struct.pack(">I", v | 0x80000000)
    if v < 1 << 62:
        return struct.pack(">Q", v | 0xC000000000000000)
    raise ValueError("varint too large")


class Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def left(self):
        return len(self.data) - self.pos

    def u8(self):
        if self.left() < 1:
            raise ProtocolError("truncated")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def fixed(self, n):
        if self.left() < n:
            raise ProtocolError("truncated")
        v = int.from_bytes(self.data[self.pos:self.pos + n], "big")
        self.pos += n
        return v

    def raw(self, n):
        if self.left() < n:
            raise ProtocolError("truncated")
        v = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return v

    def varint(self):
        if self.left() < 1:
            raise ProtocolError("truncated varint")
        first = self.data[self.pos]
        n = 1 << (first >> 6)
        if self.left() < n:
            raise ProtocolError("truncated varint")
        v = first & 0x3F
        for i in range(1, n):
            v = (v << 8) | self.data[self.pos + i]
        self.pos += n
        return v


# varint self-checks from the doc's examples
assert Reader(bytes([0x25])).varint() == 37
assert Reader(bytes.fromhex("7bbd")).varint() == 15293
assert Reader(bytes.fromhex("9d7f3e7d")).varint() == 494878333
assert varint(15293) == bytes.fromhex("7bbd")
assert varint(494878333) == bytes.fromhex("9d7f3e7d")


# ---------------------------------------------------------------- datagrams

def datagram(ptype, dest, body, version=VERSION, corrupt=False):
    head = struct.pack(">BBHII", version, ptype, 0, 0, dest)
    d = bytearray(head + body)
    c = crc32c(d)
    if corrupt:
        c ^= 0x00010000
    struct.pack_into(">I", d, 4, c)
    return bytes(d)


def parse_header(d):
    """Returns (type, dest, body) or None when the datagram must be dropped."""
    if len(d) < HEADER:
        return None
    version, ptype, _reserved, csum, dest = struct.unpack(">BBHII", d[:HEADER])
    if version != VERSION:
        return None
    z = bytearray(d)
    z[4:8] = b"\0\0\0\0"
    if crc32c(z) != csum:
        return None
    if ptype not in (T_INITIAL, T_RETRY, T_ACCEPT, T_DATA):
        return None
    return ptype, dest, d[HEADER:]


def transport_params():
    return (varint(MY_MAX_MESSAGE) + varint(MY_WINDOW) + varint(MY_IDLE_MS) +
            varint(MY_MAX_ACK_DELAY_MS) + varint(MY_MAX_DATAGRAM))


def initial(cid, cookie, pad_to=INITIAL_SIZE):
    body = struct.pack(">I", cid) + bytes([len(cookie)]) + cookie + transport_params()
    if HEADER + len(body) < pad_to:
        body += bytes(pad_to - HEADER - len(body))
    return datagram(T_INITIAL, 0, body)


def parse_params(r):
    p = {}
    for name in ("max_message", "initial_window", "idle_timeout_ms",
                 "max_ack_delay_ms", "max_datagram"):
        p[name] = r.varint()
    if not 256 <= p["max_datagram"] <= 65507:
        raise ProtocolError("server max_datagram %d out of 256..65507" % p["max_datagram"])
    if p["max_ack_delay_ms"] >= 1 << 14:
        raise ProtocolError("server max_ack_delay_ms too large")
    return p


# ---------------------------------------------------------------- ranges

class RangeSet:
    """Sorted, disjoint, non-adjacent half-open intervals [a, b)."""

    def __init__(self):
        self.r = []

    def add(self, a, b):
        if a >= b:
            return
        out = []
        placed = False
        for (x, y) in self.r:
            if y < a:
                out.append((x, y))
            elif b < x:
                if not placed:
                    out.append((a, b))
                    placed = True
                out.append((x, y))
            else:
                a, b = min(a, x), max(b, y)
        if not placed:
            out.append((a, b))
        out.sort()
        self.r = out

    def contains(self, v):
        for (x, y) in self.r:
            if x <= v < y:
                return True
        return False

    def covers(self, a, b):
        for (x, y) in self.r:
            if x <= a and b <= y:
                return True
        return False

    def missing(self, a, b):
        """The parts of [a, b) not in the set."""
        out = []
        cur = a
        for (x, y) in self.r:
            if y <= cur:
                continue
            if x >= b:
                break
            if x > cur:
                out.append((cur, x))
            cur = max(cur, y)
            if cur >= b:
                break
        if cur < b:
            out.append((cur, b))
        return out

    def prefix_end(self, start=0):
        """End of the run starting at start (start if start is not covered)."""
        for (x, y) in self.r:
            if x <= start < y:
                return y
        return start


# ---------------------------------------------------------------- the peer

class Peer:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.drop_rng = random.Random(args.seed * 7919 + 1)
        self.addr = (socket.gethostbyname(args.host), args.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.setblocking(False)
        self.start = time.monotonic()
        self.deadline = self.start + TOTAL_TIMEOUT
        self.cid = 0
        while self.cid == 0:
            self.cid = self.rng.getrandbits(32)
        self.sid = None
        self.server_params = None
        # counters
        self.sent_dgrams = 0
        self.recv_dgrams = 0
        self.dropped_out = 0
        self.dropped_in = 0
        self.retransmitted_bytes = 0
        self.retries = 0
        self.bad_in = 0
        # send side
        self.next_pn = 0
        self.sbuf = bytearray()
        self.send_next = 0            # first stream byte never sent
        self.s_acked = RangeSet()     # stream bytes acknowledged
        self.retx = RangeSet()        # stream bytes to resend
        self.in_flight = {}           # pn -> (sent time, [(off, len, fin)], ack_eliciting)
        self.peer_limit = 0           # server's MAX_DATA
        self.fin_queued = False
        self.fin_sent = False
        self.fin_acked = False
        self.sent_pns_max = -1
        # receive side
        self.r_pns = RangeSet()       # packet numbers received
        self.largest_rx = -1
        self.largest_rx_time = 0.0
        self.ack_needed = False
        self.rcv_next = 0             # delivered in-order stream bytes
        self.ooo = {}                 # offset -> bytes (out of order)
        self.ooo_set = RangeSet()
        self.rbuf = bytearray()       # in-order bytes not yet cut into messages
        self.peer_fin = None          # offset where the server's stream ends
        self.my_limit = MY_WINDOW     # MAX_DATA we advertised
        self.max_data_pending = False
        self.received = []            # messages echoed back
        self.closed_by_peer = False
        self.rtt_samples = []
        # garbage checks
        self.evil_pns = []            # pns that must never be acknowledged

    # -- time / io

    def now(self):
        return time.monotonic()

    def check_deadline(self, what):
        if self.now() > self.deadline:
            raise Failure("timeout (%.0f s total) while %s" % (TOTAL_TIMEOUT, what))

    def trace(self, what, d):
        if TRACE:
            h = parse_header(d)
            extra = ""
            if h and h[0] == T_DATA and len(h[2]) >= 8:
                extra = " pn=%d frames=%s" % (struct.unpack_from(">Q", h[2])[0], h[2][8:40].hex())
            sys.stderr.write("%8.3f %s type=%s len=%d%s\n" % (
                self.now() - self.start, what, h[0] if h else "?", len(d), extra))

    def send_raw(self, d, droppable=True):
        if droppable and self.args.drop > 0 and self.drop_rng.random() < self.args.drop:
            self.dropped_out += 1
            self.trace("out DROPPED", d)
            return
        self.trace("out", d)
        self.sent_dgrams += 1
        try:
            self.sock.sendto(d, self.addr)
        except (BlockingIOError, InterruptedError):
            pass  # a lost datagram, as far as the protocol is concerned

    def recv_all(self, timeout):
        """Datagrams from the server, after the simulated drop."""
        out = []
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return out
        while True:
            try:
                d, src = self.sock.recvfrom(70000)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                raise Failure("ICMP port unreachable: is the server running on %s:%d?" % self.addr)
            if src != self.addr:
                continue
            if self.args.drop > 0 and self.drop_rng.random() < self.args.drop:
                self.dropped_in += 1
                self.trace("in DROPPED", d)
                continue
            self.trace("in", d)
            self.recv_dgrams += 1
            out.append(d)
        return out

    # -- handshake

    def handshake(self):
        cookie = b""
        delay = 0.25
        next_send = 0.0
        while True:
            self.check_deadline("connecting (no ACCEPT)")
            now = self.now()
            if now >= next_send:
                self.send_raw(initial(self.cid, cookie))
                next_send = now + delay
                delay = min(delay * 2, 2.0)
            for d in self.recv_all(min(0.05, next_send - self.now())):
                h = parse_header(d)
                if h is None:
                    self.bad_in += 1
                    continue
                ptype, dest, body = h
                if dest != self.cid:
                    continue
                r = Reader(body)
                if ptype == T_RETRY:
                    n = r.u8()
                    if n != 20:
                        raise ProtocolError("RETRY cookie length %d, doc says 20" % n)
                    cookie = r.raw(n)
                    if r.left():
                        raise ProtocolError("RETRY has %d trailing bytes" % r.left())
                    self.retries += 1
                    # answer at once with the cookie
                    self.send_raw(initial(self.cid, cookie))
                    delay = 0.25
                    next_send = self.now() + delay
                elif ptype == T_ACCEPT:
                    sid = r.fixed(4)
                    if sid == 0:
                        raise ProtocolError("ACCEPT with connection id 0")
                    self.server_params = parse_params(r)
                    self.sid = sid
                    self.peer_limit = self.server_params["initial_window"]
                    return
                elif ptype == T_DATA:
                    continue  # DATA before ACCEPT: ignore
                else:
                    raise ProtocolError("server sent packet type %d during handshake" % ptype)

    # -- frames

    def ack_frame(self):
        """ACK for the packets received: largest, delay, ranges (newest 32)."""
        ranges = list(reversed(self.r_pns.r))[:MAX_ACK_RANGES]  # newest first
        hi_a, hi_b = ranges[0]
        largest = hi_b - 1
        delay_us = int((self.now() - self.largest_rx_time) * 1e6)
        f = bytearray([F_ACK])
        f += varint(largest) + varint(max(0, delay_us)) + varint(len(ranges) - 1)
        f += varint(largest - hi_a)
        prev_smallest = hi_a
        for (a, b) in ranges[1:]:
            gap = prev_smallest - b - 1   # unacked packets between, minus one
            f += varint(gap) + varint(b - 1 - a)
            prev_smallest = a
        return bytes(f)

    def stream_frame(self, off, data, fin=False):
        return bytes([F_STREAM_FIN if fin else F_STREAM]) + varint(off) + varint(len(data)) + data

    def max_dgram(self):
        return min(self.server_params["max_datagram"], MY_MAX_DATAGRAM)

    def data_packet(self, frames, pn=None, corrupt=False):
        if pn is None:
            pn = self.next_pn
            self.next_pn += 1
        body = struct.pack(">Q", pn) + b"".join(frames)
        return pn, datagram(T_DATA, self.sid, body, corrupt=corrupt)

    def send_packet(self, frames, streams, eliciting):
        pn, d = self.data_packet(frames)
        self.in_flight[pn] = (self.now(), streams, eliciting)
        self.sent_pns_max = pn
        self.send_raw(d)

    # -- receiving

    def on_datagram(self, d):
        h = parse_header(d)
        if h is None:
            self.bad_in += 1
            return
        ptype, dest, body = h
        if dest != self.cid:
            return
        if ptype == T_ACCEPT:
            return  # a duplicate ACCEPT (we resent an INITIAL)
        if ptype == T_RETRY:
            return  # late RETRY
        if ptype != T_DATA:
            raise ProtocolError("server sent packet type %d after the handshake" % ptype)
        if len(d) > MY_MAX_DATAGRAM:
            raise ProtocolError("server sent a %d-byte datagram, above our max_datagram %d"
                                % (len(d), MY_MAX_DATAGRAM))
        r = Reader(body)
        pn = r.fixed(PN_SIZE)
        # parse the whole packet before applying anything
        frames = []
        eliciting = False
        while r.left():
            t = r.u8()
            if t == F_PING:
                frames.append((t,))
                eliciting = True
            elif t == F_ACK:
                largest = r.varint()
                delay = r.varint()
                count = r.varint()
                first = r.varint()
                if first > largest:
                    raise ProtocolError("ACK range below packet 0")
                ranges = [(largest - first, largest + 1)]
                smallest = largest - first
                for _ in range(count):
                    gap = r.varint()
                    length = r.varint()
                    hi = smallest - gap - 2
                    lo = hi - length
                    if lo < 0:
                        raise ProtocolError("ACK range below packet 0")
                    ranges.append((lo, hi + 1))
                    smallest = lo
                frames.append((t, largest, delay, ranges))
            elif t in (F_STREAM, F_STREAM_FIN):
                off = r.varint()
                n = r.varint()
                data = r.raw(n)
                frames.append((t, off, data))
                eliciting = True
            elif t == F_MAX_DATA:
                frames.append((t, r.varint()))
                eliciting = True
            elif t == F_UNRELIABLE:
                seq = r.varint()
                n = r.varint()
                frames.append((t, seq, r.raw(n)))
                eliciting = True
            elif t == F_CLOSE:
                frames.append((t,))
            elif t == F_RESET:
                frames.append((t, r.varint()))
            else:
                raise ProtocolError("unknown frame type 0x%02x in packet %d" % (t, pn))
        duplicate = self.r_pns.contains(pn)
        self.r_pns.add(pn, pn + 1)
        if pn > self.largest_rx:
            self.largest_rx = pn
            self.largest_rx_time = self.now()
        if eliciting:
            self.ack_needed = True
        if duplicate:
            return
        for f in frames:
            self.apply(f)

    def apply(self, f):
        t = f[0]
        if t == F_ACK:
            _, largest, delay, ranges = f
            if largest > self.sent_pns_max:
                raise ProtocolError("server acknowledged packet %d, never sent (largest %d)"
                                    % (largest, self.sent_pns_max))
            for pn in self.evil_pns:
                if any(a <= pn < b for (a, b) in ranges):
                    raise Failure("server acknowledged packet %d, which must have been dropped" % pn)
            for pn in list(self.in_flight):
                if any(a <= pn < b for (a, b) in ranges):
                    sent, streams, _el = self.in_flight.pop(pn)
                    if pn == largest:
                        self.rtt_samples.append(self.now() - sent)
                    for (off, n, fin) in streams:
                        self.s_acked.add(off, off + n)
                        if fin:
                            self.fin_acked = True
        elif t in (F_STREAM, F_STREAM_FIN):
            _, off, data = f
            end = off + len(data)
            if end > self.my_limit:
                raise ProtocolError("server sent stream bytes up to %d past our MAX_DATA %d"
                                    % (end, self.my_limit))
            if self.peer_fin is not None and end > self.peer_fin:
                raise ProtocolError("server sent data past its FIN at %d" % self.peer_fin)
            if t == F_STREAM_FIN:
                if self.peer_fin is not None and self.peer_fin != end:
                    raise ProtocolError("server moved its FIN from %d to %d" % (self.peer_fin, end))
                if end < self.rcv_next or any(b > end for (a, b) in self.ooo_set.r):
                    raise ProtocolError("server FIN at %d below data already received" % end)
                self.peer_fin = end
            self.take(off, data)
        elif t == F_MAX_DATA:
            self.peer_limit = max(self.peer_limit, f[1])
        elif t == F_UNRELIABLE:
            raise ProtocolError("echo server sent an UNRELIABLE message; we sent none")
        elif t == F_CLOSE:
            self.closed_by_peer = True
        elif t == F_RESET:
            raise Failure("server sent RESET code %d (%s)" % (
                f[1], {0: "aborted", 1: "protocol error", 2: "close timeout",
                       3: "refused"}.get(f[1], "unknown")))

    def take(self, off, data):
        end = off + len(data)
        if end <= self.rcv_next:
            return
        if off < self.rcv_next:
            data = data[self.rcv_next - off:]
            off = self.rcv_next
        if off > self.rcv_next:
            # hold out-of-order bytes (overlaps are identical by contract)
            for (a, b) in self.ooo_set.missing(off, end):
                self.ooo[a] = data[a - off:b - off]
                self.ooo_set.add(a, b)
            return
        self.rbuf += data
        self.rcv_next = end
        # drain held bytes that are now in order
        while self.ooo_set.r and self.ooo_set.r[0][0] <= self.rcv_next:
            keys = sorted(k for k in self.ooo if k < self.ooo_set.r[0][1])
            for k in keys:
                chunk = self.ooo.pop(k)
                kend = k + len(chunk)
                if kend > self.rcv_next:
                    self.rbuf += chunk[self.rcv_next - k:]
                    self.rcv_next = kend
            self.ooo_set.r.pop(0)
        self.cut_messages()
        # flow control: raise the limit once half the window is used
        if self.rcv_next + MY_WINDOW // 2 > self.my_limit:
            self.my_limit = self.rcv_next + MY_WINDOW
            self.max_data_pending = True

    def cut_messages(self):
        pos = 0
        while len(self.rbuf) - pos >= 4:
            n = struct.unpack_from(">I", self.rbuf, pos)[0]
            if n > MY_MAX_MESSAGE:
                raise ProtocolError("server sent a %d-byte message, above our max_message" % n)
            if len(self.rbuf) - pos - 4 < n:
                break
            self.received.append(bytes(self.rbuf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del self.rbuf[:pos]

    # -- sending

    def detect_losses(self):
        now = self.now()
        # Once the server's stream has ended, resend a lost FIN quickly: the
        # server drains for only 3 PTO after its CLOSE, then drops our packets.
        peer_done = self.peer_fin is not None and self.rcv_next >= self.peer_fin
        for pn in list(self.in_flight):
            sent, streams, el = self.in_flight[pn]
            fin_only = streams and all(fin for (_o, _n, fin) in streams)
            timeout = FIN_RETX_TIMEOUT if (peer_done and fin_only) else RETX_TIMEOUT
            if now - sent >= timeout:
                del self.in_flight[pn]
                for (off, n, fin) in streams:
                    for (a, b) in self.s_acked.missing(off, off + n):
                        self.retx.add(a, b)
                    if fin and not self.fin_acked:
                        self.fin_sent = False  # resend it

    def bytes_in_flight(self):
        return sum(n for (_, streams, _) in self.in_flight.values() for (_, n, _) in streams)

    def flush(self):
        """Sends ACKs, MAX_DATA, retransmissions, new data and the FIN."""
        room_total = self.max_dgram() - HEADER - PN_SIZE
        while True:
            frames = []
            streams = []
            eliciting = False
            if self.ack_needed and self.r_pns.r:
                frames.append(self.ack_frame())
            if self.max_data_pending:
                frames.append(bytes([F_MAX_DATA]) + varint(self.my_limit))
                eliciting = True
            room = room_total - sum(len(f) for f in frames)
            # retransmissions first
            while self.retx.r and room > 20:
                a, b = self.retx.r[0]
                n = min(b - a, room - 1 - 8 - 2)
                frames.append(self.stream_frame(a, bytes(self.sbuf[a:a + n])))
                streams.append((a, n, False))
                self.retransmitted_bytes += n
                self.retx.r[0] = (a + n, b)
                if a + n >= b:
                    self.retx.r.pop(0)
                room -= len(frames[-1])
                eliciting = True
            # new data, within the server's limit and our in-flight cap
            inflight = self.bytes_in_flight() + sum(n for (_, n, _) in streams)
            while (self.send_next < len(self.sbuf) and room > 20 and
                   self.send_next < self.peer_limit and inflight < MAX_IN_FLIGHT):
                a = self.send_next
                n = min(len(self.sbuf) - a, room - 1 - 8 - 2, self.peer_limit - a)
                frames.append(self.stream_frame(a, bytes(self.sbuf[a:a + n])))
                streams.append((a, n, False))
                self.send_next += n
                inflight += n
                room -= len(frames[-1])
                eliciting = True
            if (self.fin_queued and not self.fin_sent and not self.fin_acked and
                    self.send_next == len(self.sbuf) and not self.retx.r and room > 20):
                frames.append(self.stream_frame(len(self.sbuf), b"", fin=True))
                streams.append((len(self.sbuf), 0, True))
                self.fin_sent = True
                eliciting = True
            if not frames:
                return
            self.ack_needed = False
            self.max_data_pending = False
            self.send_packet(frames, streams, eliciting)
            if not eliciting:
                return

    def step(self, what, timeout=0.01):
        self.check_deadline(what)
        for d in self.recv_all(timeout):
            try:
                self.on_datagram(d)
            except ProtocolError as e:
                # a malformed packet: note it and drop the packet whole
                raise Failure("protocol violation from server: %s" % e)
        self.detect_losses()
        self.flush()

    # -- garbage

    def expect_silence(self, label, d, wait=0.15, retry_for=None):
        """Sends a malformed datagram; the server must not answer at all
        (retry_for: the answer must be exactly one fresh RETRY to that id)."""
        self.send_raw(d, droppable=False)
        answers = 0
        end = self.now() + wait
        while self.now() < end:
            r, _, _ = select.select([self.sock], [], [], max(0.0, end - self.now()))
            if not r:
                break
            try:
                resp, src = self.sock.recvfrom(70000)
            except (BlockingIOError, InterruptedError):
                continue
            if src == self.addr:
                h = parse_header(resp)
                if (retry_for is not None and h and h[0] == T_RETRY and h[1] == retry_for
                        and len(resp) == 33 and resp[HEADER] == 20 and answers == 0):
                    answers += 1
                    continue
                desc = "type %d, %d bytes" % (h[0], len(resp)) if h else "%d bytes" % len(resp)
                raise Failure("garbage '%s' got an answer (%s); it must be %s" % (
                    label, desc, "dropped" if retry_for is None else "answered by one RETRY"))
        if retry_for is not None and answers != 1:
            raise Failure("garbage '%s' got no RETRY; the doc says a cookie that fails the "
                          "check gets a fresh RETRY" % label)

    def garbage_before(self):
        cid = self.cid ^ 0x5A5A5A5A or 1
        good = initial(cid, b"")
        g = []
        bad_crc = bytearray(good)
        bad_crc[100] ^= 0x01
        g.append(("INITIAL with a bad checksum", bytes(bad_crc)))
        g.append(("INITIAL with version 2",
                  datagram(T_INITIAL, 0, good[HEADER:], version=2)))
        g.append(("INITIAL with version 0",
                  datagram(T_INITIAL, 0, good[HEADER:], version=0)))
        g.append(("unknown packet type 9",
                  datagram(9, 0, good[HEADER:])))
        g.append(("unknown packet type 0",
                  datagram(0, 0, good[HEADER:])))
        g.append(("11-byte datagram", good[:11]))
        g.append(("empty datagram", b""))
        g.append(("INITIAL truncated to 1199 bytes",
                  datagram(T_INITIAL, 0, good[HEADER:1199])))
        g.append(("INITIAL truncated inside its fields (20 bytes)",
                  datagram(T_INITIAL, 0, good[HEADER:20])))
        unpadded = datagram(T_INITIAL, 0, struct.pack(">I", cid) + b"\0" + transport_params())
        g.append(("INITIAL without padding (%d bytes)" % len(unpadded), unpadded))
        g.append(("INITIAL with client id 0", initial(0, b"")))
        g.append(("INITIAL with cookie length 7",
                  datagram(T_INITIAL, 0, (struct.pack(">I", cid) + bytes([7]) + bytes(7) +
                                          transport_params()).ljust(INITIAL_SIZE - HEADER, b"\0"))))
        g.append(("DATA for unknown connection id",
                  datagram(T_DATA, 0x12345678,
                           struct.pack(">Q", 0) + bytes([F_PING]) +
                           self.stream_frame(0, b"\0\0\0\4EVIL"))))
        g.append(("DATA for connection id 0",
                  datagram(T_DATA, 0, struct.pack(">Q", 0) + bytes([F_PING]))))
        g.append(("RETRY sent to the server",
                  datagram(T_RETRY, 0, bytes([20]) + bytes(20))))
        g.append(("ACCEPT sent to the server",
                  datagram(T_ACCEPT, 0x12345678, struct.pack(">I", 5) + transport_params())))
        for label, d in g:
            self.expect_silence(label, d)
        # a cookie that fails the check gets a fresh RETRY, not silence
        self.expect_silence("INITIAL with a forged 20-byte cookie",
                            initial(cid, bytes(range(20))), retry_for=cid)
        return len(g) + 1

    def garbage_during(self):
        """After the handshake: a corrupted DATA packet and one whose last
        frame is malformed.  Both carry a bogus message at the stream's next
        offset; the server must drop them whole and acknowledge neither."""
        evil = b"\0\0\0\x08EVILEVIL"
        off = len(self.sbuf)  # nothing sent at or above this yet
        # bad checksum, valid connection id: it reuses the next packet number
        _pn, d = self.data_packet([self.stream_frame(off, evil)], pn=self.next_pn, corrupt=True)
        self.send_raw(d, droppable=False)
        # valid checksum, a good STREAM frame then an unknown frame type: the
        # whole packet is malformed and must not be acknowledged
        pn, d = self.data_packet([bytes([F_PING]), self.stream_frame(off, evil), bytes([0x3F])])
        self.evil_pns.append(pn)
        self.send_raw(d, droppable=False)
        # a truncated STREAM frame (length past the packet's end)
        pn, d = self.data_packet([bytes([F_STREAM]) + varint(off) + varint(500) + evil])
        self.evil_pns.append(pn)
        self.send_raw(d, droppable=False)
        # the same connection id from another address (no migration)
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            other.bind(("0.0.0.0", 0))
            pn2 = self.next_pn + 1000
            _pn, d = self.data_packet([self.stream_frame(off, evil)], pn=pn2)
            other.sendto(d, self.addr)
            other.settimeout(0.15)
            try:
                resp, _src = other.recvfrom(70000)
                raise Failure("DATA with a valid id from another address got an answer (%d bytes)"
                              % len(resp))
            except socket.timeout:
                pass
        finally:
            other.close()
        return 4

    # -- the session

    def run(self):
        a = self.args
        n_garbage = 0
        if a.garbage:
            n_garbage += self.garbage_before()
        t0 = self.now()
        self.handshake()
        t_hs = self.now() - t0
        sp = self.server_params
        if sp["max_message"] < a.size:
            raise Failure("server max_message %d below --size %d" % (sp["max_message"], a.size))
        # the messages
        sizes = [a.size] if a.messages >= 1 else []
        sizes += [self.rng.randint(0, a.size) for _ in range(max(0, a.messages - 1))]
        self.rng.shuffle(sizes)
        msgs = [self.rng.randbytes(s) for s in sizes]
        for m in msgs:
            self.sbuf += struct.pack(">I", len(m)) + m
        if a.garbage:
            n_garbage += self.garbage_during()
        # echo
        while len(self.received) < len(msgs):
            self.step("waiting for echoes (%d of %d back)" % (len(self.received), len(msgs)))
            if self.closed_by_peer:
                raise Failure("server sent CLOSE after %d of %d echoes"
                              % (len(self.received), len(msgs)))
            if self.peer_fin is not None and self.rcv_next >= self.peer_fin and \
                    len(self.received) < len(msgs):
                raise Failure("server ended its stream after %d of %d echoes"
                              % (len(self.received), len(msgs)))
        for i, (want, got) in enumerate(zip(msgs, self.received)):
            if want != got:
                raise Failure("echo %d differs: sent %d bytes, got %d bytes back%s" % (
                    i, len(want), len(got),
                    " (contains EVIL)" if b"EVIL" in got else ""))
        if len(self.received) > len(msgs):
            raise Failure("got %d messages back, sent %d" % (len(self.received), len(msgs)))
        t_echo = self.now() - t0
        # our FIN; then the server's FIN, then CLOSE
        self.fin_queued = True
        # A CLOSE means "both directions are finished": the server has our
        # FIN even if its ACK was lost (it sends CLOSE once its own FIN is
        # acknowledged and our stream has ended, then drains for only 3 PTO).
        # If the ACK of our FIN and the CLOSE are both lost, the server has
        # already forgotten the connection (its drain lasts 3 PTO) and our
        # FIN retransmissions meet silence.  The echo server sends its FIN
        # only on our EOF, so its FIN, after all the echoes, shows that our
        # FIN arrived: after FIN_GRACE of silence we accept that.
        peer_done_at = None
        fin_unconfirmed = False
        while not ((self.fin_acked or self.closed_by_peer) and
                   self.peer_fin is not None and self.rcv_next >= self.peer_fin):
            if self.peer_fin is not None and self.rcv_next >= self.peer_fin:
                if peer_done_at is None:
                    peer_done_at = self.now()
                elif self.now() - peer_done_at > FIN_GRACE:
                    fin_unconfirmed = True
                    break
            self.step("closing (our FIN %s, server FIN %s)" % (
                "acked" if self.fin_acked else "not acked",
                "received" if self.peer_fin is not None else "not received"))
            if self.closed_by_peer and not (self.peer_fin is not None and
                                            self.rcv_next >= self.peer_fin):
                raise Failure("server sent CLOSE before its FIN")
            if len(self.received) != len(msgs):
                raise Failure("server sent more messages after the echoes (%d, sent %d)"
                              % (len(self.received), len(msgs)))
        if self.rbuf:
            raise Failure("server's stream ended inside a message (%d bytes left)" % len(self.rbuf))
        # both directions done: send CLOSE, wait a little for the server's
        close_deadline = min(self.deadline, self.now() + (0 if fin_unconfirmed else 2.0))
        next_close = 0.0
        while not self.closed_by_peer and self.now() < close_deadline:
            if self.now() >= next_close:
                frames = [self.ack_frame(), bytes([F_CLOSE])] if self.r_pns.r else [bytes([F_CLOSE])]
                self.send_packet(frames, [], False)
                next_close = self.now() + RETX_TIMEOUT
            for d in self.recv_all(0.02):
                try:
                    self.on_datagram(d)
                except ProtocolError as e:
                    raise Failure("protocol violation from server: %s" % e)
            self.ack_needed = False
        if fin_unconfirmed and not self.args.drop:
            raise Failure("our FIN was never acknowledged and no CLOSE came, on a lossless path")
        if not self.closed_by_peer and not self.args.drop:
            raise Failure("no CLOSE from the server within 2 s of both FINs")
        t_end = self.now() - t0
        rtt = sorted(self.rtt_samples)
        print("ok: %d messages echoed (%d bytes, largest %d) handshake %.0f ms "
              "(retries %d), echoes %.2f s, closed %.2f s, server CLOSE %s%s; "
              "datagrams sent %d received %d, dropped out %d in %d, retransmitted %d B, "
              "median rtt %.2f ms%s" % (
                  len(msgs), sum(sizes), max(sizes) if sizes else 0, t_hs * 1000,
                  self.retries, t_echo, t_end, "seen" if self.closed_by_peer else "lost",
                  " (our FIN's ACK lost too: server had drained)" if fin_unconfirmed else "",
                  self.sent_dgrams, self.recv_dgrams, self.dropped_out, self.dropped_in,
                  self.retransmitted_bytes,
                  (rtt[len(rtt) // 2] * 1000) if rtt else 0.0,
                  (", %d garbage datagrams ignored" % n_garbage) if n_garbage else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, default=20)
    p.add_argument("--size", type=int, default=3000)
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--garbage", action="store_true")
    a = p.parse_args()
    if not 0 <= a.drop < 1:
        p.error("--drop must be in [0, 1)")
    if a.messages < 1 or a.size < 0:
        p.error("--messages must be at least 1, --size at least 0")
    try:
        Peer(a).run()
    except Failure as e:
        print("error: %s" % e)
        return 1
    except ProtocolError as e:
        print("error: protocol violation: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
