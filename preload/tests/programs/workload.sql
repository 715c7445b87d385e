-- SQLite under ptalloc: a 50 MB page cache, 300,000 rows, an index built by sorter threads.
PRAGMA cache_size = -50000;
PRAGMA threads = 4;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, pad BLOB);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300000)
INSERT INTO t SELECT i, (i * 7919) % 100003, 'name' || (i % 1000), zeroblob(100 + i % 400) FROM c;
CREATE INDEX t_k ON t(k, name, pad);
SELECT count(*), sum(k), count(DISTINCT name) FROM t;
SELECT name, count(*), max(k) FROM t GROUP BY name ORDER BY name LIMIT 5;
SELECT k, id FROM t WHERE k BETWEEN 500 AND 510 ORDER BY k, id LIMIT 10;
UPDATE t SET pad = zeroblob(2000) WHERE id % 10 = 0;
DELETE FROM t WHERE id % 3 = 0;
VACUUM;
SELECT count(*), sum(length(pad)) FROM t;
