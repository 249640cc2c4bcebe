#!/usr/bin/env bash
# Writes the generated deploy files (deploy/generate.py says which); `--check` exits 1 when one is
# out of date. Uses the venv of tests/ops/check.sh (PyYAML, helm-python-sdk) when it exists;
# otherwise python3 must have both (pip install PyYAML helm-python-sdk).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${XDG_CACHE_HOME:-$HOME/.cache}/slurm-gpu-exporter/ops/venv
py=${PYTHON:-python3}
[[ -z ${PYTHON:-} && -x $venv/bin/python ]] && py=$venv/bin/python
exec "$py" deploy/generate.py "$@"
