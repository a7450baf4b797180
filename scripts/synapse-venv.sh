#!/usr/bin/env bash
# Create .venv-synapse: a private venv with the Synapse homeserver that the Matrix tests start on loopback.
# Usage: scripts/synapse-venv.sh [VENV_DIR]   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-synapse}"
PYTHON="${PYTHON:-python3}"
SYNAPSE_VERSION="1.163.2"
STAMP="$VENV/.installed-synapse-$SYNAPSE_VERSION-$(cksum < constraints-synapse.txt | cut -d" " -f1)"

if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# constraints-synapse.txt pins the whole dependency tree so installs are reproducible.
"$VENV/bin/python" -m pip install -q -c constraints-synapse.txt "matrix-synapse==$SYNAPSE_VERSION"
"$VENV/bin/python" -c 'import synapse.app.homeserver' 
rm -f "$VENV"/.installed-synapse-*
touch "$STAMP"
