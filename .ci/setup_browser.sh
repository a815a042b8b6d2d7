#!/usr/bin/env bash
# Install what the browser tests need: Debian's Chromium (/usr/bin/chromium) and the Playwright
# Python package. Never runs `playwright install` (no browser downloads): the tests launch
# /usr/bin/chromium through `executable_path`. Idempotent: installs only what is missing.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  echo "setup_browser: installing chromium (apt-get)" >&2
  if [ "$(id -u)" -eq 0 ]; then sudo_=(); else sudo_=(sudo); fi
  "${sudo_[@]}" apt-get update -qq >&2
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi

if ! python -c "import playwright.sync_api" >/dev/null 2>&1; then
  echo "setup_browser: installing playwright (pip, without browser downloads)" >&2
  python -m pip install -q playwright
fi
echo "setup_browser: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium missing'); playwright $(python -c 'import importlib.metadata as m; print(m.version("playwright"))')" >&2
