#!/bin/sh
# ensure-chromium.sh installs Chromium for the browser tests in internal/web
# when /usr/bin/chromium is missing. It runs non-interactively (as root in CI;
# through sudo elsewhere when available). Safe to run repeatedly.
set -eu

if [ -x /usr/bin/chromium ]; then
	exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo"
	else
		echo "ensure-chromium: /usr/bin/chromium is missing and not running as root; install the 'chromium' package" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core

if [ ! -x /usr/bin/chromium ]; then
	echo "ensure-chromium: installed, but /usr/bin/chromium is still missing" >&2
	exit 1
fi
/usr/bin/chromium --version || true
