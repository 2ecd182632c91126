#!/usr/bin/env python3
"""The lab's scripted peers (scripts/lab/*.sh): clients and servers that
behave in one particular way so the kernel's reaction can be watched --
a listener that never accepts, a reader that stops, a handler that never
closes, a client that sets keepalive or TCP_USER_TIMEOUT. sluice's own
servers play the well-behaved side. Each mode prints one line per event,
"t=SECONDS what", for the topic script to quote and check.

  peer.py MODE [options]    (see --help of each mode)
"""
import argparse
import socket
import struct
import sys
import time

T0 = time.monotonic()


def say(msg):
    print(f"t={time.monotonic() - T0:6.2f} {msg}", flush=True)


def connect(host, port, timeout=5.0):
    return socket.create_connection((host, port), timeout=timeout)


def hello(a):
    """Connect, send one line, read the echo, close: a whole connection."""
    s = connect(a.host, a.port)
    s.sendall(b"hello\n")
    say(f"echo {s.recv(100)!r}")
    time.sleep(a.hold)
    s.close()
    say("closed")


def listen_noaccept(a):
    """A listener that never calls accept(): its queue fills up."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.host, a.port))
    s.listen(a.backlog)
    say(f"listening backlog={a.backlog}, never accepting")
    time.sleep(a.hold)


def many_connect(a):
    """N nonblocking connects at once; prints how many completed."""
    socks = []
    for _ in range(a.n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((a.host, a.port))
        socks.append(s)
    time.sleep(a.hold)
    done = sum(1 for s in socks if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
               and _connected(s))
    say(f"{done} of {a.n} connects completed")
    time.sleep(a.hold2)


def _connected(s):
    try:
        s.getpeername()
        return True
    except OSError:
        return False


def sticky(a):
    """Two small writes back to back, read later in one recv(); then one
    large write read in several recv()s. Against a raw echo server."""
    s = connect(a.host, a.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.send(b"PING1")
    s.send(b"PING2")
    say("wrote 'PING1' then 'PING2' (two send() calls)")
    time.sleep(0.3)
    got = s.recv(4096)
    say(f"one recv() returned {len(got)} bytes: {got!r}")
    big = bytes(range(256)) * (a.big // 256)
    s.sendall(big)
    say(f"wrote {len(big)} bytes in one sendall()")
    sizes, total = [], 0
    while total < len(big):
        chunk = s.recv(a.big)
        if not chunk:
            break
        sizes.append(len(chunk))
        total += len(chunk)
    ok = "intact" if total == len(big) else "SHORT"
    say(f"{len(sizes)} recv() calls returned {total} bytes ({ok}): sizes {sizes[:12]}"
        + (" ..." if len(sizes) > 12 else ""))
    s.close()


def codec(a):
    """Against a --codec line (or length) echo server: the same stream cut
    in awkward places; the server answers whole frames only."""
    s = connect(a.host, a.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(0.5)
    if a.codec == "line":
        two, half1, half2 = b"one\ntwo\n", b"hel", b"lo\nwor"
    else:  # 4-byte big-endian length prefix
        f = lambda p: struct.pack(">I", len(p)) + p
        two = f(b"one") + f(b"two")
        whole = f(b"hello") + f(b"world")
        half1, half2 = whole[:5], whole[5:12]
    s.send(two)
    say(f"wrote two frames in one send(): {two!r}")
    time.sleep(0.2)
    say(f"echo: {s.recv(4096)!r}")
    s.send(half1)
    say(f"wrote part of a frame: {half1!r}")
    try:
        say(f"echo: {s.recv(4096)!r}")
    except socket.timeout:
        say("echo: nothing within 0.5 s (the codec holds the partial frame)")
    s.send(half2)
    say(f"wrote the rest and the start of the next: {half2!r}")
    time.sleep(0.2)
    say(f"echo: {s.recv(4096)!r}")
    s.close()


def forget_close(a):
    """A server whose handler never closes: clients hang up, their
    connections sit in CLOSE_WAIT here until the process exits."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(128)
    say("listening; the handler reads, and on EOF forgets to close()")
    ls.settimeout(0.2)
    kept = []
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        try:
            c, _ = ls.accept()
            c.settimeout(1.0)
            try:
                while c.recv(4096):  # read to EOF (unread data would make close() send RST)
                    pass
            except socket.timeout:
                pass
            kept.append(c)  # held, never closed: the bug
        except socket.timeout:
            pass
    say(f"exiting with {len(kept)} connections never closed")


def hangup_clients(a):
    """N clients connect, send a line, hang up (FIN) at once."""
    for _ in range(a.n):
        s = connect(a.host, a.port)
        s.sendall(b"bye\n")
        s.close()
    say(f"{a.n} clients connected and closed")


def idle_clients(a):
    """N clients connect and send nothing; after --hold they close (a
    server's idle timeout may have closed them first: they forget to
    close until then, so their side sits in CLOSE_WAIT meanwhile)."""
    socks = [connect(a.host, a.port) for _ in range(a.n)]
    say(f"{a.n} clients connected, silent")
    time.sleep(a.hold)
    eofs = 0
    for s in socks:
        s.setblocking(False)
        try:
            eofs += s.recv(1) == b""
        except BlockingIOError:
            pass
        s.close()
    say(f"closed {a.n} clients ({eofs} had seen the server's FIN)")


def bind_test(a):
    """bind() to a port with and without SO_REUSEADDR: a restarted server
    meets its predecessor's TIME_WAIT connections."""
    for reuse in (0, 1):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse)
        try:
            s.bind((a.host, a.port))
            s.listen(1)
            say(f"SO_REUSEADDR={reuse}: bind({a.host}:{a.port}) ok")
        except OSError as e:
            say(f"SO_REUSEADDR={reuse}: bind({a.host}:{a.port}) failed: {e.strerror}")
        s.close()


def slow_reader(a):
    """Sends a request that makes the echo server write a lot, then stops
    reading for --pause seconds, then drains."""
    s = socket.socket()
    # Before connect(): the window scale is agreed in the handshake.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    s.connect((a.host, a.port))
    say(f"connected, SO_RCVBUF {a.rcvbuf}; writing, not reading")
    payload = b"x" * a.bytes
    s.setblocking(False)
    sent = 0
    end = time.monotonic() + a.pause
    while time.monotonic() < end:
        try:
            if sent < len(payload):
                sent += s.send(payload[sent:sent + 65536])
            else:
                time.sleep(0.05)
        except BlockingIOError:
            time.sleep(0.05)
    say(f"stopped reading for {a.pause}s; wrote {sent} bytes meanwhile")
    s.setblocking(True)
    s.settimeout(3)
    got = 0
    try:
        while got < sent:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
            if sent < len(payload):
                s.setblocking(False)
                try:
                    sent += s.send(payload[sent:sent + 65536])
                except BlockingIOError:
                    pass
                s.setblocking(True)
                s.settimeout(3)
    except socket.timeout:
        pass
    say(f"resumed reading: got {got} of {sent} bytes back")
    s.close()


def idle_client(a):
    """Connects, optionally with TCP keepalive or TCP_USER_TIMEOUT (and
    then keeps unsent data queued), and waits for the kernel to give up.
    Prints when and with which error."""
    s = connect(a.host, a.port)
    if a.keepalive:
        idle, intvl, cnt = a.keepalive
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
    if a.user_timeout_ms:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, a.user_timeout_ms)
    say("connected")
    # Wait for the go signal (the link is cut by then), then, with
    # --send, queue data that can no longer be delivered.
    while True:
        try:
            open(a.go).close()
            break
        except OSError:
            time.sleep(0.02)
    t_cut = time.monotonic()
    if a.send:
        s.send(b"data after the cut\n")
    s.settimeout(a.hold)
    try:
        d = s.recv(100)
        what = "EOF" if not d else f"data {d!r}"
    except OSError as e:
        # socket.timeout is TimeoutError, which the kernel's ETIMEDOUT also
        # raises: only Python's own timeout has no errno.
        what = f"nothing noticed within {a.hold}s" if e.errno is None else f"error {e.strerror}"
    say(f"after cut +{time.monotonic() - t_cut:.2f}s: {what}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)

    def mode(name, fn, **extra):
        q = sub.add_parser(name, help=fn.__doc__.split("\n")[0])
        q.add_argument("--host", default="127.0.0.1")
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--hold", type=float, default=1.0)
        for k, v in extra.items():
            q.add_argument("--" + k.replace("_", "-"), **v)
        q.set_defaults(fn=fn)

    mode("hello", hello)
    mode("listen-noaccept", listen_noaccept, backlog=dict(type=int, default=4))
    mode("many-connect", many_connect, n=dict(type=int, default=8), hold2=dict(type=float, default=0))
    mode("sticky", sticky, big=dict(type=int, default=262144))
    mode("codec", codec, codec=dict(default="line", choices=["line", "length"]))
    mode("forget-close", forget_close)
    mode("hangup-clients", hangup_clients, n=dict(type=int, default=5))
    mode("idle-clients", idle_clients, n=dict(type=int, default=3))
    mode("bind-test", bind_test)
    mode("slow-reader", slow_reader, pause=dict(type=float, default=3), bytes=dict(type=int, default=8 << 20),
         rcvbuf=dict(type=int, default=65536))
    mode("idle-client", idle_client, keepalive=dict(type=int, nargs=3, metavar=("IDLE", "INTVL", "CNT")),
         user_timeout_ms=dict(type=int, default=0), send=dict(action="store_true"),
         go=dict(required=True))
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
