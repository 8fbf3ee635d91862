#!/usr/bin/env bash
# with-postgres.sh COMMAND...: run COMMAND with DATABASE_URL naming a
# PostgreSQL server the tests may create schemas on, the first of:
#
#   1. CAIRN_PRIVATE_POSTGRES=1: a private throwaway server (4. below),
#      whatever DATABASE_URL says and whatever answers on 127.0.0.1:5432. Use
#      it when the local server is full, wants other credentials, or must not
#      be touched.
#   2. DATABASE_URL is set: use it as it is.
#   3. A server answers on 127.0.0.1:5432: use it as user postgres.
#   4. Otherwise start a private, throwaway server: PostgreSQL's own binaries
#      (installing Debian's postgresql package first when they are missing and
#      we are root), a fresh data directory under /tmp, a free local port,
#      run as a non-root user when we are root. It is stopped and deleted
#      when COMMAND ends, however it ends.
set -euo pipefail

private="${CAIRN_PRIVATE_POSTGRES:-}"
case "$private" in
  ""|0) private="" ;;
  1) ;;
  *) echo "with-postgres: CAIRN_PRIVATE_POSTGRES=$private: want 1 (a private throwaway server) or 0/unset" >&2; exit 2 ;;
esac

if [ -z "$private" ] && [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi

answers() { # host port
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2" -t 3
  else
    timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
  fi
}

if [ -z "$private" ] && answers 127.0.0.1 5432; then
  export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
  exec "$@"
fi

say() { echo "with-postgres: $*" >&2; }

find_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
bindir=$(find_bindir)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    if [ -n "$private" ]; then
      say "CAIRN_PRIVATE_POSTGRES=1 asks for a private server, but PostgreSQL's binaries are not installed."
    else
      say "no PostgreSQL answers on 127.0.0.1:5432 and its binaries are not installed."
    fi
    say "Install Debian's postgresql package, start a server, or set DATABASE_URL (and unset CAIRN_PRIVATE_POSTGRES)."
    exit 1
  fi
  say "installing Debian's postgresql package (no cluster is created or started)"
  mkdir -p /etc/postgresql-common
  if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  bindir=$(find_bindir)
fi

runas=()
owner=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  id postgres >/dev/null 2>&1 || owner=nobody
  runas=(runuser -u "$owner" --)
fi

dir=$(mktemp -d /tmp/cairn-pg.XXXXXX)
chmod 755 "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
[ "$(id -u)" -eq 0 ] && chown "$owner" "$dir"

# as_owner runs a server binary as the data directory's owner, from /: the
# owner may not be allowed into the working directory.
as_owner() { (cd / && "${runas[@]}" "$@"); }

cleanup() {
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

say "starting a private PostgreSQL ($bindir) on 127.0.0.1:$port in $dir"
as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >/dev/null
as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
set +e
"$@"
status=$?
set -e
exit $status
