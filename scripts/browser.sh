#!/usr/bin/env bash
# Installs the browser of the dashboard's browser test (tests/tests/e2e/dashboard.rs): Debian's
# `chromium` and `chromium-driver` (chromedriver), with apt-get, when either is missing.
# Idempotent: with both present it only says so. The test fails (never skips) without them.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "browser: chromium and chromedriver are installed"
  exit 0
fi
echo "browser: installing Debian's chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! sudo_if_needed apt-get install -y -qq chromium chromium-driver >/tmp/browser-install.log 2>&1; then
  # A fresh machine has no package lists yet.
  sudo_if_needed apt-get update -qq >>/tmp/browser-install.log 2>&1
  if ! sudo_if_needed apt-get install -y -qq chromium chromium-driver >>/tmp/browser-install.log 2>&1; then
    echo "browser: apt-get install chromium chromium-driver failed:" >&2
    tail -n 20 /tmp/browser-install.log >&2
    exit 1
  fi
fi
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "browser: chromium and chromedriver are installed"
