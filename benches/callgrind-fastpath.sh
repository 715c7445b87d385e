#!/usr/bin/env bash
# Instructions for one thread-cache-hit alloc(32) + dealloc pair through GlobalAlloc, counted
# by callgrind: each allocator runs 1M and 2M pairs, the difference / 1M is one loop iteration,
# and the "null" allocator's iteration (the loop itself) is subtracted.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ptalloc-benches --bin fastpath
bin=target/release/fastpath
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | awk '/Collected/ {print $4}'; }
per_iter() { echo $(( ($(count "$1" 2000000) - $(count "$1" 1000000)) / 1000000 )); }
loop=$(per_iter null)
for a in ptalloc system; do
  it=$(per_iter "$a")
  echo "$a: $((it - loop)) instructions per alloc+dealloc pair ($it per loop iteration, loop alone $loop)"
done
