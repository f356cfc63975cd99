#!/usr/bin/env bash
# Install a Debian package that some tests need, when it is missing and we can.
# Never fails: where it cannot be installed, those tests skip and say why.
# Usage: ensure_debian_package.sh PACKAGE "THE TESTS" PROGRAM...
#   the package counts as present when any PROGRAM is a command or matches a path pattern
set -u
package=$1
tests=$2
shift 2
for program in "$@"; do
  if command -v "$program" >/dev/null 2>&1 || compgen -G "$program" >/dev/null; then
    exit 0
  fi
done
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure $package: not root or no apt-get; $tests will skip" >&2
  exit 0
fi
log=/tmp/ensure_$package.log
echo "ensure $package: installing Debian's $package for $tests (a minute or two)" >&2
export DEBIAN_FRONTEND=noninteractive
(apt-get update -qq && apt-get install -y -qq "$package") >"$log" 2>&1 \
  || echo "ensure $package: install failed (see $log); $tests will skip" >&2
exit 0
