#!/usr/bin/env bash
# Install what is missing, then start the gate with its embedded demo defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m gate "$@"
