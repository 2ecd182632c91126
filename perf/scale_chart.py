#!/usr/bin/env python3
"""Draws OUT/scale.svg from OUT/scale-IO.json (scripts/scale.sh): server
user-space and kernel slab bytes per connection, and heartbeat RTT p99,
against connections held, one line per IO back end. Needs gnuplot.

  perf/scale_chart.py OUT epoll,uring
"""
import json, os, subprocess, sys
out, ios = sys.argv[1], sys.argv[2].split(",")
plots = []
for io in ios:
    path = os.path.join(out, f"scale-{io}.json")
    if not os.path.exists(path):
        continue
    d = json.load(open(path))
    dat = os.path.join(out, f"scale-{io}.dat")
    with open(dat, "w") as f:
        for s in d["steps"]:
            f.write(f'{s["open"]} {s["server_bytes_per_conn"]} {s["slab_bytes_per_conn"]} {s["rtt_p99_ms"]}\n')
    plots.append((io, dat))
if not plots:
    sys.exit(0)
svg = os.path.join(out, "scale.svg")
mem = ", ".join(f"'{dat}' using 1:2 with linespoints title '{io}: server user space', "
                f"'{dat}' using 1:3 with linespoints dashtype 2 title '{io}: kernel slab (both ends)'"
                for io, dat in plots)
rtt = ", ".join(f"'{dat}' using 1:4 with linespoints title '{io}'" for io, dat in plots)
script = f"""
set terminal svg size 1100,620 dynamic enhanced font 'sans,11' background '#ffffff'
set output '{svg}'
set multiplot layout 1,2
set xlabel 'connections held'
set key below font ',9' maxrows 4
set format x '%.0s%c'
set grid
set logscale y
set ylabel 'bytes per connection (log)'
plot {mem}
set ylabel 'heartbeat RTT p99, ms (log)'
plot {rtt}
unset multiplot
"""
subprocess.run(["gnuplot"], input=script.encode(), check=True)
print(f"chart: {svg}", file=sys.stderr)
