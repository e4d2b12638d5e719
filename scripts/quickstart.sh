#!/usr/bin/env bash
# Installs what is missing, builds, and tunes a real matmul kernel on this
# machine's CPU with the embedded default (local CPU agent, local SQLite log).
#   WORKLOAD='matmul(M=256,N=256,K=256)' TRIALS=100 scripts/quickstart.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tunefarm_install_deps
tunefarm_build -DTUNEFARM_BUILD_BENCH=OFF
WORKLOAD="${WORKLOAD:-matmul(M=512,N=512,K=512)}"
TRIALS="${TRIALS:-64}"
echo
echo "\$ tunefarm tune '$WORKLOAD' --trials $TRIALS"
"$TUNEFARM_BUILD/bin/tunefarm" tune "$WORKLOAD" --trials "$TRIALS"
echo
echo "\$ tunefarm best '$WORKLOAD' --top 3"
"$TUNEFARM_BUILD/bin/tunefarm" best "$WORKLOAD" --top 3
