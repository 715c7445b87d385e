#!/usr/bin/env bash
# Real programs as ptalloc's test and benchmark run them.
#
#   workload.sh prepare DIR      make the inputs in DIR (run once, on any allocator)
#   workload.sh list             the workload names
#   workload.sh run NAME DIR     run one workload; its stdout is deterministic, so a run on
#                                glibc and a run under LD_PRELOAD=libptalloc.so must match
#
# Each workload is big enough to reach the mmap path (blocks of 128 KiB and more), and the
# multi-threaded ones spread over several arenas.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
names="python python-tests sqlite git perl gcc sort xz node bash"

prepare() {
  local d=$1
  mkdir -p "$d"
  # The real interpreter, not a version manager's shell shim (where there is a python3:
  # the other workloads do not need one).
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys; print(sys.executable)' > "$d/python-path"
  fi
  # 1,000,000 numbers for sort.
  awk 'BEGIN { x = 12345; for (i = 0; i < 1000000; i++) { x = (x * 1103515245 + 12345) % 2147483648; print x % 1000003 } }' > "$d/numbers.txt"
  # 12 MB of compressible text for xz.
  awk 'BEGIN { x = 7; for (i = 0; i < 400000; i++) { x = (x * 69069 + 1) % 4294967296; printf "line %d value %d word%d\n", i, x % 100000, x % 977 } }' > "$d/text.txt"
  # A C file with 3,000 functions for gcc (callers in groups of 50, so that inlining stays
  # local and the compile takes seconds, not minutes).
  awk 'BEGIN {
    print "#include <stddef.h>";
    for (i = 0; i < 3000; i++) {
      printf "int f%d(int *a, size_t n) { int s = %d; for (size_t i = 0; i < n; i++) { s += a[i] * %d; if (s > %d) s ^= (int)i; } return s; }\n", i, i, i % 13 + 1, 1000 + i
    }
    for (g = 0; g < 60; g++) {
      printf "int group%d(int *a, size_t n) { int s = 0;\n", g;
      for (i = g * 50; i < g * 50 + 50; i++) printf "  s += f%d(a, n);\n", i;
      print "  return s; }"
    }
  }' > "$d/many.c"
  # 3,000 files for git.
  mkdir -p "$d/tree"
  awk -v dir="$d/tree" 'BEGIN { for (i = 0; i < 3000; i++) { f = sprintf("%s/file%04d.txt", dir, i); for (j = 0; j < 20 + i % 50; j++) print "file", i, "line", j, "data", (i * 31 + j * 17) % 1009 > f; close(f) } }'
}

# The interpreter found when the inputs were made, or python3 if there was none then.
python_path() {
  cat "$1/python-path" 2>/dev/null || echo python3
}

run() {
  local name=$1 d=$2
  case "$name" in
    python)
      PYTHONMALLOC=malloc "$(python_path "$d")" "$here/workload.py" ;;
    python-tests)
      # Modules of CPython's own regression suite; only the verdict lines are compared.
      PYTHONMALLOC=malloc "$(python_path "$d")" -m test -j0 test_json test_re test_collections test_dict \
        test_list test_set test_struct test_heapq test_bisect test_zlib test_array test_deque \
        test_ordered_dict test_thread test_threading_local test_queue test_pickle 2>&1 | grep -E '^(== Tests result|All [0-9]+ tests OK)' ;;
    sqlite)
      local q; q=$(mktemp -d)
      sqlite3 "$q/db.sqlite" < "$here/workload.sql"
      rm -rf "$q" ;;
    git)
      local g; g=$(mktemp -d)
      cp -r "$d/tree" "$g/tree"
      (
        cd "$g/tree"
        export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
        export GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' GIT_COMMITTER_DATE='2026-01-01T00:00:00Z'
        git init -q -b main .
        git add .
        git commit -q -m first
        sed -i 's/data 1/DATA 1/' file00*.txt
        git commit -q -am second
        git -c pack.threads=2 gc -q --aggressive
        git rev-parse HEAD
        git log --stat --format='%H %s' | tail -5
        git count-objects -v | grep -E '^(count|in-pack|packs)'
        git fsck --no-progress && echo "fsck clean"
        git grep -c 'DATA 1' | wc -l
      )
      rm -rf "$g" ;;
    perl)
      perl "$here/workload.pl" ;;
    gcc)
      local o; o=$(mktemp -d)
      gcc -O1 -frandom-seed=ptalloc -c "$d/many.c" -o "$o/many.o"
      sha256sum < "$o/many.o"
      rm -rf "$o" ;;
    sort)
      sort -n --parallel=4 -S 200M "$d/numbers.txt" | sha256sum
      sort -u --parallel=4 "$d/numbers.txt" | wc -l ;;
    xz)
      xz -T4 -3 --block-size=2MiB -c "$d/text.txt" > "$d/text.xz.$$"
      sha256sum < "$d/text.xz.$$"
      xz -T4 -dc "$d/text.xz.$$" | sha256sum
      rm -f "$d/text.xz.$$" ;;
    node)
      node "$here/workload.js" ;;
    bash)
      bash "$here/workload.bash" ;;
    *) echo "workload.sh: unknown workload $name (one of: $names)" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  prepare) prepare "$2" ;;
  list) echo "$names" | tr ' ' '\n' ;;
  run) run "$2" "$3" ;;
  *) echo "usage: workload.sh prepare DIR | list | run NAME DIR" >&2; exit 2 ;;
esac
