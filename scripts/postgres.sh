#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, on 127.0.0.1, in a temporary data folder.
#
#   eval "$(bash scripts/postgres.sh)"        start one; prints `export CINODE_TEST_POSTGRES_URL=...`
#   bash scripts/postgres.sh stop DIR          stop it and delete its folder
#   bash scripts/postgres.sh pause DIR         stop it, keeping its data (tests of a lost database)
#   bash scripts/postgres.sh resume DIR        start it again on the same port
#   bash scripts/postgres.sh test [JEST ARGS]  run the jest suite against PostgreSQL (npm run test:postgres)
#
# `start` installs Debian's `postgresql` package with apt-get when no server binaries are found
# (CINODE_POSTGRES_BINDIR names the bin folder of another installation).
# PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user.
# Progress goes to stderr; stdout carries only the lines to eval.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

say() { echo "postgres.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# The bin folder of the server to use: CINODE_POSTGRES_BINDIR when set, else the newest one in
# Debian's layout, else initdb on PATH; nothing when there is none.
find_bindir() {
  local dir
  if [ -n "${CINODE_POSTGRES_BINDIR:-}" ]; then
    if [ -x "$CINODE_POSTGRES_BINDIR/initdb" ]; then echo "$CINODE_POSTGRES_BINDIR"; fi
    return
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return
  fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL server (initdb) found, and no apt-get to install one"
  [ "$(id -u)" -eq 0 ] || die "no PostgreSQL server (initdb) found; install Debian's postgresql package (needs root): apt-get install postgresql"
  say "installing Debian's postgresql package"
  # Only the binaries are wanted: no cluster of the package's own, which would start on port 5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >&2 ||
    die "apt-get install postgresql failed"
}

# Runs a command as the user the server runs as: `postgres` when we are root, else ourselves.
as_server_user() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  fi
}

free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}

bindir_of() {
  cat "$1/bindir" 2>/dev/null || die "$1 is not a folder made by scripts/postgres.sh"
}

pg_start() {
  local dir=$1 bindir
  bindir=$(bindir_of "$dir")
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >&2
}

cmd_start() {
  local bindir dir port attempt
  bindir=$(find_bindir)
  if [ -n "${CINODE_POSTGRES_BINDIR:-}" ] && [ -z "$bindir" ]; then
    die "CINODE_POSTGRES_BINDIR=$CINODE_POSTGRES_BINDIR has no initdb"
  fi
  if [ -z "$bindir" ] || [ -n "${POSTGRES_SH_FORCE_INSTALL:-}" ]; then
    install_postgres
    bindir=$(find_bindir)
    [ -n "$bindir" ] || die "postgresql was installed but initdb is still not found"
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    say "creating the postgres user (PostgreSQL does not run as root)"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
  fi

  dir=$(mktemp -d "${TMPDIR:-/tmp}/cinode-pg.XXXXXX")
  echo "$bindir" >"$dir/bindir"
  [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir"
  say "initdb in $dir/data ($bindir)"
  if ! as_server_user "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    rm -rf "$dir"
    die "initdb failed"
  fi
  # Loopback only, trust auth (initdb --auth=trust), the socket in our folder, durability off:
  # a test database is thrown away, speed matters more.
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$dir'"
    echo "max_connections = 300"
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
  } >>"$dir/data/postgresql.conf"

  for attempt in 1 2 3; do
    port=$(free_port)
    sed -i '/^port = /d' "$dir/data/postgresql.conf"
    echo "port = $port" >>"$dir/data/postgresql.conf"
    if pg_start "$dir"; then
      say "PostgreSQL is up on 127.0.0.1:$port"
      echo "export CINODE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
      echo "export CINODE_TEST_POSTGRES_DIR=$dir"
      echo "# stop it with: bash $repo/scripts/postgres.sh stop $dir"
      return 0
    fi
    say "start on port $port failed (attempt $attempt); log:"
    tail -n 20 "$dir/server.log" >&2 || true
  done
  rm -rf "$dir"
  die "could not start PostgreSQL"
}

cmd_stop() {
  local dir=${1:?usage: postgres.sh stop DIR}
  local bindir
  bindir=$(bindir_of "$dir")
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
  rm -rf "$dir"
}

cmd_pause() {
  local dir=${1:?usage: postgres.sh pause DIR}
  local bindir
  bindir=$(bindir_of "$dir")
  as_server_user "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2
}

cmd_resume() {
  pg_start "${1:?usage: postgres.sh resume DIR}"
}

# The jest suite against PostgreSQL: the server named by CINODE_TEST_POSTGRES_URL, else a
# throwaway one when this machine has the server binaries. Without either the pass is not run:
# said clearly, and a failure in CI (CI=true), where nothing may be skipped.
cmd_test() {
  local why="" env status
  cd "$repo"
  if [ -z "${CINODE_TEST_POSTGRES_URL:-}" ]; then
    if [ -z "$(find_bindir)" ]; then
      why="CINODE_TEST_POSTGRES_URL is not set and no PostgreSQL server binaries (initdb) were found"
    elif env=$(cmd_start); then
      eval "$env"
      test_server=$CINODE_TEST_POSTGRES_DIR
      trap 'cmd_stop "$test_server"' EXIT
    else
      why="CINODE_TEST_POSTGRES_URL is not set and a throwaway PostgreSQL server could not be started (see above)"
    fi
  fi
  if [ -n "$why" ]; then
    echo "================================================================================"
    echo "PostgreSQL pass NOT RUN: no test file was run against PostgreSQL (SQLite only), and the"
    echo "replica and lost-database tests of test/postgres.test.ts were not run at all."
    echo "Why: $why."
    echo "To run it: install PostgreSQL (Debian: apt-get install postgresql) and run npm test again,"
    echo "or point the tests at a server whose user may CREATE DATABASE:"
    echo "  CINODE_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/postgres npm run test:postgres"
    echo "================================================================================"
    if [ "${CI:-}" = "true" ]; then
      echo "CI=true: the PostgreSQL pass must run; failing."
      return 1
    fi
    return 0
  fi
  echo "== jest against PostgreSQL at $(sed -E 's#//[^@/]*@#//#' <<<"$CINODE_TEST_POSTGRES_URL")"
  set +e
  npm run build:lib --silent || return 1 # the tests that run the server as a process use lib/
  CINODE_TEST_DATABASE=postgres node --experimental-vm-modules node_modules/jest/bin/jest.js "$@"
  status=$?
  set -e
  return "$status"
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop "${2:-}" ;;
  pause) cmd_pause "${2:-}" ;;
  resume) cmd_resume "${2:-}" ;;
  test)
    shift
    cmd_test "$@"
    ;;
  *) die "unknown command $1; use start, stop DIR, pause DIR, resume DIR or test" ;;
esac
