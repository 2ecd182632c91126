#!/usr/bin/env python3
"""Helpers of the lab topic "congestion" (scripts/lab/congestion.sh), never
run on their own:

  ccscan.py dupacks CAPTURE OUT   tcpdump text (-nn -S, sender side) ->
      OUT: an annotated excerpt of the first retransmission that duplicate
      ACKs preceded; stdout: "retx=N dupack_retx=M best_dups=K"
  ccscan.py ss SAMPLES OUT        "T <epoch>" lines each followed by
      `ss -tin` output -> OUT: "t cwnd_pkts cwnd_kb rtt_ms retrans_total"
      per sample; stdout: "samples=N drops_after_loss=M cc=NAME"
  ccscan.py trace JSONL OUT       rudp_bulk --trace lines -> OUT: "t cwnd_kb
      lost"; stdout: "samples=N drops_after_loss=M"
  ccscan.py spark DAT             a sparkline of column 3 (cwnd KB) over time

A duplicate ACK: a pure ACK (length 0) from the receiver whose ack number
equals the previous ACK's; with SACK it carries the block that arrived
beyond the hole. A retransmission: a data segment whose start sequence was
sent before. A cwnd drop "after a loss": cwnd lower than the sample before
while the retransmission (TCP) or loss (rudp) counter grew in that sample or
the one before (recovery can span a 100 ms sample boundary).
"""
import json
import re
import sys

DATA = re.compile(r"^\s*(\S+) IP (\S+) > (\S+): Flags \[[^\]]*\], seq (\d+):(\d+), .*length (\d+)")
ACK = re.compile(r"^\s*(\S+) IP (\S+) > (\S+): Flags \[\.\], ack (\d+), win (\d+)(, options \[([^\]]*)\])?, length 0")


def secs(ts):
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def trim(line):
    # The timestamp options are noise here; the SACK blocks are the point.
    line = re.sub(r"nop,nop,TS val \d+ ecr \d+,?", "", line)
    line = line.replace("options [nop,nop,", "options [").replace(", options []", "")
    return line.rstrip()


def dupacks(cap, out):
    sent = {}  # start seq -> the line that first sent it
    last_ack, dups, run = None, 0, []  # run: the ACK lines of the current ack number
    retx = dupack_retx = 0
    best = None  # (dups, excerpt lines)
    with open(cap, errors="replace") as f:
        for line in f:
            line = line.strip()
            m = ACK.match(line)
            if m and not DATA.match(line):
                ack = int(m.group(4))
                if ack == last_ack:
                    dups += 1
                    run.append(line)
                else:
                    last_ack, dups, run = ack, 0, [line]
                continue
            m = DATA.match(line)
            if not m or int(m.group(6)) == 0:
                continue
            seq = int(m.group(4))
            if seq in sent:
                retx += 1
                if dups >= 1 and seq == last_ack:
                    dupack_retx += 1
                    if best is None or (best[0] < 3 and dups > best[0]):
                        t0 = secs(run[1].split()[0])
                        ex = [trim(sent[seq]), "     ^ sent; the link drops it",
                              trim(run[0]), "     ^ ack %d: the receiver still expects that segment" % last_ack]
                        for i, l in enumerate(run[1:4], 1):
                            ex += [trim(l), "     ^ dup ACK %d for %d; SACK: what arrived beyond the hole" % (i, last_ack)]
                        if dups > 3:
                            ex.append("   ... %d more dup ACKs for %d" % (dups - 3, last_ack))
                        dt = (secs(line.split()[0]) - t0) * 1000
                        ex += [trim(line), "     ^ retransmission of %d, %.1f ms after the first of %d dup ACKs (%s)" % (
                            seq, dt, dups, "fast retransmit" if dups >= 3 else "SACK/RACK loss detection")]
                        best = (dups, ex)
            else:
                sent[seq] = line
    with open(out, "w") as f:
        if best:
            f.write("\n".join(best[1]) + "\n")
    print("retx=%d dupack_retx=%d best_dups=%d" % (retx, dupack_retx, best[0] if best else 0))


def drops(rows):
    """rows: (t, cwnd, loss_counter); drops of cwnd right after a loss."""
    n = 0
    for i in range(1, len(rows)):
        grew = rows[i][2] > rows[i - 1][2] or (i > 1 and rows[i - 1][2] > rows[i - 2][2])
        if rows[i][1] < rows[i - 1][1] and grew:
            n += 1
    return n


def ss(samples, out):
    rows, t0, t, cc = [], None, None, ""
    with open(samples, errors="replace") as f:
        for line in f:
            if line.startswith("T "):
                t = float(line.split()[1])
                t0 = t if t0 is None else t0
                continue
            m = re.search(r"\bcwnd:(\d+)", line)
            if not m or t is None:
                continue
            mss = re.search(r"\bmss:(\d+)", line)
            rtt = re.search(r"\brtt:([\d.]+)", line)
            rt = re.search(r"\bretrans:\d+/(\d+)", line)
            c = re.match(r"\s*(?:ts )?(?:sack )?(?:ecn )?(\w+) wscale", line)
            cc = c.group(1) if c else cc
            cw = int(m.group(1))
            rows.append((t - t0, cw, int(rt.group(1)) if rt else 0, cw * int(mss.group(1) if mss else 1448) / 1000.0,
                         float(rtt.group(1)) if rtt else 0.0))
            t = None  # one connection per sample
    with open(out, "w") as f:
        for r in rows:
            f.write("%.2f %d %.1f %.1f %d\n" % (r[0], r[1], r[3], r[4], r[2]))
    print("samples=%d drops_after_loss=%d cc=%s" % (len(rows), drops(rows), cc))


def trace(path, out):
    rows = []
    with open(path) as f:
        for line in f:
            try:
                x = json.loads(line)
            except ValueError:
                continue
            rows.append((x["t"], x["cwnd"], x.get("lost", 0)))
    with open(out, "w") as f:
        for r in rows:
            f.write("%.2f - %.1f - %d\n" % (r[0], r[1] / 1000.0, r[2]))
    print("samples=%d drops_after_loss=%d" % (len(rows), drops(rows)))


def spark(dat, width=60):
    vals = []
    with open(dat) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                vals.append(float(p[2]))
    if not vals:
        print("(no samples)")
        return
    # At most `width` characters: each one the mean of its slice of samples.
    k = max(1, -(-len(vals) // width))
    vals = [sum(vals[i:i + k]) / len(vals[i:i + k]) for i in range(0, len(vals), k)]
    bars = "▁▂▃▄▅▆▇█"
    top = max(vals) or 1.0
    print("".join(bars[min(7, int(v / top * 7.999))] for v in vals) + "  max %.0f KB" % top)


if __name__ == "__main__":
    cmd = sys.argv[1]
    {"dupacks": dupacks, "ss": ss, "trace": trace, "spark": spark}[cmd](*sys.argv[2:])
