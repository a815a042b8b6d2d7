#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests and export FTPREP_TEST_PG_URL.
#
#   source .ci/setup_postgres.sh      # (what .ci/run does) exports FTPREP_TEST_PG_URL
#   bash .ci/setup_postgres.sh        # prints: export FTPREP_TEST_PG_URL=postgresql://...
#
# Idempotent and fast on re-runs: installs PostgreSQL only when missing, creates the cluster
# only once (in $FTPREP_PG_DIR, default /tmp/ftprep-ci-pg), starts it only when it is not
# running, and creates the role and database only when absent. Listens on 127.0.0.1 only
# ($FTPREP_PG_PORT, default 55432). Safe to source under `set -euo pipefail`: on failure it
# returns (or exits, when executed) with a message instead of killing the caller silently.

_ftprep_pg_setup() {
  local dir="${FTPREP_PG_DIR:-/tmp/ftprep-ci-pg}"
  local port="${FTPREP_PG_PORT:-55432}"
  local user="ftprep" pass="ftprep" dbname="ftprep_test"
  local bindir="" as=()

  find_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then bindir="$d"; return 0; fi
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
      bindir="$(pg_config --bindir)"; return 0
    fi
    return 1
  }

  if ! find_bindir; then
    echo "setup_postgres: installing PostgreSQL (apt-get)" >&2
    if [ "$(id -u)" -eq 0 ]; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    else
      sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    find_bindir || { echo "setup_postgres: PostgreSQL binaries not found after install" >&2; return 1; }
  fi

  # the server refuses to run as root: run it as the postgres system user then
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    as=(runuser -u postgres --)
  fi

  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  if [ ! -f "$dir/PG_VERSION" ]; then
    "${as[@]}" "$bindir/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null \
      || "${as[@]}" "$bindir/initdb" -D "$dir" -U postgres --auth-local=trust \
           --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >/dev/null \
      || { echo "setup_postgres: initdb failed" >&2; return 1; }
  fi
  if ! "${as[@]}" "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    # started here: FTPREP_PG_STOP is the command that stops it again (.ci/run runs it on exit;
    # a server that was already running is left alone)
    FTPREP_PG_STOP="${as[*]} $bindir/pg_ctl -D $dir -m fast -w stop"
    export FTPREP_PG_STOP
    "${as[@]}" "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      >/dev/null || { echo "setup_postgres: the server did not start; see $dir/server.log" >&2; tail -n 20 "$dir/server.log" >&2; return 1; }
  fi
  local psql=("${as[@]}" "$bindir/psql" -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -qtAX)
  if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname='$user'")" != "1" ]; then
    "${psql[@]}" -d postgres -c "CREATE ROLE $user LOGIN PASSWORD '$pass'" >/dev/null
  fi
  if [ "$("${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname='$dbname'")" != "1" ]; then
    "${psql[@]}" -d postgres -c "CREATE DATABASE $dbname OWNER $user" >/dev/null
  fi
  export FTPREP_TEST_PG_URL="postgresql://$user:$pass@127.0.0.1:$port/$dbname"
  echo "export FTPREP_TEST_PG_URL=$FTPREP_TEST_PG_URL"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _ftprep_pg_setup || return 1
else
  set -euo pipefail
  _ftprep_pg_setup
fi
