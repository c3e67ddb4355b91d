#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and benchmarks, run as the unprivileged
# `postgres` user (initdb refuses root), listening on a free loopback port only.
#
#   url=$(bash scripts/throwaway-postgres.sh start DIR)   # prints postgres://hub@127.0.0.1:PORT/postgres
#   bash scripts/throwaway-postgres.sh stop DIR
#
# DIR must not exist or be empty; `stop` removes it. The cluster's superuser is `hub` with
# trust authentication on loopback (fine for a throwaway cluster; never for a real one).
set -euo pipefail
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: throwaway-postgres.sh start|stop DIR}
dir=${2:?usage: throwaway-postgres.sh start|stop DIR}

case "$cmd" in
start)
  if [ ! -x "$PG_BIN/initdb" ]; then
    echo "throwaway-postgres.sh: $PG_BIN/initdb not found; run scripts/setup.sh (it installs postgresql)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  chown postgres: "$dir"
  chmod 700 "$dir"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -U hub --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
  echo "postgres://hub@127.0.0.1:$port/postgres"
  ;;
stop)
  if [ -d "$dir/data" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "throwaway-postgres.sh: unknown command $cmd (start|stop)" >&2
  exit 2
  ;;
esac
