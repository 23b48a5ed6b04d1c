#!/usr/bin/env bash
# The test suite, with its own set-up: system packages, npm dependencies, build, then every test
# (unit, integration with real processes, end to end with real sshd, sshfs, borg and tar).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p test-results
set +e
# Lint first (type-aware ESLint, import cycles, agent<->controller imports, Prettier): under a minute, the tests several.
npm run --silent lint
lint=$?
npx vitest run --reporter=default --reporter=json --outputFile.json=test-results/vitest.json "$@"
status=$?
set -e
node -e '
const r = JSON.parse(require("fs").readFileSync("test-results/vitest.json", "utf8"));
console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' || true
if [ "$lint" != 0 ]; then echo "lint or format check failed (npm run lint; npm run format fixes formatting)" >&2; fi
[ "$status" = 0 ] && [ "$lint" = 0 ]
