#!/usr/bin/env bash
# Installs everything the hub's tests and try-out need on Debian 12, as root.
# Idempotent: a second run checks and returns in a second or two.
#
#   HUB_VENV   where the Jupyter venv lives (default /opt/hub/jupyter-venv)
#   HUB_TOOLS_VENV  where REST API clients for the tests live (default /opt/hub/tools-venv)
#
# The venv is built with Debian's /usr/bin/python3 (not a pyenv under /root), so that
# unprivileged users the hub spawns servers for can execute it.
set -euo pipefail

HUB_VENV=${HUB_VENV:-/opt/hub/jupyter-venv}
APT_PACKAGES=(krb5-kdc krb5-admin-server krb5-user libkrb5-dev libpam0g-dev pkg-config
  libclang-dev clang curl python3-venv procps passwd chromium nginx-light openssl postgresql
  systemd slurmctld slurmd slurm-client munge)
PIP_PACKAGES=("jupyter-server>=2.14,<3" "jupyterlab>=4,<5" "ipykernel>=6" "websocket-client>=1.6")

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: must run as root (it installs packages and the tests create Linux users)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # krb5-config asks for a default realm unless told not to.
  echo "krb5-config krb5-config/default_realm string EXAMPLE.COM" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node.js and npm for the browser test; machines that already have them (e.g. from
# NodeSource, whose nodejs bundles npm) keep theirs.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup.sh: installing nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

if [ ! -x "$HUB_VENV/bin/jupyter-lab" ] || [ ! -f "$HUB_VENV/.hub-setup-ok" ]; then
  echo "setup.sh: creating the Jupyter venv in $HUB_VENV"
  mkdir -p "$(dirname "$HUB_VENV")"
  /usr/bin/python3 -m venv "$HUB_VENV"
  "$HUB_VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
  chmod -R a+rX "$HUB_VENV"
  touch "$HUB_VENV/.hub-setup-ok"
fi
# External REST API clients the tests run against the hub, in their own venv (they are
# services, not part of the users' Jupyter environment).
HUB_TOOLS_VENV=${HUB_TOOLS_VENV:-/opt/hub/tools-venv}
if [ ! -f "$HUB_TOOLS_VENV/.hub-setup-ok" ]; then
  echo "setup.sh: creating the API-clients venv in $HUB_TOOLS_VENV (jupyterhub-idle-culler)"
  /usr/bin/python3 -m venv "$HUB_TOOLS_VENV"
  "$HUB_TOOLS_VENV/bin/pip" install -q --disable-pip-version-check jupyterhub-idle-culler
  touch "$HUB_TOOLS_VENV/.hub-setup-ok"
fi
# playwright-core (no browser download: the tests use Debian's /usr/bin/chromium).
BROWSER_DIR=$(cd "$(dirname "$0")/../tests/browser" && pwd)
if [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
  echo "setup.sh: installing playwright-core for the browser test"
  (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup.sh: ready (venv $HUB_VENV)"
