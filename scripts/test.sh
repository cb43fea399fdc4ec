#!/usr/bin/env bash
# The whole test suite: lint, typecheck, jest (unit, paper, property, storage, integration), then the
# deterministic simulator over SIM_SEEDS seeds (default 500) and SIM_TREE_SEEDS seeds with the tree state
# machine (default 300), then the nemesis (docs/reliability.md): NEMESIS_RUNS fault runs against real processes
# (default 12: each of the six fault kinds twice, every workload, 3 and 5 members; random seed, NEMESIS_SEED to fix it) and the
# two canaries (lock fencing off, stale reads planted), which must show violations. Prints
# `tests: N passed, N failed` last and exits non-zero when anything failed.
set -u
cd "$(dirname "$0")/.."
SIM_SEEDS="${SIM_SEEDS:-500}"
SIM_TREE_SEEDS="${SIM_TREE_SEEDS:-300}"
NEMESIS_RUNS="${NEMESIS_RUNS:-12}"
passed=0
failed=0
mkdir -p .test-results

step() { # name, command...
  local name="$1"; shift
  echo "==> $name"
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

if [ ! -d node_modules ]; then
  echo "node_modules is missing: run 'npm ci' first" >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
fi

step lint npx eslint .
step typecheck npx tsc -p tsconfig.json --noEmit

echo "==> jest"
rm -f .test-results/jest.json
NODE_OPTIONS=--experimental-vm-modules npx jest --json --outputFile=.test-results/jest.json
jest_rc=$?
if [ -f .test-results/jest.json ]; then
  read -r jp jf < <(node -e 'const r=JSON.parse(require("fs").readFileSync(".test-results/jest.json","utf8")); console.log(r.numPassedTests, r.numFailedTests + r.numRuntimeErrorTestSuites + (r.numPendingTests||0) + (r.numTodoTests||0))')
  passed=$((passed + jp)); failed=$((failed + jf))
  if [ "$jest_rc" -ne 0 ] && [ "$jf" -eq 0 ]; then failed=$((failed + 1)); fi
else
  failed=$((failed + 1))
fi

step "sim --seeds $SIM_SEEDS" npx tsx libs/testing/src/sim/cli.ts --seeds "$SIM_SEEDS"
step "sim --seeds $SIM_TREE_SEEDS --app tree" npx tsx libs/testing/src/sim/cli.ts --seeds "$SIM_TREE_SEEDS" --app tree
step "nemesis --runs $NEMESIS_RUNS" npx tsx scripts/nemesis.ts --runs "$NEMESIS_RUNS" ${NEMESIS_SEED:+--seed "$NEMESIS_SEED"}
step "nemesis --canary lock" npx tsx scripts/nemesis.ts --canary lock --runs 1 ${NEMESIS_SEED:+--seed "$NEMESIS_SEED"}
step "nemesis --canary tree" npx tsx scripts/nemesis.ts --canary tree --runs 1 ${NEMESIS_SEED:+--seed "$NEMESIS_SEED"}

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
