#!/usr/bin/env bash
# Install Debian's chromium for the report's browser test, when it is missing and we can.
# Never fails: where it cannot be installed, the browser test skips and says why.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_chromium: not root or no apt-get; the browser test will skip" >&2
  exit 0
fi
echo "ensure_chromium: installing Debian's chromium for the report test (about 2 minutes)" >&2
export DEBIAN_FRONTEND=noninteractive
(apt-get update -qq && apt-get install -y -qq chromium) >/tmp/ensure_chromium.log 2>&1 \
  || echo "ensure_chromium: install failed (see /tmp/ensure_chromium.log); the browser test will skip" >&2
exit 0
