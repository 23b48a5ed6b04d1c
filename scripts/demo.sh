#!/usr/bin/env bash
# The demo on embedded defaults: a controller, a client host built here, a backup and a verified restore.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node test/dist/demo.js
