"""echo_server --workers 2 --metrics-port 0 scraped by the real Prometheus.

Starts the server (two worker processes behind one port; the metrics
sidecar serves both), makes 4 connections that echo 3 frames each and one
that sends a frame over --max-frame, then starts `prometheus` (from PATH;
skipped with a reason when it is not installed) on a free port with its
own config scraping our endpoint every 200 ms and its data in a temporary
directory, and checks the series through its HTTP API
(/api/v1/query). Every wait is bounded; both processes and the data
directory are cleaned up whatever happens.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def wait_for(what, fn, limit_s):
    deadline = time.monotonic() + limit_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last is not None and last is not False:
                return last
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit_s} s waiting for {what} (last: {last!r})")


def query(prom_port, expr):
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=2) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise AssertionError(f"{expr}: {body}")
    return body["data"]["result"]


def scalar(prom_port, expr):
    result = query(prom_port, expr)
    return float(result[0]["value"][1]) if result else None


def main():
    server_bin = sys.argv[1]
    prom = shutil.which("prometheus")
    if prom is None:
        print("SKIPPED: the prometheus binary is not on PATH (apt-get install prometheus)")
        return 0
    tmp = tempfile.mkdtemp(prefix="sluice-prom-", dir=os.environ.get("TEST_TMPDIR"))
    procs = []
    try:
        out_path = os.path.join(tmp, "server.out")
        server = subprocess.Popen(
            [server_bin, "--workers", "2", "--port", "0", "--codec", "length", "--max-frame",
             "1024", "--metrics-port", "0", "--log-level", "warn"],
            stdout=open(out_path, "w"), stderr=open(os.path.join(tmp, "server.err"), "w"))
        procs.append(server)

        def lines():
            with open(out_path) as f:
                text = f.read()
            m = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", text)
            l = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            return (int(m.group(1)), int(l.group(1))) if m and l else None

        metrics_port, port = wait_for("the server's lines", lines, 10)

        conns = []
        for _ in range(4):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            for _ in range(3):
                c.sendall(frame(b"x" * 50))
                assert read_exact(c, 54) == frame(b"x" * 50)
            conns.append(c)
        bad = socket.create_connection(("127.0.0.1", port), timeout=5)
        bad.sendall(frame(b"y" * 2000))
        assert bad.recv(10) == b"", "the server should close a connection after a frame error"
        bad.close()

        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: sluice
    scrape_interval: 200ms
    scrape_timeout: 200ms
    static_configs:
      - targets: ['127.0.0.1:{metrics_port}']
""")
        prom_port = free_port()
        prom_proc = subprocess.Popen(
            [prom, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=open(os.path.join(tmp, "prom.out"), "w"),
            stderr=open(os.path.join(tmp, "prom.err"), "w"))
        procs.append(prom_proc)

        def ready():
            with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/-/ready", timeout=1) as r:
                return r.status == 200
        wait_for("prometheus to be ready", ready, 15)

        # The workers publish every 200 ms and Prometheus scrapes every 200 ms.
        wait_for("up == 1", lambda: scalar(prom_port, 'up{job="sluice"}') == 1, 10)
        wait_for("4 connections open",
                 lambda: scalar(prom_port, "sum(sluice_connections_open)") == 4, 10)
        wait_for("1 frame error",
                 lambda: scalar(prom_port, "sum(sluice_frame_errors_total)") == 1, 10)
        checks = {
            "count(sluice_connections_open)": 2,  # one series per worker
            "sum(sluice_connections_accepted_total)": 5,
            "sum(sluice_received_messages_total)": 12,
            "sum(sluice_sent_messages_total)": 12,
            "sum(sluice_sent_bytes_total)": 12 * 54,
            'sum(sluice_connections_refused_total{reason="max_connections"})': 0,
            "count(sluice_loop_lag_seconds_count)": 2,
        }
        failures = []
        for expr, want in checks.items():
            got = scalar(prom_port, expr)
            if got != want:
                failures.append(f"{expr} = {got}, want {want}")
        lag = query(prom_port, 'sluice_loop_lag_seconds_bucket{le="+Inf"}')
        if len(lag) != 2 or any(float(r["value"][1]) <= 0 for r in lag):
            failures.append(f"loop lag histograms missing or empty: {lag}")
        workers = sorted(r["metric"].get("worker") for r in query(prom_port, "sluice_connections_open"))
        if workers != ["0", "1"]:
            failures.append(f"worker labels {workers}, want ['0', '1']")
        for c in conns:
            c.close()
        if failures:
            print("\n".join(failures))
            return 1
        print("prometheus scraped every series as expected")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for name in ("server.err", "prom.err"):
            path = os.path.join(tmp, name)
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path) as f:
                    sys.stderr.write(f"--- {name} ---\n{f.read()[-3000:]}\n")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
