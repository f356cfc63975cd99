#!/usr/bin/env bash
# Install Debian's postgresql (initdb, pg_ctl) for the run-store tests, when it is missing and
# we can. Never fails: where it cannot be installed, the PostgreSQL tests skip and say why.
set -u
if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_postgresql: not root or no apt-get; the PostgreSQL store tests will skip" >&2
  exit 0
fi
echo "ensure_postgresql: installing Debian's postgresql for the run-store tests (about a minute)" >&2
export DEBIAN_FRONTEND=noninteractive
(apt-get update -qq && apt-get install -y -qq postgresql) >/tmp/ensure_postgresql.log 2>&1 \
  || echo "ensure_postgresql: install failed (see /tmp/ensure_postgresql.log); the PostgreSQL tests will skip" >&2
exit 0
