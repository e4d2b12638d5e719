#!/usr/bin/env bash
# Records the spaces bench_search_efficiency replays: three matmul shapes,
# each over the same pinned sub-space (3,168 configs), measured in full on
# this machine's CPU. Takes roughly 25-40 minutes on 2 cores.
#   bench/record_spaces.sh [OUT_DIR] [TUNEFARM_BIN]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/build/bench-data}"
bin="${2:-$root/build/bin/tunefarm}"
mkdir -p "$out"
pins=(--pin compiler=clang --pin cflags=-O3 --pin order=jc,pc,ic --pin inner=jr,ir
      --pin nc=1024 --pin mc=96 --pin unroll_k=4 --pin pack_a=1 --pin threads=1 --pin parallel=rows)
i=0
for w in 'matmul(M=128,N=128,K=128)' 'matmul(M=192,N=256,K=96)' 'matmul(M=77,N=129,K=61)'; do
  i=$((i + 1))
  echo "recording $w -> $out/space$i.db" >&2
  "$bin" record "$w" "${pins[@]}" --samples 100000 --min-repeat-ms 10 --db "$out/space$i.db" --json \
    > "$out/space$i.json"
done
