#!/usr/bin/env python3
"""TLS echo and handshake cost: sluice vs Boost.Asio (asio::ssl), one run.

Run through scripts/tlsbench.sh (which builds the binaries). For each
server -- sluice's echo_server with TLS, perf/peers/asio_tls_echo, and
sluice's echo_server in plaintext -- a fresh process pinned to its own CPU,
loaded by perf/loadgen pinned to another (64 connections, ping-pong, 64 B
and 4 KiB, the server verified with the run's CA): the server's CPU time
per echoed message over loadgen's measured window (/proc/PID/task/*/
schedstat, nanoseconds). Then perf/tls_handshakes against both TLS servers,
full and resumed: handshakes per second and the server's CPU per handshake.

Certificates: a fresh EC P-256 self-signed certificate for 127.0.0.1 (the
openssl CLI), the same for both servers; both negotiate TLS 1.3 with
OpenSSL's default suite (TLS_AES_256_GCM_SHA384).

Every cell runs --reps times, the cells interleaved (so a neighbour's load
on a shared machine falls on every server alike); the median is reported
with the range. Prints a table and the ratios (sluice TLS / Asio TLS,
sluice TLS / sluice plaintext); --out FILE also writes every figure as
JSON.
"""
import argparse
import glob
import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary(bin_dir, path):
    p = os.path.join(bin_dir, path)
    if not os.access(p, os.X_OK):
        sys.exit(f"tlsbench: {p} missing (scripts/tlsbench.sh builds it)")
    return p


def run_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat's first field)."""
    total = 0
    for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def start_server(cmd, cpu):
    proc = subprocess.Popen(pin(cpu) + cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"listening on [0-9.]+:(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"tlsbench: {' '.join(cmd)} did not start: {line!r}")
    return proc, int(m.group(1))


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measured(cmd, cpu, server_pid, tag):
    """Runs a client that announces '<tag>: phase measure' / 'phase done' on
    stderr; returns (its JSON line, the server's CPU ns in between)."""
    p = subprocess.Popen(pin(cpu) + cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(p.stderr, selectors.EVENT_READ)
    buf, c0, c1, other = b"", None, None, []
    while True:
        if not sel.select(timeout=1.0):
            if p.poll() is not None:
                break
            continue
        chunk = os.read(p.stderr.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.decode(errors="replace")
            if line == f"{tag}: phase measure":
                c0 = run_ns(server_pid)
            elif line == f"{tag}: phase done":
                c1 = run_ns(server_pid)
            elif not line.startswith(f"{tag}: phase"):
                other.append(line)
    sel.close()
    out, _ = p.communicate(timeout=60)
    result = None
    for line in out.decode().splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if result is None or c0 is None or c1 is None:
        sys.exit(f"tlsbench: {' '.join(cmd)} failed: {other[-3:]}")
    if p.returncode != 0:
        print(f"tlsbench: warning: {os.path.basename(cmd[0])} exited {p.returncode}: {other[-3:]}",
              file=sys.stderr)
    return result, c1 - c0


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "bazel-bin"))
    ap.add_argument("--io", default="epoll", help="sluice's back end (Asio runs on epoll)")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--sizes", default="64,4096")
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per echo run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--hs-threads", type=int, default=4, help="tls_handshakes connections at a time")
    ap.add_argument("--hs-duration", type=float, default=3.0)
    ap.add_argument("--reps", type=int, default=3,
                    help="runs per cell, interleaved; the median is reported, with the range")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--out", help="write the figures here as JSON")
    a = ap.parse_args()
    scpu, ccpu = (None, None) if a.no_pin or (os.cpu_count() or 1) < 2 else (a.server_cpu, a.client_cpu)
    echo = binary(a.bin_dir, "servers/echo_server")
    asio = binary(a.bin_dir, "perf/peers/asio_tls_echo")
    loadgen = binary(a.bin_dir, "perf/loadgen")
    hs = binary(a.bin_dir, "perf/tls_handshakes")
    tmp = tempfile.mkdtemp(prefix="tlsbench.")
    cert, key = make_cert(tmp)
    servers = {
        "sluice-tls": [echo, "--io", a.io, "--port", "0", "--tls-cert", cert, "--tls-key", key,
                       "--log-level", "warn"],
        "asio-tls": [asio, "--port", "0", "--cert", cert, "--key", key],
        "sluice-plain": [echo, "--io", a.io, "--port", "0", "--log-level", "warn"],
    }
    sizes = [int(s) for s in a.sizes.split(",")]
    figures = {"echo": {}, "handshakes": {}, "conns": a.conns, "io": a.io,
               "pinned": scpu is not None}

    # Every rep runs every cell once, so the servers are interleaved in
    # time: a neighbour's load on a shared machine falls on all of them.
    echo_runs = {(n, size): [] for n in servers for size in sizes}
    hs_runs = {(n, resume): [] for n in ("sluice-tls", "asio-tls") for resume in (False, True)}
    for rep in range(a.reps):
        for (name, size), runs in echo_runs.items():
            proc, port = start_server(servers[name], scpu)
            lg = [loadgen, "--port", str(port), "--conns", str(a.conns), "--size", str(size),
                  "--duration-s", str(a.duration), "--warmup-s", str(a.warmup)]
            if name != "sluice-plain":
                lg += ["--tls", "--tls-ca", cert]
            r, ns = measured(lg, ccpu, proc.pid, "loadgen")
            stop(proc)
            if r["errors"]:
                sys.exit(f"tlsbench: {name} {size} B: {r['errors']} errors")
            runs.append({"msgs_per_s": r["msgs_per_s"], "p50_us": r["p50_us"],
                         "cpu_ns_per_msg": ns / max(1, r["msgs"]),
                         "server_cpu": ns / 1e9 / r["duration_s"]})
        for (name, resume), runs in hs_runs.items():
            proc, port = start_server(servers[name], scpu)
            cmd = [hs, "--port", str(port), "--threads", str(a.hs_threads),
                   "--duration-s", str(a.hs_duration)] + (["--resume"] if resume else [])
            r, ns = measured(cmd, ccpu, proc.pid, "tls_handshakes")
            stop(proc)
            if resume and r["resumed"] < r["handshakes"]:
                print(f"tlsbench: warning: {name}: {r['handshakes'] - r['resumed']} handshakes "
                      "not resumed", file=sys.stderr)
            runs.append({"per_s": r["per_s"], "resumed": r["resumed"],
                         "handshakes": r["handshakes"],
                         "cpu_us_per_handshake": ns / 1000 / max(1, r["handshakes"]),
                         "server_cpu": ns / 1e9 / r["duration_s"]})
        print(f"tlsbench: rep {rep + 1}/{a.reps} done", file=sys.stderr, flush=True)

    def median_of(runs, key):
        """The median run by `key`, with the key's range over the runs."""
        cell = dict(sorted(runs, key=lambda x: x[key])[len(runs) // 2])
        cell["range"] = [min(x[key] for x in runs), max(x[key] for x in runs)]
        return cell

    for (name, size), runs in echo_runs.items():
        cell = median_of(runs, "cpu_ns_per_msg")
        figures["echo"][f"{name}/{size}"] = cell
        lo, hi = cell["range"]
        print(f"{name:13} {size:5} B: {cell['msgs_per_s']:9.0f} msg/s  "
              f"{cell['cpu_ns_per_msg'] / 1000:6.2f} us server CPU/msg "
              f"[{lo / 1000:.2f}-{hi / 1000:.2f}]  "
              f"(server {cell['server_cpu'] * 100:3.0f}% of a CPU, p50 {cell['p50_us']:.0f} us)")
    for (name, resume), runs in hs_runs.items():
        cell = median_of(runs, "per_s")
        kind = "resumed" if resume else "full"
        figures["handshakes"][f"{name}/{kind}"] = cell
        lo, hi = cell["range"]
        print(f"{name:13} {kind:7} handshakes: {cell['per_s']:7.0f}/s [{lo:.0f}-{hi:.0f}]  "
              f"{cell['cpu_us_per_handshake']:6.1f} us server CPU each "
              f"(server {cell['server_cpu'] * 100:3.0f}% of a CPU)")

    e, h = figures["echo"], figures["handshakes"]
    ratios = {}
    for size in sizes:
        s, x, p = (e[f"{n}/{size}"]["cpu_ns_per_msg"] for n in ("sluice-tls", "asio-tls", "sluice-plain"))
        ratios[f"cpu_per_msg_{size}_sluice_tls_over_asio_tls"] = s / x
        ratios[f"cpu_per_msg_{size}_sluice_tls_over_sluice_plain"] = s / p
    for kind in ("full", "resumed"):
        s, x = h[f"sluice-tls/{kind}"], h[f"asio-tls/{kind}"]
        ratios[f"handshakes_per_s_{kind}_sluice_over_asio"] = s["per_s"] / x["per_s"]
        ratios[f"cpu_per_handshake_{kind}_sluice_over_asio"] = (s["cpu_us_per_handshake"] /
                                                                x["cpu_us_per_handshake"])
    figures["ratios"] = ratios
    print("ratios:")
    for k, v in ratios.items():
        print(f"  {k:50} {v:5.2f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(figures, fh, indent=1)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
