#!/bin/sh
# Install what the stack needs on a fresh Debian 12 machine, skipping what is
# already there: Debian packages, the project's venv, the Asterisk root.
set -eu
cd "$(dirname "$0")/.."

# kamailio: the SIP front door of a two-node stack ([cluster] nodes = 2; tools/kamailio_conf.py)
APT_PACKAGES="debootstrap redis-server postgresql sip-tester espeak-ng sox tcpdump util-linux iproute2 ca-certificates nftables kamailio"
missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
    # Debian starts its own Redis, PostgreSQL cluster and Kamailio (on 5060, the dev
    # stack's SIP port) where it can; the stack runs its own.
    for unit in redis-server postgresql kamailio; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
    done
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
            [ "$status" = online ] && pg_ctlcluster "$ver" "$name" stop >/dev/null 2>&1 || true
        done
    fi
fi

PY="${PYTHON:-python3}"
if ! "$PY" -c "import venv, ensurepip" 2>/dev/null; then
    apt-get install -y -q python3-venv >/dev/null
fi
STAMP=".venv/.kinline-stamp"
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "setup: creating the venv (.venv)"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$WANT" >"$STAMP"
fi

sh tools/asterisk_root.sh
