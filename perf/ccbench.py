#!/usr/bin/env python3
"""ccbench: a Pantheon-style congestion-control bench over perf/linkem.

Usage (needs root: linkem makes two network namespaces per run):

  scripts/ccbench.sh --quick                      # ~2 min demo, out in /tmp/ccbench-quick
  scripts/ccbench.sh --quick --schemes rudp-fixed,tcp-cubic,tcp-bbr,enet,udt
  scripts/ccbench.sh                              # the full grid, out in docs/perf/cc
  scripts/ccbench.sh --workloads fair2,small --rates 20 --rtts 50 --losses 0 --queues 1 \\
                     --seconds 10 --out /tmp/cc

  --schemes   rudp-<cc> (one per controller: default newreno,cubic,bbr,vegas,fixed;
              a name `rudp_bulk --list-cc` does not list is skipped with a
              message), tcp-<cc> (TCP_CONGESTION: cubic, bbr, reno), enet, udt
  --workloads bulk     one flow for --seconds: goodput, utilisation, one-way
                       delay p95 (linkem, data direction), queueing delay
                       p95 (= p95 - base one-way delay), retransmission overhead
              small    msg_rtt-style small messages (--small-conns connections,
                       one 8-256 B message each every 20 ms): mean and p99 RTT,
                       also as multiples of the link's RTT
              fair2, fair4  2 / 4 flows of one scheme at once: per-flow
                       goodput and Jain's index (sum x)^2 / (n sum x^2)
              vs-tcp   one rudp-cubic flow and one tcp-cubic flow together:
                       each one's share of the total
  --rates (Mbit/s) 20,100  --rtts (ms) 10,50,200  --losses (%) 0,1,5
  --queues (in BDPs) 1,4  --seconds 30  --out DIR  --quick  --dry-run

The link (perf/linkem): the rate and a drop-tail queue of queue x BDP bytes
(BDP = rate x RTT, at least 4 packets) in each direction, one-way delay
RTT/2 each way, and the random loss on the data direction only (near ->
far, "up": the senders run near, the receivers far), as Pantheon's
mm-loss on the data path; ACKs cross a clean path. Goodput is measured at
the receiver over a fixed window [first byte + warm-up, first byte +
seconds] per flow (the servers' JSON lines), so a sender's drain after
--seconds does not count. Warm-up: 1 s (or seconds / 5 if shorter).
Retransmission overhead: retransmitted / first transmissions — bytes for
rudp (rudp::stats) and TCP (TCP_INFO), packets for ENet and UDT.

Output in --out: results.jsonl (one object per run, every parameter and
figure), results.csv (the same columns), summary.txt (the table, printed
too), and one chart per link and workload (bulk-*.svg: x = one-way delay
p95 in ms, log scale, reversed as Pantheon draws it; y = goodput Mbit/s;
a labelled point per scheme; gnuplot). Every run is bounded by linkem's
--duration, and all traffic stays inside linkem's namespaces.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

DEFAULT_CCS = ["newreno", "cubic", "bbr", "vegas", "fixed"]
DEFAULT_SCHEMES = ["rudp-" + c for c in DEFAULT_CCS] + ["tcp-cubic", "tcp-bbr", "tcp-reno", "enet", "udt"]
WORKLOADS = ["bulk", "small", "fair2", "fair4", "vs-tcp"]
MTU = 1500
PORT = 9000

COLUMNS = [
    "workload", "scheme", "rate_mbit", "rtt_ms", "loss_pct", "queue_bdp", "queue_bytes", "seconds", "flows",
    "status", "goodput_mbit", "utilisation", "per_flow_mbit", "jain", "shares", "owd_mean_ms", "owd_p50_ms",
    "owd_p95_ms", "owd_p99_ms", "base_owd_ms", "qdelay_p95_ms", "retx_overhead", "rtt_mean_ms", "rtt_p99_ms",
    "rtt_mean_x", "rtt_p99_x", "messages", "unanswered", "queue_drops", "lost_random", "linkem_exit", "wall_s",
]


# ----------------------------------------------------------- pure functions --
def jain(xs):
    """Jain's fairness index (sum x)^2 / (n sum x^2); 1 = equal shares."""
    xs = [float(x) for x in xs]
    if not xs:
        return None
    sq = sum(x * x for x in xs)
    if sq == 0:
        return None
    return sum(xs) ** 2 / (len(xs) * sq)


def percentile(xs, q):
    """The q-th percentile (0..100) with linear interpolation; None if empty."""
    xs = sorted(float(x) for x in xs)
    if not xs:
        return None
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def bdp_bytes(rate_mbit, rtt_ms):
    return int(rate_mbit * 1e6 / 8 * rtt_ms / 1000.0)


def queue_bytes(rate_mbit, rtt_ms, queue_bdp):
    """Drop-tail limit: queue_bdp x BDP, never under 4 full packets."""
    return max(int(queue_bdp * bdp_bytes(rate_mbit, rtt_ms)), 4 * MTU)


def base_owd_ms(rate_mbit, rtt_ms):
    """One-way delay of a full packet through an empty queue."""
    return rtt_ms / 2.0 + MTU * 8 / (rate_mbit * 1e6) * 1000.0


def parse_scheme(name):
    """'rudp-cubic' -> ('rudp', 'cubic'); 'tcp-bbr' -> ('tcp', 'bbr'); 'enet' -> ('enet', '')."""
    if name in ("enet", "udt"):
        return name, ""
    for kind in ("rudp", "tcp"):
        if name.startswith(kind + "-") and len(name) > len(kind) + 1:
            return kind, name[len(kind) + 1:]
    raise ValueError("unknown scheme '%s' (rudp-<cc>, tcp-<cc>, enet, udt)" % name)


def link_label(rate, rtt, loss, queue):
    return "%gmbit %gms %g%% %gbdp" % (rate, rtt, loss, queue)


def fmt(v, spec="%.1f"):
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return spec % v
    return str(v)


def format_table(rows):
    """The plain-text summary: one line per run, columns aligned."""
    head = ["workload", "scheme", "link", "goodput", "util", "owd p95", "qdelay p95", "retx",
            "rtt mean", "rtt p99", "fairness / note"]
    lines = [head]
    for r in rows:
        if r.get("status") != "ok":
            lines.append([r["workload"], r["scheme"],
                          link_label(r["rate_mbit"], r["rtt_ms"], r["loss_pct"], r["queue_bdp"]),
                          "-", "-", "-", "-", "-", "-", "-", r.get("status", "?")])
            continue
        fair = ""
        if r.get("jain") is not None:
            fair = "jain %.3f" % r["jain"]
        if r.get("shares"):
            fair = r["shares"]
        lines.append([
            r["workload"], r["scheme"], link_label(r["rate_mbit"], r["rtt_ms"], r["loss_pct"], r["queue_bdp"]),
            fmt(r.get("goodput_mbit"), "%.2f Mb/s"), fmt(r.get("utilisation"), "%.2f"),
            fmt(r.get("owd_p95_ms"), "%.1f ms"), fmt(r.get("qdelay_p95_ms"), "%.1f ms"),
            fmt(r.get("retx_overhead") if r.get("retx_overhead") is None else 100 * r["retx_overhead"], "%.2f%%"),
            fmt(r.get("rtt_mean_ms"), "%.1f ms"), fmt(r.get("rtt_p99_ms"), "%.1f ms"), fair,
        ])
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(head))]
    out = []
    for n, l in enumerate(lines):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(l, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def progress_line(i, n, r):
    link = "%gmbit %gms %g%% %gbdp" % (r["rate_mbit"], r["rtt_ms"], r["loss_pct"], r["queue_bdp"])
    head = "[%d/%d] %s %s %s ..." % (i, n, r["workload"], r["scheme"], link)
    if r["status"] != "ok":
        return head + " " + r["status"]
    if r["workload"] == "small":
        return head + " rtt mean %s ms p99 %s ms" % (fmt(r.get("rtt_mean_ms")), fmt(r.get("rtt_p99_ms")))
    tail = " %s Mbit/s p95 %s ms" % (fmt(r.get("goodput_mbit")), fmt(r.get("owd_p95_ms")))
    if r.get("jain") is not None:
        tail += " jain %.3f" % r["jain"]
    if r.get("shares"):
        tail += " " + r["shares"]
    return head + tail


def csv_value(v):
    if isinstance(v, list):
        return ";".join(fmt(x, "%.3f") for x in v)
    if v is None:
        return ""
    return v


# ------------------------------------------------------------------ runner --
class Bench:
    def __init__(self, args, root):
        self.a = args
        self.bin = os.path.join(root, "bazel-bin", "perf")
        self.tmp = tempfile.mkdtemp(prefix="ccbench-")
        self.ccs = None
        self.out = "."  # set by main: traces go under it

    def rudp_ccs(self):
        if self.ccs is None:
            out = subprocess.run([os.path.join(self.bin, "rudp_bulk"), "--list-cc"], capture_output=True,
                                 text=True)
            self.ccs = out.stdout.split() if out.returncode == 0 else []
        return self.ccs

    def check_scheme(self, name):
        """'' if runnable, else why not."""
        try:
            kind, cc = parse_scheme(name)
        except ValueError as e:
            return str(e)
        if kind == "rudp" and cc not in self.rudp_ccs():
            return "skipped: rudp_bulk has no controller '%s' (has: %s)" % (cc, ",".join(self.rudp_ccs()))
        if kind == "tcp":
            try:
                with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
                    have = f.read().split()
                with open("/proc/sys/net/ipv4/tcp_allowed_congestion_control") as f:
                    have += f.read().split()
            except OSError:
                have = [cc]
            if cc not in have and not os.path.exists("/lib/modules"):
                return "skipped: the kernel has no TCP congestion control '%s'" % cc
        return ""

    # Commands for one flow of a scheme: (server argv string, client string).
    def bulk_cmds(self, scheme, port, sjson, cjson, seconds, warmup, drain, trace=None):
        kind, cc = parse_scheme(scheme)
        b = self.bin
        if kind in ("rudp", "tcp"):
            # rudp's flow-control window and send buffer: 16 MiB, above the
            # grid's largest BDP x (1 + queue) but for 100 Mbit/s, 200 ms,
            # 4 BDP (12.5 MB of it fits), so the controller sets the pace.
            ccarg = "--cc %s --window 16777216" % cc if kind == "rudp" else "--tcp-cc %s" % cc
            srv = "%s/rudp_bulk --server --proto %s %s --host 0.0.0.0 --port %d --seconds %g --warmup %g --json %s" % (
                b, kind, ccarg if kind == "rudp" else "", port, seconds, warmup, sjson)
            cli = ("%s/rudp_bulk --proto %s %s --host $LINKEM_FAR_ADDR --port %d --seconds %g --drain %g "
                   "--timeout %g --json %s" % (b, kind, ccarg, port, seconds, drain, seconds + drain + 10, cjson))
            if trace:
                cli += " --trace %s --trace-ms 100" % trace
        else:
            tool = "%s/peers/%s_bulk" % (b, kind)
            srv = "%s --server --host 0.0.0.0 --port %d --seconds %g --warmup %g --json %s" % (
                tool, port, seconds, warmup, sjson)
            cli = "%s --host $LINKEM_FAR_ADDR --port %d --seconds %g --warmup %g --drain %g --json %s" % (
                tool, port, seconds, warmup, drain, cjson)
        return srv, cli

    def small_cmds(self, scheme, port, cjson, seconds, warmup):
        kind, cc = parse_scheme(scheme)
        b = self.bin
        common = "--port %d --conns %d --interval-ms 20 --min-size 8 --max-size 256 --seconds %g --warmup %g" % (
            port, self.a.small_conns, seconds, warmup)
        if kind in ("rudp", "tcp"):
            srv = "%s/msg_rtt --server --proto %s %s --host 0.0.0.0 --port %d" % (
                b, kind, "--cc " + cc if kind == "rudp" else "", port)
            ccarg = "--cc %s" % cc if kind == "rudp" else "--tcp-cc %s" % cc
            cli = "%s/msg_rtt --proto %s %s --host $LINKEM_FAR_ADDR %s --label ccbench --json %s" % (
                b, kind, ccarg, common, cjson)
        else:
            tool = "%s/peers/%s_bulk" % (b, kind)
            srv = "%s --server --host 0.0.0.0 --port %d" % (tool, port)
            cli = "%s --mode latency --host $LINKEM_FAR_ADDR %s --label ccbench --json %s" % (tool, common, cjson)
        return srv, cli

    def linkem(self, rate, rtt, loss, queue, near, far, duration, ljson):
        qb = queue_bytes(rate, rtt, queue)
        argv = [os.path.join(self.bin, "linkem"), "-q", "--rate", "%gmbit" % rate, "--delay-ms", "%g" % (rtt / 2.0),
                "--up-loss", "%g" % (loss / 100.0), "--queue-packets", "0", "--queue-bytes", str(qb),
                "--duration", "%d" % duration, "--seed", str(self.a.seed), "--json", ljson,
                "--near", near, "--", "sh", "-c", far]
        if self.a.verbose:
            print("+ " + " ".join(argv), file=sys.stderr)
        p = subprocess.run(argv, capture_output=True, text=True)
        if self.a.verbose:
            sys.stderr.write(p.stdout + p.stderr)
        return p.returncode, p.stdout + p.stderr

    def run(self, workload, scheme, rate, rtt, loss, queue):
        a = self.a
        r = {"workload": workload, "scheme": scheme, "rate_mbit": rate, "rtt_ms": rtt, "loss_pct": loss,
             "queue_bdp": queue, "queue_bytes": queue_bytes(rate, rtt, queue), "seconds": a.seconds,
             "status": "ok", "base_owd_ms": round(base_owd_ms(rate, rtt), 3)}
        schemes = [scheme]
        if workload == "fair2":
            schemes = [scheme] * 2
        elif workload == "fair4":
            schemes = [scheme] * 4
        elif workload == "vs-tcp":
            schemes = [a.vs_scheme, "tcp-cubic"]
        r["flows"] = len(schemes)
        for s in set(schemes):
            why = self.check_scheme(s)
            if why:
                r["status"] = why if why.startswith("skipped") else "skipped: " + why
                return r
        d = tempfile.mkdtemp(dir=self.tmp)
        ljson = os.path.join(d, "link.json")
        seconds = a.seconds
        warmup = min(1.0, seconds / 5.0)
        drain = a.drain
        t0 = time.time()
        if workload == "small":
            cjson = os.path.join(d, "client.jsonl")
            srv, cli = self.small_cmds(scheme, PORT, cjson, seconds, warmup)
            rc, log = self.linkem(rate, rtt, loss, queue, "sleep 0.5; " + cli, srv,
                                  int(seconds + warmup + 40), ljson)
            lines = read_jsonl(cjson)
            if not lines:
                r["status"] = "failed: no result (linkem exit %d): %s" % (rc, last_line(log))
            else:
                m = lines[-1]
                r.update(rtt_mean_ms=m["mean_ms"], rtt_p99_ms=m["p99_ms"], messages=m["messages"],
                         unanswered=m["unanswered"], rtt_mean_x=m["mean_ms"] / rtt, rtt_p99_x=m["p99_ms"] / rtt)
        else:
            # One server per distinct scheme (its own port and JSON), one
            # client per flow, all started together.
            servers, clients, sfiles, cfiles = [], [], {}, []
            ports = {}
            for s in schemes:
                if s not in ports:
                    ports[s] = PORT + len(ports)
                    sfiles[s] = os.path.join(d, "server-%s.jsonl" % s)
            for i, s in enumerate(schemes):
                cj = os.path.join(d, "client-%d.jsonl" % i)
                cfiles.append((s, cj))
                trace = None
                if workload == "bulk":
                    os.makedirs(os.path.join(self.out, "traces"), exist_ok=True)
                    trace = os.path.abspath(os.path.join(self.out, "traces", "%s-%s.jsonl" % (
                        scheme, link_label(rate, rtt, loss, queue).replace(" ", "-").replace("%", "pct"))))
                    if os.path.exists(trace):
                        os.remove(trace)
                srv, cli = self.bulk_cmds(s, ports[s], sfiles[s], cj, seconds, warmup, drain, trace)
                if srv not in servers:
                    servers.append(srv)
                clients.append(cli)
            far = " & ".join(servers) + " & wait"
            near = "sleep 0.5; " + " & ".join(clients) + " & wait"
            rc, log = self.linkem(rate, rtt, loss, queue, near, far, int(seconds + drain + 40), ljson)
            per_flow, shares_by = [], {}
            for s in ports:
                got = [x.get("window_mbit_s", 0.0) for x in read_jsonl(sfiles[s])]
                n = schemes.count(s)
                got = (got + [0.0] * n)[:n]  # a flow that never delivered a byte wrote no line
                per_flow += got
                shares_by[s] = sum(got)
            retx = [c.get("retx_overhead") for s, cj in cfiles for c in read_jsonl(cj)]
            retx = [x for x in retx if x is not None and x >= 0]
            total = sum(per_flow)
            if total <= 0 and not retx:
                r["status"] = "failed: nothing delivered (linkem exit %d): %s" % (rc, last_line(log))
            r.update(goodput_mbit=total, utilisation=total / rate, per_flow_mbit=per_flow,
                     retx_overhead=(sum(retx) / len(retx)) if retx else None)
            if len(schemes) > 1 and workload != "vs-tcp":
                r["jain"] = jain(per_flow)
            if workload == "vs-tcp" and total > 0:
                r["shares"] = " ".join("%s:%.2f" % (s, v / total) for s, v in shares_by.items())
        lk = read_json(ljson)
        if lk:
            up = lk.get("up", {})
            dl = up.get("delay_ms", {})
            r.update(owd_mean_ms=dl.get("mean"), owd_p50_ms=dl.get("p50"), owd_p95_ms=dl.get("p95"),
                     owd_p99_ms=dl.get("p99"), queue_drops=up.get("queue_drops"),
                     lost_random=up.get("lost_random"))
            if dl.get("p95") is not None and dl.get("count"):
                r["qdelay_p95_ms"] = max(0.0, dl["p95"] - r["base_owd_ms"])
        elif r["status"] == "ok":
            r["status"] = "failed: no linkem report (exit %d): %s" % (rc, last_line(log))
        r["linkem_exit"] = rc
        r["wall_s"] = round(time.time() - t0, 1)
        for k, v in list(r.items()):
            if isinstance(v, float):
                r[k] = round(v, 4)
            if isinstance(v, list):
                r[k] = [round(x, 4) for x in v]
        return r


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def last_line(log):
    lines = [l for l in log.strip().splitlines() if l.strip() and not l.startswith("linkem: ")]
    return lines[-1][:200] if lines else ""


# ------------------------------------------------------------------ output --
def write_outputs(out, rows):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([csv_value(r.get(c)) for c in COLUMNS])
    table = format_table(rows)
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(table)
    return table


def gnuplot(script, name):
    """Runs one gnuplot script; False (and a line on stderr) if it failed."""
    p = subprocess.run(["gnuplot"], input=script.encode(), capture_output=True)
    if p.returncode != 0:
        print("ccbench: gnuplot failed for %s: %s" % (name, p.stderr.decode()[-200:]), file=sys.stderr)
    return p.returncode == 0


def chart(out, rows):
    """One Pantheon-style chart per link and throughput workload."""
    if not shutil.which("gnuplot"):
        print("ccbench: no gnuplot: no charts", file=sys.stderr)
        return []
    groups = {}
    for r in rows:
        if r["status"] != "ok" or r["workload"] == "small" or r.get("owd_p95_ms") is None:
            continue
        key = (r["workload"], r["rate_mbit"], r["rtt_ms"], r["loss_pct"], r["queue_bdp"])
        groups.setdefault(key, []).append(r)
    made = []
    for (wl, rate, rtt, loss, queue), rs in sorted(groups.items()):
        name = "%s-%gmbit-%gms-%gpct-%gbdp.svg" % (wl, rate, rtt, loss, queue)
        data = os.path.join(out, name[:-4] + ".dat")
        with open(data, "w") as f:
            for r in rs:
                f.write('%f %f "%s"\n' % (max(r["owd_p95_ms"], 0.01), r["goodput_mbit"], r["scheme"]))
        script = """
set terminal svg size 800,560 dynamic enhanced font 'sans,11' background '#ffffff'
set output '%s'
set title '%s: %g Mbit/s, RTT %g ms, %g%% loss, queue %g BDP'
set xlabel '95th percentile one-way delay (ms, log scale, better to the right)'
set ylabel 'goodput (Mbit/s)'
set logscale x
set xrange [*:*] reverse
set yrange [0:%g]
set grid
unset key
plot '%s' using 1:2 with points pt 7 ps 1.2, '' using 1:2:3 with labels offset 1,0.8 left
""" % (os.path.join(out, name), wl, rate, rtt, loss, queue, rate * 1.1, data)
        if gnuplot(script, name):
            made.append(name)
    return made


def trace_charts(out, rows):
    """cwnd over time per link: one line per scheme, from the bulk runs'
    --trace files (rudp: its Stats; TCP: TCP_INFO's snd_cwnd x mss)."""
    if not shutil.which("gnuplot"):
        return []
    links = {}
    for r in rows:
        if r["status"] != "ok" or r["workload"] != "bulk":
            continue
        label = link_label(r["rate_mbit"], r["rtt_ms"], r["loss_pct"], r["queue_bdp"])
        path = os.path.join(out, "traces", "%s-%s.jsonl" % (r["scheme"], label.replace(" ", "-").replace("%", "pct")))
        if os.path.exists(path):
            links.setdefault((r["rate_mbit"], r["rtt_ms"], r["loss_pct"], r["queue_bdp"]), []).append((r["scheme"], path))
    made = []
    for (rate, rtt, loss, queue), traces in sorted(links.items()):
        plots = []
        for scheme, path in traces:
            dat = path[:-6] + ".dat"
            with open(dat, "w") as f:
                for x in read_jsonl(path):
                    f.write("%f %f\n" % (x["t"], x["cwnd"] / 1000.0))
            plots.append("'%s' using 1:2 with lines lw 1.5 title '%s'" % (dat, scheme))
        name = "cwnd-%gmbit-%gms-%gpct-%gbdp.svg" % (rate, rtt, loss, queue)
        bdp_kb = bdp_bytes(rate, rtt) / 1000.0
        script = """
set terminal svg size 900,520 dynamic enhanced font 'sans,11' background '#ffffff'
set output '%s'
set title 'congestion window: %g Mbit/s, RTT %g ms, %g%% loss, queue %g BDP (BDP %.0f KB)'
set xlabel 'seconds'
set ylabel 'cwnd (KB)'
set grid
set key outside right
plot %s, %f with lines dt 2 lc rgb '#888888' title 'BDP', %f with lines dt 3 lc rgb '#888888' title 'BDP + queue'
""" % (os.path.join(out, name), rate, rtt, loss, queue, bdp_kb, ", ".join(plots), bdp_kb,
       bdp_kb + queue_bytes(rate, rtt, queue) / 1000.0)
        if gnuplot(script, name):
            made.append(name)
    return made


def floats(s):
    return [float(x) for x in s.split(",") if x]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Pantheon-style congestion-control bench over perf/linkem "
                                 "(usage at the top of perf/ccbench.py)")
    ap.add_argument("--quick", action="store_true", help="one link, four schemes, 5 s, bulk only")
    ap.add_argument("--schemes", help="comma list (default: %s)" % ",".join(DEFAULT_SCHEMES))
    ap.add_argument("--workloads", help="comma list of %s (default bulk,small,fair2,fair4,vs-tcp)" % WORKLOADS)
    ap.add_argument("--rates", help="Mbit/s (default 20,100)")
    ap.add_argument("--rtts", help="ms (default 10,50,200)")
    ap.add_argument("--losses", help="%% on the data direction (default 0,1,5)")
    ap.add_argument("--queues", help="queue in BDPs (default 1,4)")
    ap.add_argument("--seconds", type=float, help="per run (default 30; 5 with --quick)")
    ap.add_argument("--drain", type=float, default=10, help="max wait for a sender's answer after it stops")
    ap.add_argument("--small-conns", type=int, default=4, help="connections of the small workload")
    ap.add_argument("--vs-scheme", default="rudp-cubic", help="the rudp flow of vs-tcp")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="output folder (default docs/perf/cc; /tmp/ccbench-quick with --quick)")
    ap.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    q = a.quick
    schemes = a.schemes.split(",") if a.schemes else (["rudp-cubic", "rudp-bbr", "tcp-cubic", "tcp-bbr"] if q else DEFAULT_SCHEMES)
    workloads = a.workloads.split(",") if a.workloads else (["bulk"] if q else WORKLOADS)
    for w in workloads:
        if w not in WORKLOADS:
            ap.error("unknown workload '%s' (have %s)" % (w, ",".join(WORKLOADS)))
    for s in schemes:
        try:
            parse_scheme(s)
        except ValueError as e:
            ap.error(str(e))
    rates = floats(a.rates) if a.rates else ([20] if q else [20, 100])
    rtts = floats(a.rtts) if a.rtts else ([50] if q else [10, 50, 200])
    losses = floats(a.losses) if a.losses else ([1] if q else [0, 1, 5])
    queues = floats(a.queues) if a.queues else ([1] if q else [1, 4])
    if a.seconds is None:
        a.seconds = 5 if q else 30
    if q and a.drain == 10:
        a.drain = 5
    out = a.out or ("/tmp/ccbench-quick" if q else "docs/perf/cc")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    runs = []
    for rate in rates:
        for rtt in rtts:
            for loss in losses:
                for queue in queues:
                    for w in workloads:
                        # vs-tcp is one run per link, whatever the schemes.
                        for s in ([a.vs_scheme + "+tcp-cubic"] if w == "vs-tcp" else schemes):
                            runs.append((w, s, rate, rtt, loss, queue))
    if a.dry_run:
        for i, r in enumerate(runs, 1):
            print("[%d/%d] %s %s %s" % (i, len(runs), r[0], r[1], link_label(*r[2:])))
        return 0
    if os.geteuid() != 0:
        print("ccbench: needs root (linkem creates network namespaces)", file=sys.stderr)
        return 1
    bench = Bench(a, root)
    bench.out = out
    print("ccbench: %d runs, %g s each, out %s; rudp controllers built in: %s" % (
        len(runs), a.seconds, out, ",".join(bench.rudp_ccs())), file=sys.stderr)
    rows = []
    try:
        for i, (w, s, rate, rtt, loss, queue) in enumerate(runs, 1):
            r = bench.run(w, s, rate, rtt, loss, queue)
            rows.append(r)
            print(progress_line(i, len(runs), r), file=sys.stderr, flush=True)
            write_outputs(out, rows)  # partial results survive an interrupted grid
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    table = write_outputs(out, rows)
    charts = chart(out, rows) + trace_charts(out, rows)
    print(table, end="")
    print("ccbench: wrote %s/results.jsonl, results.csv, summary.txt%s" % (
        out, (", " + ", ".join(charts)) if charts else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
