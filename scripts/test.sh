#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (pcscd, PostgreSQL and
# Chromium are started by the test fixtures themselves and stopped by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
