#!/usr/bin/env bash
# Instructions per malloc + free pair, by callgrind, for runs of K blocks of one size
# (benches/c/runs.c): K = 1 is a pair the thread cache (or its ring of larger chunks) serves,
# K = 16 is longer than a bin of 7 or the ring of 8, so most pairs go through the arena.
# Each count is (2,000 rounds - 1,000 rounds) / (1,000 * K): the program's start-up cancels.
# Usage: benches/callgrind-runs.sh [SIZE...]   (default: 1024 4096 16384 65536 100000 262144)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ptalloc-preload --lib
cc -O2 -fno-builtin -o target/release/runs benches/c/runs.c
lib=$PWD/target/release/libptalloc.so
count() { valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {n = $4} END {print n}'; }
per_pair() {
  local size=$1 k=$2; shift 2
  echo $(( ($(count "$@" target/release/runs "$size" "$k" 2000) - $(count "$@" target/release/runs "$size" "$k" 1000)) / (1000 * k) ))
}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1024 4096 16384 65536 100000 262144)
echo "| size | run | glibc | ptalloc |"
echo "|---|---|---|---|"
for size in "${sizes[@]}"; do
  for k in 1 16; do
    echo "| $size | $k | $(per_pair "$size" "$k" env) | $(per_pair "$size" "$k" env LD_PRELOAD="$lib") |"
  done
done
