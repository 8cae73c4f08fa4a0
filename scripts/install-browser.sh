#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the value-card browser tests, when missing.
# Needs root (or sudo); without either it says what to run and the browser tests skip locally.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "browser tests need: apt-get install chromium chromium-driver (as root)" >&2
    exit 0
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
