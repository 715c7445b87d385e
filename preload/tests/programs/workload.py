"""Python under ptalloc (PYTHONMALLOC=malloc sends every object through malloc)."""
import hashlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

def checksum(x):
    return hashlib.sha256(repr(x).encode()).hexdigest()[:16]

# Many small objects: dicts, lists, strings.
records = [{"id": i, "name": "item%d" % i, "tags": [str(i % 7), str(i % 11)]} for i in range(200_000)]
text = json.dumps(records)
print("json", len(text), checksum(json.loads(text)[::997]))

# Sorting and sets.
keys = sorted((i * 7919) % 1_000_003 for i in range(300_000))
print("sorted", keys[:3], keys[-3:], len(set(keys)))

# Large blocks (mmapped): byte arrays and big strings that grow.
big = bytearray(16 * 1024 * 1024)
for i in range(0, len(big), 4096):
    big[i] = i % 251
s = ""
for i in range(20_000):
    s += "chunk%05d;" % i
print("big", sum(big[::4096]), len(s), checksum(s[-100:]))

# Regular expressions.
found = re.findall(r"item(\d*7)\"", text)
print("re", len(found), found[:3])

# Threads allocating and freeing concurrently (several arenas).
def work(n):
    parts = []
    for i in range(50_000):
        parts.append(("t%d-%d" % (n, i)) * (1 + i % 5))
        if len(parts) > 1000:
            parts = parts[500:]
    blob = b"".join(p.encode() for p in parts)
    return hashlib.sha256(blob).hexdigest()[:16]

with ThreadPoolExecutor(max_workers=4) as pool:
    print("threads", list(pool.map(work, range(8))))
lock = threading.Lock()
shared = []
def appender(n):
    for i in range(20_000):
        with lock:
            shared.append((n, i, [i] * (i % 9)))
ts = [threading.Thread(target=appender, args=(n,)) for n in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("shared", len(shared), sum(len(x[2]) for x in shared))
