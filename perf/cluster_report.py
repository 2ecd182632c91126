#!/usr/bin/env python3
"""Summarises one scripts/cluster.sh run (a directory of its logs).

Inputs, every line prefixed by the wall clock (epoch seconds) by the script:
  h1.log h2.log h3.log   heartbeat_server stderr: "join ADDR proto=tcp ..."
                         and "drop ADDR ... reason=..." lines
  haproxy.log            "Server hosts/h2 is DOWN" / "is UP"
  clients.log late.log   heartbeat_client stderr: "connection to X lost",
                         "reconnected to X after N attempts"
  clients.json late.json heartbeat_client's final report
  meta                   t0=, kill=, back=, late= (epoch seconds)

Checks the issue's targets: every cut client is back on a survivor within
2 s of the balancer noticing, nothing is lost on the connections that were
not cut, the clients were spread over the three hosts, the hosts logged the
real client address (PROXY v2), and h2 takes new connections once back.
Exit status 1 when a target is missed.
"""
import argparse
import json
import os
import re
import sys

CLIENT_NET = "10.78.10."


def lines(path):
    if not os.path.exists(path):
        return []
    out = []
    with open(path, errors="replace") as f:
        for raw in f:
            stamp, _, rest = raw.rstrip("\n").partition(" ")
            try:
                out.append((float(stamp), rest))
            except ValueError:
                continue
    return out


def report(path):
    try:
        with open(path) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--late", type=int, required=True)
    ap.add_argument("--out")
    a = ap.parse_args()
    d = a.dir
    meta = {}
    with open(os.path.join(d, "meta")) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            meta[k] = float(v)
    t0, kill, back, late = meta["t0"], meta["kill"], meta["back"], meta["late"]

    join_re = re.compile(r"\bjoin (\S+):(\d+) proto=tcp")
    hosts = {}
    for h in (1, 2, 3):
        j = {"first": 0, "after_kill": 0, "late": 0, "lb_addr": 0, "addrs": set()}
        for t, text in lines(os.path.join(d, "h%d.log" % h)):
            m = join_re.search(text)
            if not m:
                continue
            addr = m.group(1)
            if not addr.startswith(CLIENT_NET):
                j["lb_addr"] += 1  # the balancer's own address: a health check
                continue
            j["addrs"].add(addr)
            if t < kill:
                j["first"] += 1
            elif t < late:
                j["after_kill"] += 1
            else:
                j["late"] += 1
        hosts[h] = j

    down = up = None
    for t, text in lines(os.path.join(d, "haproxy.log")):
        if "h2 is DOWN" in text and down is None and t >= kill:
            down = t
        if "h2 is UP" in text and up is None and t >= back:
            up = t

    lost_at, back_at = [], []
    for t, text in lines(os.path.join(d, "clients.log")):
        if " lost (" in text and t >= kill:
            lost_at.append(t)
        elif "reconnected to" in text and t >= kill:
            back_at.append(t)
    main_r = report(os.path.join(d, "clients.json"))
    late_r = report(os.path.join(d, "late.json"))

    cut = len(lost_at)
    rel = lambda t: "%.2f s" % (t - t0) if t is not None else "-"
    last_back = max(back_at) if back_at else None
    within = None
    if last_back is not None and down is not None:
        within = last_back - down

    ok = True
    out = []
    out.append("| host | clients at start | joins after the kill | joins of the late batch | balancer's own connections (health checks, PROXY LOCAL) |")
    out.append("|---|---|---|---|---|")
    for h in (1, 2, 3):
        j = hosts[h]
        out.append("| h%d | %d | %d | %d | %d |" % (h, j["first"], j["after_kill"], j["late"], j["lb_addr"]))
    out.append("")
    out.append("| event | time |")
    out.append("|---|---|")
    out.append("| h2 killed | %s |" % rel(kill))
    out.append("| HAProxy marks h2 DOWN | %s |" % rel(down))
    out.append("| first cut client notices | %s |" % rel(min(lost_at) if lost_at else None))
    out.append("| last cut client back on a survivor | %s |" % rel(last_back))
    out.append("| h2 restarted | %s |" % rel(back))
    out.append("| HAProxy marks h2 UP | %s |" % rel(up))
    out.append("")
    sent = main_r.get("pings_sent", 0)
    lost = main_r.get("lost", -1)
    out.append("clients: %d sessions, %d cut and %d reconnected (report: %s reconnects); "
               "pings sent %s, pongs %s, lost %s, in flight at the end %s" %
               (a.clients, cut, len(back_at), main_r.get("reconnects", "?"), sent,
                main_r.get("pongs_received", "?"), lost, main_r.get("in_flight", "?")))
    out.append("late batch: %d sessions, pings sent %s, lost %s" %
               (a.late, late_r.get("pings_sent", "?"), late_r.get("lost", "?")))
    out.append("")

    def check(name, cond, detail):
        nonlocal ok
        ok = ok and cond
        out.append("- %s %s: %s" % ("PASS" if cond else "FAIL", name, detail))

    spread = [hosts[h]["first"] for h in (1, 2, 3)]
    check("spread", min(spread) > 0 and sum(spread) == a.clients,
          "%s of %d clients on h1/h2/h3" % ("/".join(map(str, spread)), a.clients))
    check("real client addresses", all(hosts[h]["addrs"] for h in (1, 2, 3)) and
          all(x.startswith(CLIENT_NET) for h in (1, 2, 3) for x in hosts[h]["addrs"]),
          "every host logged clients as %s* (PROXY v2), not the balancer's address" % CLIENT_NET)
    check("every cut client back", cut == hosts[2]["first"] and len(back_at) >= cut,
          "%d sessions were on h2, %d saw the cut, %d reconnected" %
          (hosts[2]["first"], cut, len(back_at)))
    if within is None:
        check("back within 2 s of the balancer noticing", False, "no DOWN line or no reconnect")
    else:
        check("back within 2 s of the balancer noticing", within <= 2.0,
              "last reconnect %+.2f s from the DOWN mark (%.2f s after the kill)" %
              (within, last_back - kill))
    # A cut session can lose only what it had in flight when the host died
    # (one PING at most: the RTT is far below the 100 ms interval).
    check("nothing lost on uncut connections", 0 <= lost <= cut,
          "%d pings lost, %d sessions cut" % (lost, cut))
    check("h2 takes new connections again", hosts[2]["late"] > 0 and late_r.get("lost", 1) == 0,
          "%d of the %d late sessions joined h2" % (hosts[2]["late"], a.late))
    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
