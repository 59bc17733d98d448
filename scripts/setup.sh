#!/usr/bin/env bash
# Install what the gate needs on a Debian machine, idempotently.
#   scripts/setup.sh          runtime: system packages + .venv with the gate
#   scripts/setup.sh --test   also what the test suite needs (PostgreSQL, Chromium, test extras)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_pkgs=(pcscd vsmartcard-vpcd pcsc-tools libpcsclite-dev swig gcc python3-dev python3-venv
          espeak-ng tesseract-ocr tesseract-ocr-eng libtesseract-dev libleptonica-dev pkg-config fonts-ocr-b libgl1 libglib2.0-0)
[ $want_test = 1 ] && apt_pkgs+=(postgresql chromium)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
# The test install is a superset of the runtime one, so either stamp satisfies a runtime setup.
if [ $want_test = 1 ]; then
  extras="[test]"; stamp=".venv/.installed-test"
else
  extras=""; stamp=".venv/.installed"
  [ -f .venv/.installed-test ] && ! [ pyproject.toml -nt .venv/.installed-test ] && stamp=".venv/.installed-test"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${extras}"
  touch "$stamp"
fi
