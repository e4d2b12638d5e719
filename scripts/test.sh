#!/usr/bin/env bash
# Installs what is missing, builds everything (warnings are errors) and runs
# the whole test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
tunefarm_install_deps
tunefarm_build -DTUNEFARM_WERROR=ON
cd "$TUNEFARM_BUILD"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 600
