#!/bin/sh
# The /metrics endpoint scraped by the real Prometheus server (Debian's
# `prometheus` package), see tests/prometheus_test.py.
set -e
exec python3 "$(dirname "$0")/prometheus_test.py" "$PWD/servers/echo_server"
