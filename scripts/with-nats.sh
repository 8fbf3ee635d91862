#!/usr/bin/env bash
# with-nats.sh COMMAND...: run COMMAND with NATS_URL naming a NATS server with
# JetStream that the tests may create streams on, the first of:
#
#   1. CAIRN_PRIVATE_NATS=1: a private throwaway server (4. below), whatever
#      NATS_URL says and whatever answers on 127.0.0.1:4222.
#   2. NATS_URL is set: use it as it is.
#   3. A server answers on 127.0.0.1:4222: use it.
#   4. Otherwise start a private, throwaway nats-server (Debian package
#      nats-server): JetStream on, its store in a fresh directory under /tmp, a
#      free local port. It is stopped and deleted when COMMAND ends, however it
#      ends.
set -euo pipefail

private="${CAIRN_PRIVATE_NATS:-}"
case "$private" in
  ""|0) private="" ;;
  1) ;;
  *) echo "with-nats: CAIRN_PRIVATE_NATS=$private: want 1 (a private throwaway server) or 0/unset" >&2; exit 2 ;;
esac

if [ -z "$private" ] && [ -n "${NATS_URL:-}" ]; then
  exec "$@"
fi

answers() { # host port
  timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

if [ -z "$private" ] && answers 127.0.0.1 4222; then
  export NATS_URL="nats://127.0.0.1:4222"
  exec "$@"
fi

say() { echo "with-nats: $*" >&2; }

if ! command -v nats-server >/dev/null 2>&1; then
  if [ -n "$private" ]; then
    say "CAIRN_PRIVATE_NATS=1 asks for a private server, but nats-server is not installed."
  else
    say "no NATS server answers on 127.0.0.1:4222 and nats-server is not installed."
  fi
  say "Install Debian's nats-server package (apt-get install nats-server), start a server"
  say "with JetStream (nats-server -js), or set NATS_URL (and unset CAIRN_PRIVATE_NATS)."
  exit 1
fi

dir=$(mktemp -d /tmp/cairn-nats.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 54222)

pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

say "starting a private nats-server ($(command -v nats-server)) on 127.0.0.1:$port in $dir"
nats-server -a 127.0.0.1 -p "$port" -js -sd "$dir/store" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  answers 127.0.0.1 "$port" && break
  if ! kill -0 "$pid" 2>/dev/null; then
    say "nats-server exited at start:"
    cat "$dir/log" >&2
    exit 1
  fi
  sleep 0.1
done
if ! answers 127.0.0.1 "$port"; then
  say "nats-server did not answer on 127.0.0.1:$port within 10s:"
  cat "$dir/log" >&2
  exit 1
fi

export NATS_URL="nats://127.0.0.1:$port"
set +e
"$@"
status=$?
set -e
exit $status
