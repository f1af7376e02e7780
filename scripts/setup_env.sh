#!/usr/bin/env bash
# Creates .venv (Python 3.10/3.11) with every pinned dependency, and the system libraries the drivers load.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

need_apt=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || need_apt+=(libusb-1.0-0)      # pyrealsense2
ldconfig -p | grep -q 'libOSMesa.so' || need_apt+=(libosmesa6)           # MuJoCo offscreen rendering on CPU
ldconfig -p | grep -q 'libEGL.so.1' || need_apt+=(libegl1)               # MuJoCo rendering on a GPU
ldconfig -p | grep -q 'libhidapi-hidraw.so.0' || need_apt+=(libhidapi-hidraw0)  # pyspacemouse (easyhid)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  echo "[setup] pip install -r requirements.txt"
  .venv/bin/python -m pip install -q -r requirements.txt 2>&1 | grep -v 'is ignored: it is neither' || true
  .venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v 'is ignored: it is neither' || true
  .venv/bin/python -c "import torch, transformers, franky, pymodbus, pyrealsense2, mujoco, rclpy" 
  echo "$want" > $stamp
fi
