#!/usr/bin/env python3
"""Tiny traffic tools for checking linkem (perf/linkem_smoke.sh, docs/LINKEM.md).

  linkem_probe.py udp-echo PORT                      echo UDP datagrams (far side)
  linkem_probe.py udp-ping HOST PORT COUNT GAP_MS    print sent/received/avg RTT
  linkem_probe.py tcp-send PORT BYTES                 serve BYTES to one client
  linkem_probe.py tcp-recv HOST PORT                  print bytes, seconds, Mbit/s

udp-ping first waits (up to 10 s, retrying) until the echo answers, so a
server that starts late is not counted as loss. tcp-recv retries connecting
the same way and times from its first byte to the last.
"""
import socket
import struct
import sys
import time


def udp_echo(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(65536)
        s.sendto(data, addr)


def udp_ping(host, port, count, gap_ms):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(0.2)
    deadline = time.time() + 10
    while True:  # handshake: the echo is up and the path works
        s.send(b"hello")
        try:
            if s.recv(65536) == b"hello":
                break
        except (socket.timeout, ConnectionRefusedError):
            pass
        if time.time() > deadline:
            sys.exit("udp-ping: no answer from the echo server")
    time.sleep(0.3)
    s.setblocking(False)
    sent_at, rtts = {}, []
    start = time.monotonic()

    def drain():
        while True:
            try:
                data = s.recv(65536)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(data) == 12 and data[:4] == b"PING":
                seq, = struct.unpack(">Q", data[4:])
                if seq in sent_at:
                    rtts.append(time.monotonic() - sent_at.pop(seq))

    for seq in range(count):
        target = start + seq * gap_ms / 1000
        while time.monotonic() < target:
            drain()
            time.sleep(min(0.001, max(0, target - time.monotonic())))
        sent_at[seq] = time.monotonic()
        s.send(b"PING" + struct.pack(">Q", seq))
    end = time.monotonic() + 1.0  # late answers
    while time.monotonic() < end and sent_at:
        drain()
        time.sleep(0.001)
    avg = sum(rtts) / len(rtts) * 1000 if rtts else -1
    print(f"sent {count} received {len(rtts)} loss {1 - len(rtts) / count:.4f} avg_rtt_ms {avg:.3f}")


def tcp_send(port, nbytes):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    c, _ = ls.accept()
    chunk = bytes(range(256)) * 256
    left = nbytes
    while left > 0:
        n = c.send(chunk[: min(left, len(chunk))])
        left -= n
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # wait until the receiver closes
    c.close()


def tcp_recv(host, port):
    deadline = time.time() + 10
    while True:
        try:
            s = socket.create_connection((host, port), timeout=1)
            break
        except OSError:
            if time.time() > deadline:
                sys.exit("tcp-recv: cannot connect")
            time.sleep(0.1)
    s.settimeout(30)
    total, first, last = 0, None, None
    while True:
        data = s.recv(1 << 20)
        if not data:
            break
        now = time.monotonic()
        if first is None:
            first = now
        last = now
        total += len(data)
    s.close()
    secs = (last - first) if first is not None and last > first else 0
    mbit = total * 8 / secs / 1e6 if secs > 0 else 0
    print(f"bytes {total} seconds {secs:.3f} mbit {mbit:.2f}")


def main():
    a = sys.argv[1:]
    if a[:1] == ["udp-echo"]:
        udp_echo(int(a[1]))
    elif a[:1] == ["udp-ping"]:
        udp_ping(a[1], int(a[2]), int(a[3]), float(a[4]))
    elif a[:1] == ["tcp-send"]:
        tcp_send(int(a[1]), int(a[2]))
    elif a[:1] == ["tcp-recv"]:
        tcp_recv(a[1], int(a[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
