#!/usr/bin/env python3
"""compare.py: sweep sluice's IO back ends (and peer echo servers) side by side.

For every cell (protocol x connections x message size x pipeline depth) and
every server ("subject": a sluice back end, a yardstick, a peer library), one
run = a fresh server pinned to its own CPU, a fresh perf/loadgen pinned to the
others, and these measurements over loadgen's measured window only:

  msgs/s, p50/p99/p99.9/max latency   from loadgen's JSON line
  server CPU us/msg                   utime+stime from /proc/PID/stat,
                                      sampled at warmup end and at the end
  context switches/msg                voluntary+nonvoluntary, summed over
                                      /proc/PID/task/*/status
  syscalls/msg                        `perf stat -e raw_syscalls:sys_enter -p
                                      PID`, started disabled and enabled /
                                      disabled through a control FIFO at the
                                      same two instants (n/a if perf can't)

Runs are interleaved round-robin (rep 1 of every cell and subject, then rep 2,
...; the subject order rotates each rep) and reported as median and min-max
over --reps. CPU/msg is also given as a ratio to the min-epoll and min-uring
yardsticks, computed per rep (runs of one rep are adjacent in time) and then
the median taken, because throughput drifts run to run more than CPU/msg does.
UDP cells have their own yardstick, --udp-yardstick (default min-mmsg: a
hand-written recvmmsg/sendmmsg loop), and report CPU per datagram as a ratio
to it the same way.

Outputs: a Markdown table on stdout; results.json, results.csv, runs.csv,
table.md and SVG charts (gnuplot) in --out; progress on stderr.

  scripts/compare.sh --quick
  scripts/compare.sh --conns 1,64,1000 --pipeline 1,8 --reps 3 --out /tmp/cmp
  scripts/compare.sh --peer 'nginx=my_echo --listen {port}'

Python 3 standard library only. Traffic goes to 127.0.0.1 only.
"""

import argparse
import csv
import datetime
import json
import os
import platform
import re
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Set in main(): a private copy of the binaries (see stage_binaries).
BIN = os.path.join(ROOT, "bazel-bin")
ECHO_SERVER = LOADGEN = ""

DEFAULT_IO = ["blocking", "nonblocking", "select", "poll", "epoll", "uring"]
# name -> (bazel target, binary, protocols it serves, extra arguments)
BUILTIN_PEERS = {
    "min-epoll": ("//perf/peers:min_epoll_echo", "perf/peers/min_epoll_echo", ("tcp", "udp"), []),
    "min-uring": ("//perf/peers:min_uring_echo", "perf/peers/min_uring_echo", ("tcp",), []),
    "min-mmsg": ("//perf/peers:min_mmsg_echo", "perf/peers/min_mmsg_echo", ("udp",), []),
    "min-mmsg-epoll": ("//perf/peers:min_mmsg_echo", "perf/peers/min_mmsg_echo", ("udp",), ["--wait", "epoll"]),
    "libuv": ("//perf/peers:libuv_echo", "perf/peers/libuv_echo", ("tcp",), []),
    "asio": ("//perf/peers:asio_echo", "perf/peers/asio_echo", ("tcp",), []),
    "libevent": ("//perf/peers:libevent_echo", "perf/peers/libevent_echo", ("tcp",), []),
}
# Every CPU/msg is also given as a per-rep ratio to each yardstick that ran
# in the same cell: min-epoll and min-uring for TCP (min-epoll also speaks
# UDP), and the UDP yardstick (--udp-yardstick) for UDP.
TCP_YARDSTICKS = ("min-epoll", "min-uring")
DEFAULT_UDP_YARDSTICK = "min-mmsg"
YARDSTICKS = TCP_YARDSTICKS + (DEFAULT_UDP_YARDSTICK,)  # set from --udp-yardstick in main()


def set_yardsticks(udp_yardstick):
    global YARDSTICKS
    extra = () if udp_yardstick in (None, "", "none") or udp_yardstick in TCP_YARDSTICKS else (udp_yardstick,)
    YARDSTICKS = TCP_YARDSTICKS + extra
CLK_TCK = os.sysconf("SC_CLK_TCK")
LISTEN_RE = re.compile(r"listening on \[?([0-9a-fA-F.:]+?)\]?:(\d+)")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def csv_list(kind):
    def parse(s):
        return [kind(x) for x in s.split(",") if x.strip()]
    return parse


def parse_cpus(spec):
    cpus = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            cpus.update(range(int(a), int(b) + 1))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def cpu_spec(cpus):
    return ",".join(str(c) for c in cpus)


def free_port(udp=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------- /proc --

def proc_cpu_ticks(pid):
    """utime + stime of the whole process (live and reaped threads), ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


def proc_ctxsw(pid):
    """{tid: voluntary + nonvoluntary context switches} over /proc/PID/task."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                v = n = 0
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        v = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        n = int(line.split()[1])
                out[tid] = v + n
        except OSError:
            pass  # the thread exited meanwhile
    return out


def system_busy_ticks():
    """Busy (not idle, not iowait) ticks of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user..steal, less idle and iowait


def udp_rcvbuf_errors():
    """Host-wide UDP datagrams dropped for a full receive buffer (/proc/net/snmp)."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [l.split() for l in f if l.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def sample(pid, client_pid):
    try:
        s = {"t": time.monotonic(), "ticks": proc_cpu_ticks(pid), "ctx": proc_ctxsw(pid),
             "busy": system_busy_ticks(), "udp_drops": udp_rcvbuf_errors()}
    except OSError:
        return None
    try:
        s["client"] = proc_cpu_ticks(client_pid)
    except OSError:
        s["client"] = None
    return s


def wait_quiet(limit_s, threshold_cpus=0.15):
    """Waits (up to limit_s) until the machine's other load is below threshold.

    Returns the busy CPUs measured last (the machine is shared: builds and
    tests of other people land on the same cores and skew the numbers)."""
    deadline = time.monotonic() + limit_s
    while True:
        b0, t0 = system_busy_ticks(), time.monotonic()
        time.sleep(0.25)
        busy = (system_busy_ticks() - b0) / CLK_TCK / (time.monotonic() - t0)
        if busy < threshold_cpus or time.monotonic() >= deadline:
            return busy


def ctx_delta(a, b):
    # Threads alive at the end: their switches since the start (all of them
    # for threads created inside the window). Threads that exited inside the
    # window take their counts with them (/proc keeps no per-process total).
    return sum(v - a.get(tid, 0) for tid, v in b.items())


# ------------------------------------------------------------------ perf --

class PerfCounter:
    """perf stat attached to the server, gated by a control FIFO."""

    EVENTS = "raw_syscalls:sys_enter"

    def __init__(self, pid, cpus, tmpdir):
        self.ctl = os.path.join(tmpdir, "perf.ctl")
        self.ack = os.path.join(tmpdir, "perf.ack")
        self.out = os.path.join(tmpdir, "perf.out")
        for p in (self.ctl, self.ack, self.out):
            if os.path.exists(p):
                os.unlink(p)
        os.mkfifo(self.ctl)
        os.mkfifo(self.ack)
        # O_RDWR: opening a FIFO this way never blocks, whoever comes first.
        self.ctl_fd = os.open(self.ctl, os.O_RDWR | os.O_NONBLOCK)
        self.ack_fd = os.open(self.ack, os.O_RDWR | os.O_NONBLOCK)
        cmd = ["perf", "stat", "-e", self.EVENTS, "-x", ",", "-o", self.out, "-D", "-1",
               "--control", f"fifo:{self.ctl},{self.ack}", "-p", str(pid)]
        if cpus:
            cmd = ["taskset", "-c", cpu_spec(cpus)] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.ok = True
        self.error = ""

    def command(self, word, timeout=2.0):
        if not self.ok:
            return
        os.write(self.ctl_fd, (word + "\n").encode())
        deadline = time.monotonic() + timeout
        got = b""
        while b"ack" not in got and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                got += os.read(self.ack_fd, 64)
            except BlockingIOError:
                time.sleep(0.001)
        if b"ack" not in got:
            self.ok = False
            self.error = f"no ack for '{word}' from perf"

    def finish(self):
        """Stops perf; returns the syscall count or None (self.error says why)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        for fd in (self.ctl_fd, self.ack_fd):
            os.close(fd)
        count = None
        try:
            with open(self.out) as f:
                for line in f:
                    parts = line.strip().split(",")
                    if len(parts) >= 3 and parts[2] == self.EVENTS:
                        count = int(parts[0]) if parts[0].isdigit() else None
        except OSError:
            pass
        if count is None and not self.error:
            self.error = "perf gave no count: " + (err.decode(errors="replace").strip()[-200:] or "?")
        return count if self.ok else None


def probe_perf():
    """Returns "" if `perf stat -e raw_syscalls:sys_enter` works here, else why not."""
    if not shutil.which("perf"):
        return "linux-perf is not installed"
    try:
        r = subprocess.run(["perf", "stat", "-e", PerfCounter.EVENTS, "-x", ",", "--", "true"],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"perf failed to run: {e}"
    for line in r.stderr.decode(errors="replace").splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[2] == PerfCounter.EVENTS and parts[0].isdigit():
            return ""
    return "perf stat cannot count raw_syscalls:sys_enter here: " + r.stderr.decode(errors="replace").strip()[-300:]


# -------------------------------------------------------------- subjects --

class Subject:
    """One server to compare: a sluice back end or a peer."""

    def __init__(self, name, kind, argv, udp=False, port_in_cmd=False, note="", tcp=True):
        self.name = name
        self.kind = kind          # "sluice" | "peer"
        self.argv = argv          # may contain "{port}"
        self.udp = udp            # can serve --proto udp
        self.tcp = tcp            # can serve TCP (min-mmsg cannot)
        self.port_in_cmd = port_in_cmd
        self.note = note
        self.broken = ""          # set if it failed to start

    def command(self, proto, codec, server_threads):
        if self.kind == "sluice":
            cmd = list(self.argv) + ["--codec", codec, "--threads", str(server_threads)]
            if proto == "udp":
                cmd += ["--proto", "udp"]
            return cmd, None
        port = free_port(proto == "udp") if self.port_in_cmd else None
        cmd = [a.replace("{port}", str(port)) if port is not None else a for a in self.argv]
        if proto == "udp":
            cmd += ["--proto", "udp"]
        return cmd, port


def list_io():
    """{name: (available, reason)} from echo_server --list-io."""
    r = subprocess.run([ECHO_SERVER, "--list-io"], capture_output=True, text=True, timeout=30)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"(\S+)\s+(available|unavailable)\s*(.*)", line)
        if m:
            reason = m.group(3).split(" -- ", 1)[1] if " -- " in m.group(3) else ""
            out[m.group(1)] = (m.group(2) == "available", reason)
    return out


def sluice_supports_udp():
    r = subprocess.run([ECHO_SERVER, "--help"], capture_output=True, text=True, timeout=30)
    return "--proto" in r.stdout


# ------------------------------------------------------------------- run --

def start_server(subj, proto, args, tmpdir, server_cpus):
    cmd, port = subj.command(proto, args.codec, args.server_threads)
    out_path = os.path.join(tmpdir, "server.out")
    err_path = os.path.join(args.out, "server-stderr.log")
    if server_cpus:
        cmd = ["taskset", "-c", cpu_spec(server_cpus)] + cmd
    with open(out_path, "w") as out, open(err_path, "a") as err:
        err.write(f"=== {subj.name} {proto}: {' '.join(shlex.quote(c) for c in cmd)}\n")
        err.flush()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{subj.name} exited with status {proc.returncode} before listening "
                               f"(see {err_path})")
        with open(out_path) as f:
            m = LISTEN_RE.search(f.read())
        if m:
            return proc, int(m.group(2))
        if port is not None and proto == "tcp":
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return proc, port
            except OSError:
                pass
        time.sleep(0.02)
    stop_proc(proc)
    raise RuntimeError(f"{subj.name} did not say 'listening on HOST:PORT' within 15 s")


def stop_proc(proc, timeout=5):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_one(subj, cell, args, tmpdir, cpus, perf_ok):
    """One run. perf_ok: attach perf to count syscalls in this run."""
    proto, conns, size, pipeline = cell
    server_cpus, client_cpus = cpus
    rec = {"server": subj.name, "kind": subj.kind, "proto": proto, "conns": conns, "size": size,
           "pipeline": pipeline, "codec": args.codec}
    proc, port = start_server(subj, proto, args, tmpdir, server_cpus)
    perf = None
    try:
        pid = proc.pid
        if perf_ok:
            perf = PerfCounter(pid, client_cpus, tmpdir)
            time.sleep(0.05)  # let perf attach before the first connection
        lg = [LOADGEN, "--port", str(port), "--proto", proto, "--conns", str(conns), "--size", str(size),
              "--pipeline", str(pipeline), "--duration-s", str(args.duration), "--warmup-s", str(args.warmup),
              "--threads", str(args.loadgen_threads), "--codec", args.codec]
        if args.idle_conns and proto == "tcp":
            lg += ["--idle-conns", str(args.idle_conns)]
        if client_cpus:
            lg = ["taskset", "-c", cpu_spec(client_cpus)] + lg
        lgp = subprocess.Popen(lg, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sel = selectors.DefaultSelector()
        sel.register(lgp.stderr, selectors.EVENT_READ)
        s0 = s1 = None
        errbuf = b""
        stderr_lines = []
        deadline = time.monotonic() + args.warmup + args.duration + 40
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.5):
                if lgp.poll() is not None:
                    break
                continue
            chunk = os.read(lgp.stderr.fileno(), 4096)
            if not chunk:
                break
            errbuf += chunk
            while b"\n" in errbuf:
                line, errbuf = errbuf.split(b"\n", 1)
                line = line.decode(errors="replace")
                if line == "loadgen: phase measure":
                    s0 = sample(pid, lgp.pid)
                    if perf:
                        perf.command("enable")
                elif line == "loadgen: phase done":
                    s1 = sample(pid, lgp.pid)
                    if perf:
                        perf.command("disable")
                else:
                    stderr_lines.append(line)
        sel.close()
        try:
            out, err = lgp.communicate(timeout=max(5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            lgp.kill()
            out, err = lgp.communicate()
            stderr_lines.append("loadgen timed out and was killed")
        stderr_lines += [x for x in err.decode(errors="replace").splitlines() if x]
        result = None
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("{"):
                result = json.loads(line)
        if result is None:
            raise RuntimeError("loadgen printed no result: " + " | ".join(stderr_lines[-5:]))
        rec.update({k: result[k] for k in ("msgs", "msgs_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us",
                                           "max_us", "errors", "lost", "duration_s")})
        rec["loadgen_rc"] = lgp.returncode
        if stderr_lines:
            rec["loadgen_stderr"] = stderr_lines[-5:]
        msgs = result["msgs"]
        if s0 and s1 and msgs > 0:
            cpu_s = (s1["ticks"] - s0["ticks"]) / CLK_TCK
            rec["cpu_us_per_msg"] = cpu_s * 1e6 / msgs
            rec["server_cpu_util"] = cpu_s / max(1e-9, s1["t"] - s0["t"])
            rec["ctxsw_per_msg"] = ctx_delta(s0["ctx"], s1["ctx"]) / msgs
            rec["window_s"] = s1["t"] - s0["t"]
            busy = (s1["busy"] - s0["busy"]) / CLK_TCK
            client = 0.0
            if s0["client"] is not None and s1["client"] is not None:
                client = (s1["client"] - s0["client"]) / CLK_TCK
                rec["client_cpu_util"] = client / rec["window_s"]
            # Everything else that ran meanwhile (perf, this script, and other
            # people's builds on a shared machine), in CPUs.
            rec["bg_cpus"] = max(0.0, busy - cpu_s - client) / rec["window_s"]
            if proto == "udp" and s0["udp_drops"] is not None and s1["udp_drops"] is not None:
                rec["udp_rcvbuf_drops"] = s1["udp_drops"] - s0["udp_drops"]
        else:
            rec["cpu_us_per_msg"] = rec["ctxsw_per_msg"] = None
        if perf:
            count = perf.finish()
            perf = None
            rec["syscalls_per_msg"] = count / msgs if (count is not None and msgs > 0) else None
            if count is None:
                rec["syscalls_note"] = "perf failed"
        else:
            rec["syscalls_per_msg"] = None
    finally:
        if perf:
            perf.finish()
        stop_proc(proc)
    return rec


# ------------------------------------------------------------- summaries --

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


METRICS = ["msgs_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us", "max_us", "cpu_us_per_msg",
           "ctxsw_per_msg", "syscalls_per_msg", "server_cpu_util", "client_cpu_util", "bg_cpus"]


def summarize(runs, cells, subjects):
    rows = []
    for cell in cells:
        for subj in subjects:
            rs = [r for r in runs if r["server"] == subj.name and (r["proto"], r["conns"], r["size"], r["pipeline"]) == cell]
            if not rs:
                continue
            ok_all = [r for r in rs if "failed" not in r]
            # Runs of a separate syscall pass carry perf's tracepoint cost:
            # only their syscall counts are used.
            ok = [r for r in ok_all if not r.get("syscall_pass")] or ok_all
            row = {"proto": cell[0], "conns": cell[1], "size": cell[2], "pipeline": cell[3], "server": subj.name,
                   "kind": subj.kind, "reps": len(ok), "failed_runs": len(rs) - len(ok_all),
                   "errors": sum(r.get("errors", 0) or 0 for r in ok), "lost": sum(r.get("lost", 0) or 0 for r in ok)}
            for m in METRICS:
                vals = [r.get(m) for r in (ok_all if m == "syscalls_per_msg" else ok)]
                row[m] = median(vals)
                row[m + "_min"], row[m + "_max"] = spread(vals)
            # CPU/msg ratio to each yardstick: per rep, then the median.
            for y in YARDSTICKS:
                ratios = []
                for r in ok:
                    ys = [x for x in runs if x["server"] == y and x.get("rep") == r.get("rep") and "failed" not in x
                          and x.get("syscall_pass") == r.get("syscall_pass")
                          and (x["proto"], x["conns"], x["size"], x["pipeline"]) == cell]
                    if ys and r.get("cpu_us_per_msg") and ys[0].get("cpu_us_per_msg"):
                        ratios.append(r["cpu_us_per_msg"] / ys[0]["cpu_us_per_msg"])
                row["cpu_ratio_" + y] = median(ratios)
                row["cpu_ratio_" + y + "_min"], row["cpu_ratio_" + y + "_max"] = spread(ratios)
            rows.append(row)
    return rows


def fmt_num(x, digits=3):
    if x is None:
        return "n/a"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.1f}k"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def fmt_spread(row, m, digits=3):
    med, lo, hi = row.get(m), row.get(m + "_min"), row.get(m + "_max")
    if med is None:
        return "n/a"
    if row["reps"] <= 1 or lo is None:
        return fmt_num(med, digits)
    return f"{fmt_num(med, digits)} ({fmt_num(lo, digits)}–{fmt_num(hi, digits)})"


def yardsticks_in(rows):
    """The yardsticks that have a row (ran) among rows, in YARDSTICKS order."""
    ran = {r["server"] for r in rows if r.get("reps")}
    return [y for y in YARDSTICKS if y in ran]


def markdown(rows):
    head = ["proto", "conns", "size", "pipe", "server", "msgs/s", "p50 µs", "p99 µs", "CPU µs/msg"]
    yards = yardsticks_in(rows)
    head += [f"CPU ÷ {y}" for y in yards]
    head += ["ctxsw/msg", "syscalls/msg", "CPU busy srv/client", "errors"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    prev = None
    for r in rows:
        cell = (r["proto"], r["conns"], r["size"], r["pipeline"])
        first = cell != prev
        prev = cell
        line = [r["proto"] if first else "", str(r["conns"]) if first else "", str(r["size"]) if first else "",
                str(r["pipeline"]) if first else "", r["server"],
                fmt_spread(r, "msgs_per_s"), fmt_num(r["p50_us"]), fmt_num(r["p99_us"]), fmt_spread(r, "cpu_us_per_msg")]
        for y in yards:
            v = r.get("cpu_ratio_" + y)
            line.append("—" if r["server"] == y else ("n/a" if v is None else f"{v:.2f}"))
        util, cutil = r.get("server_cpu_util"), r.get("client_cpu_util")
        errs = str(r["errors"]) + (f" ({r['lost']} lost)" if r["lost"] else "")
        if r["failed_runs"]:
            errs += f" [{r['failed_runs']} run(s) failed]"
        line += [fmt_num(r["ctxsw_per_msg"]), fmt_num(r["syscalls_per_msg"]),
                 ("n/a" if util is None else f"{util * 100:.0f}%") + "/" + ("n/a" if cutil is None else f"{cutil * 100:.0f}%"),
                 errs]
        out.append("| " + " | ".join(line) + " |")
    return "\n".join(out)


PALETTE = ["#9400d3", "#009e73", "#56b4e9", "#e69f00", "#d4c200", "#0072b2", "#e51e10", "#000000",
           "#8b4513", "#ff69b4", "#708090", "#2e8b57", "#4b0082", "#b8860b"]


def charts(rows, subjects, out_dir, notes):
    if not shutil.which("gnuplot"):
        notes.append("charts skipped: gnuplot not found (Debian: gnuplot-nox)")
        return []
    made = []
    groups = sorted({(r["proto"], r["size"], r["pipeline"]) for r in rows})
    for proto, size, pipe in groups:
        sel = [r for r in rows if (r["proto"], r["size"], r["pipeline"]) == (proto, size, pipe)]
        sel = [r for r in sel if r["reps"] > 0 and r["msgs_per_s"] is not None]
        conns = sorted({r["conns"] for r in sel})
        if len(conns) < 2:
            continue
        names = [s.name for s in subjects if any(r["server"] == s.name for r in sel)]
        tag = f"{proto}_s{size}_p{pipe}"
        dat = os.path.join(out_dir, f"data_{tag}.dat")
        with open(dat, "w") as f:
            for metric in ("msgs_per_s", "p99_us", "cpu_us_per_msg"):
                for name in names:
                    f.write(f'"{name}"\n')
                    for c in conns:
                        rr = [r for r in sel if r["server"] == name and r["conns"] == c]
                        if rr and rr[0][metric] is not None and rr[0]["reps"] > 0:
                            f.write(f"{c} {rr[0][metric]} {rr[0][metric + '_min']} {rr[0][metric + '_max']}\n")
                    f.write("\n\n")
        n = len(names)
        for i, (metric, ylabel, fname, logy) in enumerate([
                ("msgs_per_s", "thousand echoed messages / s (median, min-max bars)", f"throughput_{tag}.svg", False),
                ("p99_us", "p99 round-trip latency, µs (median)", f"p99_{tag}.svg", True),
                ("cpu_us_per_msg", "server CPU µs per message (median, min-max bars)", f"cpu_{tag}.svg", True)]):
            svg = os.path.join(out_dir, fname)
            what = {"msgs_per_s": "throughput", "p99_us": "p99 latency", "cpu_us_per_msg": "server CPU per message"}[metric]
            title = f"{proto.upper()} echo, {size}-byte messages, pipeline {pipe}: {what} vs connections"
            gp = [
                "set terminal svg size 900,540 dynamic enhanced font 'sans,12' background '#ffffff'",
                f"set output '{svg}'",
                f"set title \"{title}\"",
                "set xlabel 'connections (log scale)'",
                f"set ylabel '{ylabel}'",
                "set logscale x",
                f"set xtics ({', '.join(str(c) for c in conns)})",
                "set key outside right top",
                "set grid",
                "set logscale y" if logy else "",
                "set yrange [0:*]" if not logy else "",
            ]
            plots = []
            kinds = {s.name: s.kind for s in subjects}
            for j, name in enumerate(names):
                idx = i * n + j
                # Distinct colours; peers dashed, the yardsticks thick.
                style = f"lc rgb '{PALETTE[j % len(PALETTE)]}' dt {1 if kinds.get(name) == 'sluice' else 2} " \
                        f"lw {3 if name in YARDSTICKS else 2}"
                if metric == "msgs_per_s":
                    plots.append(f"'{dat}' index {idx} using 1:($2/1e3):($3/1e3):($4/1e3) with yerrorlines {style} "
                                 f"title '{name}'")
                elif metric == "cpu_us_per_msg":
                    plots.append(f"'{dat}' index {idx} using 1:2:3:4 with yerrorlines {style} title '{name}'")
                else:
                    plots.append(f"'{dat}' index {idx} using 1:2 with linespoints {style} title '{name}'")
            gp.append("plot " + ", \\\n  ".join(plots))
            with open(svg[:-4] + ".gp", "w") as f:  # kept so a chart can be re-styled by hand
                f.write("\n".join(gp) + "\n")
            r = subprocess.run(["gnuplot"], input="\n".join(gp) + "\n", text=True, capture_output=True)
            if r.returncode == 0 and os.path.exists(svg):
                made.append(svg)
            else:
                notes.append(f"gnuplot failed for {fname}: {r.stderr.strip()[-200:]}")
    return made


# ------------------------------------------------------------------ main --

def git_describe():
    """HEAD and whether the tree had local changes (read-only git calls)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head + ("+local changes" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--io", type=csv_list(str), default=None,
                    help="sluice back ends (default: %s; 'none' for peers only)" % ",".join(DEFAULT_IO))
    ap.add_argument("--peers", type=csv_list(str), default=None,
                    help="built-in peers (default: %s; 'none' for none)" % ",".join(BUILTIN_PEERS))
    ap.add_argument("--peer", action="append", default=[], metavar="NAME=COMMAND",
                    help="another echo server; {port} in COMMAND is replaced by a free port (repeatable)")
    ap.add_argument("--conns", type=csv_list(int), default=[1, 64, 1000], help="connection counts (default 1,64,1000)")
    ap.add_argument("--sizes", "--size", type=csv_list(int), default=[64], help="message sizes, bytes (default 64)")
    ap.add_argument("--pipeline", type=csv_list(int), default=[1, 8],
                    help="messages in flight per connection (default 1,8)")
    ap.add_argument("--proto", type=csv_list(str), default=["tcp", "udp"],
                    help="tcp,udp (udp only where the server supports it)")
    ap.add_argument("--udp-yardstick", default=DEFAULT_UDP_YARDSTICK, metavar="NAME",
                    help="the server UDP cells give CPU/msg ratios to (default %(default)s, the hand-written "
                         "recvmmsg/sendmmsg loop; any server of the run; 'none' for none). It is run as a peer "
                         "in UDP cells when it is a built-in peer, whatever --peers says")
    ap.add_argument("--codec", default="raw", choices=["raw", "length"],
                    help="framing for sluice and loadgen (peers only speak raw; they are skipped with 'length')")
    ap.add_argument("--idle-conns", type=int, default=0, metavar="N",
                    help="TCP: N extra connections that are opened and never send (idle descriptors on the "
                         "server, where select/poll pay per call and epoll/io_uring do not)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every run (default 3)")
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per run")
    ap.add_argument("--server-threads", type=int, default=1, help="sluice --threads")
    ap.add_argument("--loadgen-threads", type=int, default=None, help="default: number of client CPUs")
    ap.add_argument("--server-cpus", default=None, help="CPU list for the server (default: 0)")
    ap.add_argument("--client-cpus", default=None, help="CPU list for loadgen and perf (default: the rest)")
    ap.add_argument("--out", default=None, help="output directory (default: a new one under /tmp)")
    ap.add_argument("--quick", action="store_true",
                    help="short sweep for the demo (~1 min): conns 1,64; pipeline 1,8 (UDP: one cell, the most "
                         "conns at the least pipeline); yardsticks as the only peers; 1 rep of 1 s (+0.3 s warmup); "
                         "syscalls counted inline")
    ap.add_argument("--no-build", action="store_true", help="use the binaries as they are (see --bin)")
    ap.add_argument("--bin", default=None,
                    help="bazel-bin directory to take binaries from (default: `bazel info bazel-bin` after "
                         "building, or ./bazel-bin with --no-build)")
    ap.add_argument("--syscalls", choices=["separate", "inline", "off"], default=None,
                    help="how syscalls/msg is counted: 'separate' (default) = one extra pass with perf attached, "
                         "kept out of the other numbers; 'inline' (default with --quick) = in the measured runs; "
                         "'off' = n/a")
    ap.add_argument("--no-syscalls", action="store_true", help="same as --syscalls off")
    ap.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                    help="before each run wait up to S seconds for other load on the machine to drop below "
                         "0.15 CPUs (a shared machine: other people's builds skew the numbers)")
    ap.add_argument("--replot", metavar="DIR", default=None,
                    help="only re-render tables, CSVs and charts from DIR/results.json")
    args = ap.parse_args()
    if args.replot:
        return replot(args.replot)
    set_yardsticks(args.udp_yardstick)

    if args.quick:
        args.conns = [1, 64] if args.conns == [1, 64, 1000] else args.conns
        args.reps = 1
        args.duration = 1.0
        args.warmup = 0.3
        if args.peers is None:
            args.peers = [y for y in YARDSTICKS if y in BUILTIN_PEERS]
    io_names = DEFAULT_IO if args.io is None else [x for x in args.io if x != "none"]
    peer_names = list(BUILTIN_PEERS) if args.peers is None else [x for x in args.peers if x != "none"]
    # UDP cells are measured against their yardstick, so it runs whenever
    # they do (as min-epoll and min-uring do by default for TCP).
    if "udp" in args.proto and args.udp_yardstick in BUILTIN_PEERS and args.udp_yardstick not in peer_names:
        peer_names.append(args.udp_yardstick)
    for p in peer_names:
        if p not in BUILTIN_PEERS:
            ap.error(f"unknown peer {p!r} (built-in: {', '.join(BUILTIN_PEERS)}; use --peer NAME=COMMAND)")
    for p in args.proto:
        if p not in ("tcp", "udp"):
            ap.error("--proto takes tcp,udp")
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="sluice-compare-out-")
    os.makedirs(args.out, exist_ok=True)
    notes = []

    # CPUs: the server gets its own; loadgen, perf and this script the rest.
    allowed = sorted(os.sched_getaffinity(0))
    if args.server_cpus or args.client_cpus:
        server_cpus = parse_cpus(args.server_cpus) if args.server_cpus else allowed[:1]
        client_cpus = parse_cpus(args.client_cpus) if args.client_cpus else [c for c in allowed if c not in server_cpus]
    elif len(allowed) >= 2:
        server_cpus, client_cpus = allowed[:1], allowed[1:]
    else:
        server_cpus = client_cpus = []
        notes.append("only one CPU: server and loadgen share it (no pinning); numbers include their contention")
    if client_cpus and not shutil.which("taskset"):
        notes.append("taskset not found: no pinning")
        server_cpus = client_cpus = []
    if args.loadgen_threads is None:
        args.loadgen_threads = max(1, len(client_cpus) or 1)

    # Build what this sweep needs (our targets and the echo server only),
    # then copy the binaries somewhere private: the bazel-bin convenience
    # link follows whichever build ran last in this tree (another config or
    # output base re-points it), which must not change servers mid-sweep.
    global BIN, ECHO_SERVER, LOADGEN
    targets = ["//servers:echo_server", "//perf:loadgen"] + sorted({BUILTIN_PEERS[p][0] for p in peer_names})
    src_bin = args.bin or os.path.join(ROOT, "bazel-bin")
    if not args.no_build:
        log("compare: bazel build " + " ".join(targets))
        r = subprocess.run(["bazel", "build"] + targets, cwd=ROOT)
        if r.returncode != 0:
            log("compare: build failed")
            return 2
        if not args.bin:
            r = subprocess.run(["bazel", "info", "bazel-bin"], cwd=ROOT, capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip():
                src_bin = r.stdout.strip()
    rels = ["servers/echo_server", "perf/loadgen"] + sorted({BUILTIN_PEERS[p][1] for p in peer_names})
    BIN = os.path.join(WORK, "bin")
    for rel in rels:
        src = os.path.join(src_bin, rel)
        if not os.access(src, os.X_OK):
            log(f"compare: {src} is missing (build it, or drop --no-build)")
            return 2
        os.makedirs(os.path.dirname(os.path.join(BIN, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(BIN, rel))
    ECHO_SERVER = os.path.join(BIN, "servers", "echo_server")
    LOADGEN = os.path.join(BIN, "perf", "loadgen")
    if client_cpus:  # after the build, which should use every CPU
        os.sched_setaffinity(0, client_cpus)

    subjects = []
    if io_names:
        avail = list_io()
        for name in io_names:
            ok, why = avail.get(name, (False, "not a sluice back end (see echo_server --list-io)"))
            if not ok:
                notes.append(f"sluice back end {name!r} skipped: unavailable here ({why})")
                continue
            subjects.append(Subject(name, "sluice", [ECHO_SERVER, "--io", name, "--port", "0", "--log-level", "warn"],
                                    udp=True))
    sluice_udp = bool(io_names) and sluice_supports_udp()
    if "udp" in args.proto and io_names and not sluice_udp:
        notes.append("sluice UDP skipped: this echo_server has no --proto option yet")
    if args.codec != "raw" and peer_names + args.peer:
        notes.append(f"peers skipped: they only echo raw bytes, and --codec is {args.codec}")
    else:
        for p in peer_names:
            _, rel, protos, extra = BUILTIN_PEERS[p]
            subjects.append(Subject(p, "peer", [os.path.join(BIN, rel), "--port", "0"] + extra,
                                    udp="udp" in protos, tcp="tcp" in protos))
        for spec in args.peer:
            if "=" not in spec:
                ap.error("--peer takes NAME=COMMAND")
            name, cmd = spec.split("=", 1)
            argv = shlex.split(cmd)
            if not any("{port}" in a for a in argv):
                ap.error(f"--peer {name}: COMMAND must contain {{port}}")
            subjects.append(Subject(name, "peer", argv, udp=False, port_in_cmd=True))
    if not subjects:
        log("compare: nothing to compare")
        return 2

    if args.no_syscalls:
        args.syscalls = "off"
    if args.syscalls is None:
        args.syscalls = "inline" if args.quick else "separate"
    perf_why = "" if args.syscalls != "off" else "disabled (--syscalls off)"
    if not perf_why:
        perf_why = probe_perf()
    if perf_why:
        notes.append("syscalls/msg is n/a: " + perf_why)
    elif args.syscalls == "inline":
        notes.append("syscalls counted in the measured runs themselves (--syscalls inline): perf's tracepoint "
                     "adds ~0.1 µs per server syscall to CPU/msg, favouring servers that make fewer syscalls")

    cells = [(p, c, s, k) for p in args.proto for c in args.conns for s in args.sizes for k in args.pipeline]
    if args.quick:  # keep the demo near a minute: UDP gets one cell
        udp = [x for x in cells if x[0] == "udp"]
        cells = [x for x in cells if x[0] != "udp"] + ([max(udp, key=lambda x: (x[1], -x[3]))] if udp else [])

    def runs_for(subj, cell):
        if cell[0] == "udp":
            return subj.udp and (subj.kind != "sluice" or sluice_udp)
        return subj.tcp

    plan = []  # (rep, cell, subject, count syscalls in this run)
    inline = not perf_why and args.syscalls == "inline"
    for rep in range(args.reps):
        order = subjects[rep % len(subjects):] + subjects[:rep % len(subjects)]
        for cell in cells:
            for subj in order:
                if runs_for(subj, cell):
                    plan.append((rep, cell, subj, inline))
    if not perf_why and args.syscalls == "separate":
        for cell in cells:  # one extra pass, perf attached, for syscalls/msg only
            for subj in subjects:
                if runs_for(subj, cell):
                    plan.append((args.reps, cell, subj, True))
    if not plan:
        log("compare: no runs in this plan")
        return 2
    for subj in subjects:
        if "udp" in args.proto and not runs_for(subj, ("udp", 0, 0, 0)) and subj.kind == "peer":
            notes.append(f"{subj.name}: TCP only, no UDP runs")
        if "tcp" in args.proto and not subj.tcp:
            notes.append(f"{subj.name}: UDP only, no TCP runs")
    if "udp" in args.proto and args.udp_yardstick != "none":
        if not any(s.name == args.udp_yardstick and s.udp for s in subjects):
            notes.append(f"UDP yardstick {args.udp_yardstick!r} is not among this run's UDP servers: "
                         "UDP cells have no ratio to it")

    tmpdir = os.path.join(WORK, "run")
    os.makedirs(tmpdir)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(), "kernel": platform.release(), "cpus_online": os.cpu_count(),
        "server_cpus": server_cpus, "client_cpus": client_cpus,
        "args": {k: v for k, v in vars(args).items()},
        "subjects": [{"name": s.name, "kind": s.kind, "argv": s.argv} for s in subjects],
        "git": git_describe() + (f" (tree at run time; binaries taken as they were from {src_bin})"
                                 if args.no_build else ""),
        "syscall_counting": "perf stat -e raw_syscalls:sys_enter -p PID, gated to the window" if not perf_why else perf_why,
    }
    per_run = args.warmup + args.duration + 1.0
    log(f"compare: {len(plan)} runs ({len(cells)} cells x {len(subjects)} servers x {args.reps} reps, "
        f"some skipped), about {len(plan) * per_run / 60:.1f} min; output in {args.out}")
    for n in notes:
        log("compare: note: " + n)

    runs = []
    t_start = time.monotonic()
    try:
        for i, (rep, cell, subj, count_syscalls) in enumerate(plan):
            done = time.monotonic() - t_start
            left = (done / i) * (len(plan) - i) if i else len(plan) * per_run
            what = f"rep {rep + 1}/{args.reps}" if rep < args.reps else "syscall pass"
            bg = wait_quiet(args.quiet_wait) if args.quiet_wait > 0 else None
            log(f"[{i + 1}/{len(plan)}] {what} {cell[0]} conns={cell[1]} size={cell[2]} "
                f"pipeline={cell[3]} server={subj.name}  (~{int(left) // 60}m{int(left) % 60:02d}s left)"
                + (f" [machine busy: {bg:.2f} CPUs]" if bg is not None and bg >= 0.15 else ""))
            if subj.broken:
                runs.append({"server": subj.name, "kind": subj.kind, "proto": cell[0], "conns": cell[1],
                             "size": cell[2], "pipeline": cell[3], "rep": rep, "failed": subj.broken})
                continue
            try:
                rec = run_one(subj, cell, args, tmpdir, (server_cpus, client_cpus), count_syscalls)
            except Exception as e:  # noqa: BLE001 -- one bad run must not end the sweep
                msg = str(e)
                log(f"    failed: {msg}")
                if "before listening" in msg or "did not say" in msg:
                    subj.broken = msg
                    notes.append(f"{subj.name} could not start: {msg}")
                rec = {"server": subj.name, "kind": subj.kind, "proto": cell[0], "conns": cell[1],
                       "size": cell[2], "pipeline": cell[3], "failed": msg}
            rec["rep"] = rep
            if rep >= args.reps:
                rec["syscall_pass"] = True
            runs.append(rec)
            if rec.get("errors"):
                log(f"    {rec['errors']} errors ({'; '.join(rec.get('loadgen_stderr', []))})")
    except KeyboardInterrupt:
        notes.append(f"interrupted after {len(runs)} of {len(plan)} runs")

    notes += [n for n in write_outputs(args.out, meta, runs, cells, subjects, notes) if n not in notes]
    log(f"compare: done in {time.monotonic() - t_start:.0f} s; results in {args.out}")
    total_errors = sum(r.get("errors", 0) or 0 for r in runs)
    return 1 if total_errors or any("failed" in r for r in runs) else 0


def write_outputs(out_dir, meta, runs, cells, subjects, notes):
    """Summary, tables, CSVs, charts and results.json from the raw runs."""
    notes = [n for n in notes if "runs had other" not in n]  # recomputed below
    rows = summarize(runs, cells, subjects)
    noisy = [r for r in runs if (r.get("bg_cpus") or 0) > 0.15 and not r.get("syscall_pass")]
    if noisy:
        worst = max(r["bg_cpus"] for r in noisy)
        notes.append(f"other load: {len(noisy)} of {len(runs)} runs had other processes using more than 0.15 CPUs "
                     f"(worst {worst:.2f} CPUs): see bg_cpus in runs.csv")
    table = markdown(rows)
    headline = pivot(rows, subjects)
    notes = [n for n in notes if not n.startswith("charts skipped") and not n.startswith("gnuplot failed")]
    svgs = charts(rows, subjects, out_dir, notes)

    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "notes": notes, "summary": rows, "runs": runs}, f, indent=1)
    cols = ["proto", "conns", "size", "pipeline", "server", "kind", "reps", "failed_runs", "errors", "lost"]
    for m in METRICS:
        cols += [m, m + "_min", m + "_max"]
    for y in YARDSTICKS:
        cols += ["cpu_ratio_" + y, "cpu_ratio_" + y + "_min", "cpu_ratio_" + y + "_max"]
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    run_cols = ["rep", "syscall_pass", "proto", "conns", "size", "pipeline", "server", "kind", "msgs", "msgs_per_s",
                "p50_us", "p99_us", "p999_us", "max_us", "errors", "lost", "cpu_us_per_msg", "ctxsw_per_msg",
                "syscalls_per_msg", "server_cpu_util", "client_cpu_util", "bg_cpus", "udp_rcvbuf_drops", "window_s",
                "failed"]
    with open(os.path.join(out_dir, "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=run_cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(runs)

    a = meta["args"]
    sc, cc = meta.get("server_cpus") or [], meta.get("client_cpus") or []
    header = (f"sluice IO comparison — {meta['date']}, sluice {meta.get('git', '?')}, kernel {meta['kernel']}, "
              f"{meta['cpus_online']} CPUs; "
              f"server on CPU {cpu_spec(sc) or 'any'}, loadgen on {cpu_spec(cc) or 'any'}; "
              f"{a['reps']} rep(s) x {a['duration']:g} s (+{a['warmup']:g} s warmup), codec {a['codec']}; "
              + (f"plus {a['idle_conns']} idle TCP connections in every run; " if a.get("idle_conns") else "") +
              "median (min–max) over reps.")
    text = header + "\n\n" + table + "\n"
    if headline:
        text += "\nServer CPU µs per message (÷ each yardstick in the cell, per-rep ratios, median) and msgs/s:\n\n"
        text += headline + "\n"
    if notes:
        text += "\nNotes:\n" + "\n".join("- " + n for n in notes) + "\n"
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    print(text)
    return notes


def pivot(rows, subjects):
    """Compact view: one line per server, CPU/msg and msgs/s per connection count."""
    out = []
    groups = sorted({(r["proto"], r["size"], r["pipeline"]) for r in rows})
    for proto, size, pipe in groups:
        sel = [r for r in rows if (r["proto"], r["size"], r["pipeline"]) == (proto, size, pipe)]
        conns = sorted({r["conns"] for r in sel})
        yards = yardsticks_in(sel)
        head = ["server"] + [f"{c} conn{'s' if c != 1 else ''}: CPU µs/msg" for c in conns] + \
               [f"{c}: msgs/s" for c in conns]
        out.append(f"{proto.upper()}, {size}-byte messages, pipeline {pipe}"
                   + (f" (CPU ÷ {' / ÷ '.join(yards)})" if yards else "") + ":\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for s in subjects:
            rr = {r["conns"]: r for r in sel if r["server"] == s.name}
            if not rr:
                continue
            cpu_cells, tput = [], []
            for c in conns:
                r = rr.get(c)
                if not r or r["cpu_us_per_msg"] is None:
                    cpu_cells.append("n/a")
                    tput.append("n/a")
                    continue
                ratios = []
                for y in yards:
                    v = r.get("cpu_ratio_" + y)
                    ratios.append("—" if s.name == y else ("n/a" if v is None else f"{v:.2f}"))
                cpu_cells.append(f"{r['cpu_us_per_msg']:.2f}" + (f" ({' / '.join(ratios)})" if ratios else ""))
                tput.append(fmt_num(r["msgs_per_s"]))
            out.append("| " + " | ".join([s.name] + cpu_cells + tput) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def replot(dir_):
    """Re-renders tables, CSVs and charts from DIR/results.json (no runs)."""
    with open(os.path.join(dir_, "results.json")) as f:
        data = json.load(f)
    meta, runs = data["meta"], data["runs"]
    subjects = [Subject(s["name"], s["kind"], s["argv"]) for s in meta["subjects"]]
    a = meta["args"]
    set_yardsticks(a.get("udp_yardstick", DEFAULT_UDP_YARDSTICK))
    cells = [(p, c, s, k) for p in a["proto"] for c in a["conns"] for s in a["sizes"] for k in a["pipeline"]]
    write_outputs(dir_, meta, runs, cells, subjects, data.get("notes", []))
    return 0

if __name__ == "__main__":
    WORK = tempfile.mkdtemp(prefix="sluice-compare-")
    try:
        rc = main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(rc)
