#!/usr/bin/env bash
# The installed CMake package end to end: install tunefarm into a temporary
# prefix, tune two of the example's three workloads into a fresh tuning log,
# build examples/tuned_kernels from a clean build directory against it and
# run its tests; then check that a no-op rebuild generates nothing and that
# a change to the log regenerates the kernels.
# Usage: cmake_package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TUNEFARM_DB="$work/unused.db"  # nothing below may touch the default log

cmake --install "$build" --prefix "$work/prefix" >/dev/null
tf="$work/prefix/bin/tunefarm"
log="$work/log.db"
"$tf" tune 'matmul(M=64,N=48,K=96)' --trials 6 --batch-size 6 --db "$log" >/dev/null
"$tf" tune 'conv2d(N=1,C=8,H=12,W=12,K=16,R=3,S=3,stride=1,pad=1,layout=NHWC)' --trials 6 --batch-size 6 \
  --db "$log" >/dev/null

cmake -S "$source/examples/tuned_kernels" -B "$work/example" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DTUNEFARM_DATABASE="$log" >"$work/configure.txt"
cmake --build "$work/example" >"$work/build1.txt"
cat "$work/build1.txt"
grep -q "tunefarm: generating 3 kernel(s)" "$work/build1.txt"
grep -Eq "matmul\(M=64,N=48,K=96,dtype=float32\) +exact device" "$work/build1.txt"
grep -Eq "conv2d\(.*layout=NHWC,dtype=float32\) +exact device" "$work/build1.txt"
grep -Eq "matmul\(M=77,N=129,K=61,bias=1,relu=1,dtype=float32\) +template default" "$work/build1.txt"
ctest --test-dir "$work/example" --output-on-failure

# Nothing changed: nothing is generated.
cmake --build "$work/example" >"$work/build2.txt"
if grep -q "tunefarm: generating" "$work/build2.txt"; then
  echo "a no-op rebuild regenerated the kernels" >&2
  exit 1
fi

# The log changes: the kernels are regenerated, now all three tuned.
"$tf" tune 'matmul(M=77,N=129,K=61,bias=1,relu=1)' --trials 4 --batch-size 4 --db "$log" >/dev/null
cmake --build "$work/example" >"$work/build3.txt"
cat "$work/build3.txt"
grep -q "tunefarm: generating 3 kernel(s)" "$work/build3.txt"
grep -Eq "matmul\(M=77,N=129,K=61,bias=1,relu=1,dtype=float32\) +exact device" "$work/build3.txt"
ctest --test-dir "$work/example" --output-on-failure
echo "cmake package: ok"
