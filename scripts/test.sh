#!/usr/bin/env bash
# The project's test command (README and CI run exactly this): install, then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest "$@"
