# Shared shell helpers for scripts/*.sh (sourced, not run).

# start_server OUTFILE CMD... : starts a server in the background, waits for
# its "listening on HOST:PORT" line, and sets SERVER_PID and SERVER_PORT.
start_server() {
  local out=$1; shift
  # Empty the files first: the background job opens (truncates) them only
  # after it forked, so polling could still read the last server's line.
  : >"$out"; : >"$out.err"
  "$@" >"$out" 2>"$out.err" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if grep -q '^listening on' "$out" 2>/dev/null; then
      SERVER_PORT=$(sed -nE 's/^listening on [^ ]*:([0-9]+) .*/\1/p' "$out" | head -1)
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "server did not start: $*" >&2
  cat "$out.err" >&2
  return 1
}

# stop_server: SIGTERM, wait (bounded), and report the exit code.
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  local rc=0
  for _ in $(seq 1 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID"; rc=137
  fi
  wait "$SERVER_PID" 2>/dev/null || rc=$?
  return $rc
}

# json_field JSON KEY: a number or string field of a flat one-line JSON.
json_field() {
  sed -nE "s/.*\"$2\": *\"?([^,\"}]*)\"?.*/\1/p" <<<"$1"
}

# netns_teardown NS...: kills what still runs in each namespace (a lab's
# own processes: nothing else enters the namespaces it made) and deletes
# it. Quiet when a namespace is already gone.
netns_teardown() {
  local ns p
  for ns in "$@"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
