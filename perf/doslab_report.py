#!/usr/bin/env python3
"""The DoS lab's table (scripts/doslab.sh writes one directory per row;
this reads them and prints Markdown, ready for docs/ROBUSTNESS.md).

Per row: meta (key=value: scenario, cookies, defenses, RSS, CPU, false
drops), probe.json (perf/dosprobe), flood.json (perf/flood), hbc.json
(servers/heartbeat_client), and /proc/net/netstat + snmp of the server
and attacker namespaces before and after. Stdlib only.

  python3 perf/doslab_report.py DIR [--out FILE] [--link-rate R] [--phases B,D,A]
"""
import argparse
import glob
import json
import os
import re
import sys

TCPEXT = ["ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesRecv",
          "SyncookiesFailed", "TCPReqQFullDrop"]
SHORT = {"ListenOverflows": "ListenOvf", "ListenDrops": "ListenDrop",
         "SyncookiesSent": "CookSent", "SyncookiesRecv": "CookRecv",
         "SyncookiesFailed": "CookFail", "TCPReqQFullDrop": "ReqQFull"}


def counters(path):
    """{ 'TcpExt': {name: value}, 'Udp': {...}, ... } from netstat + snmp text."""
    out = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return out
    for names, values in zip(lines, lines[1:]):
        n, v = names.split(), values.split()
        if not n or n[0] != v[0] or not n[0].endswith(":") or n[1:] == v[1:]:
            continue
        try:
            out[n[0][:-1]] = dict(zip(n[1:], (int(x) for x in v[1:])))
        except ValueError:
            continue
    return out


def delta(before, after, group, name):
    return after.get(group, {}).get(name, 0) - before.get(group, {}).get(name, 0)


def load_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def meta(path):
    m = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        m[k] = v
    return m


def fmt_ms(v):
    return "-" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def row(d):
    m = meta(os.path.join(d, "meta"))
    probe = load_json(os.path.join(d, "probe.json")) or {"windows": []}
    flood = load_json(os.path.join(d, "flood.json")) or {}
    hbc = load_json(os.path.join(d, "hbc.json")) or {}
    sb, sa = counters(os.path.join(d, "srv_before")), counters(os.path.join(d, "srv_after"))
    ab, aa = counters(os.path.join(d, "atk_before")), counters(os.path.join(d, "atk_after"))
    w = {x["name"]: x for x in probe["windows"]}
    during = w.get("during", {})
    ok = "/".join(f"{w[n]['success_pct']:.0f}" if n in w and w[n]["attempts"] else "-"
                  for n in ("before", "during", "after"))
    udp_proto = m.get("probe") != "tcp"
    r = {
        "scenario": m["scenario"], "cookies": m["cookies"], "defenses": m["defenses"],
        "attack": f"{flood.get('rate', 0) / 1000:.1f}k/s" if flood else "failed",
        "ok": ok,
        # Connected is not served: a server at max_connections accepts and
        # closes at once. Echo success is the good client's real outcome.
        "served": "/".join(
            "{:.0f}".format(100 * w[n]["echo_ok"] / w[n]["attempts"]) if n in w and w[n]["attempts"]
            and m.get("probe") != "rudp" else "-" for n in ("before", "during", "after")),
        "p50": fmt_ms(during.get("connect_p50_ms")) if during.get("ok") else "-",
        "p99": fmt_ms(during.get("connect_p99_ms")) if during.get("ok") else "-",
        # Baseline (before) and under attack: the targets compare the two.
        "echo99": "-" if m.get("probe") == "rudp" or not during.get("echo_ok")
        else "{} → {}".format(fmt_ms(w.get("before", {}).get("echo_p99_ms")),
                              fmt_ms(during.get("echo_p99_ms"))),
        "hbdrops": m.get("hb_false_drops", "?"),
        "cpu": m.get("cpu_pct", "?"),
        "rss": "→".join("{:.1f}".format(int(m.get(k, 0) or 0) / 1024)
                        for k in ("rss_before", "rss_mid", "rss_during")),
    }
    for k in TCPEXT:
        r[k] = delta(sb, sa, "TcpExt", k)
    notes = []
    # SYN-ACKs (and RSTs) to spoofed sources must vanish at the attacker,
    # never be answered with a RST that would free the server's state.
    if flood.get("spoofed"):
        notes.append("atk dropped {} / sent {} RST".format(
            delta(ab, aa, "Ip", "InAddrErrors"), delta(ab, aa, "Tcp", "OutRsts")))
    if flood.get("mode") in ("connect", "slowloris"):
        notes.append("est {} refused {} reset {} closed {} timeout {} max open {}".format(
            flood.get("established"), flood.get("refused"), flood.get("reset"),
            flood.get("closed_by_server"), flood.get("timeouts"), flood.get("max_open")))
    if udp_proto:
        notes.append("srv UDP in {} out {} rcvbuf-err {}".format(
            delta(sb, sa, "Udp", "InDatagrams"), delta(sb, sa, "Udp", "OutDatagrams"),
            delta(sb, sa, "Udp", "RcvbufErrors")))
    # What the servers said at exit (scripts/doslab.sh keeps their stderr):
    # the per-source limiter's counts and rudp's handshake figures.
    for name in ("echo.err", "hb.err"):
        log = read_text(os.path.join(d, name))
        lim = re.search(r"per-source limits: admitted=(\d+) over_cap=(\d+) over_rate=(\d+) "
                        r"overflow=(\d+) sources=(\d+)", log)
        if lim and int(lim[2]) + int(lim[3]) + int(lim[4]) > 0:
            notes.append("{}: limiter over_cap {} over_rate {} overflow {}".format(
                name.split(".")[0], lim[2], lim[3], lim[4]))
        udp = re.search(r"(\d+) datagrams echoed, (\d+) dropped by the per-source limit", log)
        if udp and name == "echo.err":
            notes.append(f"echoed {udp[1]} limited {udp[2]}")
        hb = re.search(r"per-source limit: (\d+) datagrams dropped", log)
        if hb:
            notes.append(f"hb limited {hb[1]}")
        ep = re.search(r"rudp endpoint :\d+: datagrams=(\d+) .*initials=(\d+) retries_sent=(\d+) "
                       r"bad_cookies=(\d+) limited=(\d+) accepted=(\d+)", log)
        if ep and name == "echo.err":
            notes.append("rudp initials {} retries {} limited {} accepted {}".format(
                ep[2], ep[3], ep[5], ep[6]))
    if flood.get("errors"):
        notes.append(f"flood errors {flood['errors']} ({flood.get('first_error')})")
    if hbc:
        notes.append("hb lost {}/{}".format(hbc.get("lost"), hbc.get("pings_sent")))
    r["notes"] = "; ".join(notes)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--out")
    ap.add_argument("--link-rate", default="?")
    ap.add_argument("--phases", default="?")
    a = ap.parse_args()
    dirs = sorted(glob.glob(os.path.join(a.dir, "row-*")), key=lambda p: int(p.rsplit("-", 1)[1]))
    rows = [row(d) for d in dirs]
    cols = [("scenario", "scenario"), ("cookies", "syncookies"), ("defenses", "defenses"),
            ("attack", "attack rate"), ("ok", "good connect ok % before/during/after"),
            ("served", "good echoed % before/during/after"),
            ("p50", "connect p50 ms"), ("p99", "connect p99 ms"), ("echo99", "echo p99 ms before → during"),
            ("hbdrops", "hb false drops")] + [(k, SHORT[k]) for k in TCPEXT] + [
            ("cpu", "srv CPU %"), ("rss", "srv RSS MiB"), ("notes", "notes")]
    out = [f"DoS lab: phases (s) before,during,after = {a.phases}; link to the server {a.link_rate} "
           "(tbf); good client 50 attempts/s, 3 s deadline; latencies and CPU during the attack; "
           "TcpExt counters are server-namespace deltas over the whole row; server RSS before → 1 s into the attack → its end.",
           "",
           "| " + " | ".join(h for _, h in cols) + " |",
           "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(r[k]) for k, _ in cols) + " |")
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
