#!/usr/bin/env python3
"""Server CPU per message, rudp against plain UDP (and TCP) echo on the
same back end: docs/RUDP.md, "CPU". For each back end and protocol, a fresh
echo_server (pinned to CPU 0) is driven by loadgen (pinned to CPU 1) with N
connections of S-byte ping-pong; the server's utime+stime is read from
/proc at loadgen's "phase measure" and "phase done" lines, so set-up and
teardown are not counted. Rounds interleave the protocols (the machine is
shared and noisy: ratios within a round are what to compare).

  perf/rudp_cpu.py [--io epoll,uring] [--rounds 3] [--conns 64] [--size 64]
"""
import argparse, json, os, socket, subprocess, sys, time

BIN = "bazel-bin"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def free_port(udp):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_one(io, proto, args):
    port = free_port(proto != "tcp")
    srv = subprocess.Popen(["taskset", "-c", "0", f"{BIN}/servers/echo_server", "--io", io,
                            "--proto", proto, "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.4)
    lg = subprocess.Popen(["taskset", "-c", "1", f"{BIN}/perf/loadgen", "--proto", proto,
                           "--port", str(port), "--conns", str(args.conns), "--size",
                           str(args.size), "--pipeline", "1", "--duration-s", str(args.seconds),
                           "--warmup-s", "1", "--io", io] if proto == "rudp" else
                          ["taskset", "-c", "1", f"{BIN}/perf/loadgen", "--proto", proto,
                           "--port", str(port), "--conns", str(args.conns), "--size",
                           str(args.size), "--pipeline", "1", "--duration-s", str(args.seconds),
                           "--warmup-s", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = t1 = None
    for line in lg.stderr:
        if "phase measure" in line:
            t0 = cpu_ticks(srv.pid)
        elif "phase done" in line:
            t1 = cpu_ticks(srv.pid)
    out = lg.stdout.read()
    lg.wait()
    srv.terminate()
    srv.wait()
    rec = json.loads(out.strip().splitlines()[-1])
    cpu_s = (t1 - t0) / TICK if t0 is not None and t1 is not None else float("nan")
    msgs = rec["msgs"]
    return {"io": io, "proto": proto, "msgs": msgs, "msgs_per_s": rec["msgs_per_s"],
            "p50_us": rec["p50_us"], "p99_us": rec["p99_us"], "errors": rec["errors"],
            "server_cpu_s": cpu_s, "server_us_per_msg": cpu_s * 1e6 / msgs if msgs else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="epoll,uring")
    ap.add_argument("--protos", default="udp,rudp,tcp")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--out", default="docs/perf/rudp/cpu.jsonl")
    args = ap.parse_args()
    results = []
    with open(args.out, "w") as f:
        for r in range(args.rounds):
            for io in args.io.split(","):
                for proto in args.protos.split(","):
                    rec = run_one(io, proto, args)
                    rec["round"] = r
                    results.append(rec)
                    f.write(json.dumps(rec) + "\n")
                    f.flush()
                    print(f"round {r} {io:6} {proto:5} {rec['msgs_per_s']:>9.0f} msg/s "
                          f"server {rec['server_us_per_msg']:.2f} us/msg", flush=True)
    print("\nserver CPU per message, median over rounds, and rudp / udp:")
    for io in args.io.split(","):
        med = {}
        for proto in args.protos.split(","):
            v = sorted(x["server_us_per_msg"] for x in results if x["io"] == io and x["proto"] == proto)
            med[proto] = v[len(v) // 2]
        line = "  ".join(f"{p} {med[p]:.2f} us" for p in med)
        ratio = med["rudp"] / med["udp"] if "rudp" in med and "udp" in med else float("nan")
        ratios = sorted(a["server_us_per_msg"] / b["server_us_per_msg"]
                        for a in results for b in results
                        if a["io"] == io and b["io"] == io and a["round"] == b["round"]
                        and a["proto"] == "rudp" and b["proto"] == "udp")
        print(f"{io:6} {line}  rudp/udp {ratio:.2f} (per round: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
