#!/usr/bin/env bash
# Instruction counts of the thread-cache fast path, by callgrind (repeatable):
#  1. one alloc(32) + dealloc pair through Rust's GlobalAlloc: each allocator runs 1M and 2M
#     pairs, the difference / 1M is one loop iteration, and the "null" allocator's iteration
#     (the loop itself) is subtracted;
#  2. one malloc(32) + free loop iteration of a C program (benches/c/pair.c) on glibc and
#     under LD_PRELOAD=libptalloc.so (the loop's own instructions are the same for both).
set -euo pipefail
cd "$(dirname "$0")/.."
# Built on their own so that cargo does not unify the library's initial-exec-tls feature
# into the Rust benchmark (executables are faster without it).
cargo build --release -q -p ptalloc-benches --bin fastpath
cargo build --release -q -p ptalloc-preload --lib
cc -O2 -fno-builtin -o target/release/pair benches/c/pair.c
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
per_iter() { echo $(( ($(count "$@" 2000000) - $(count "$@" 1000000)) / 1000000 )); }
loop=$(per_iter target/release/fastpath null)
echo "Rust GlobalAlloc, alloc(32) + dealloc:"
for a in ptalloc system; do
  it=$(per_iter target/release/fastpath "$a")
  echo "  $a: $((it - loop)) instructions per pair ($it per loop iteration, loop alone $loop)"
done
echo "C program, malloc(32) + free, per loop iteration:"
echo "  glibc: $(per_iter target/release/pair)"
echo "  ptalloc (LD_PRELOAD): $(LD_PRELOAD=$PWD/target/release/libptalloc.so per_iter target/release/pair)"
