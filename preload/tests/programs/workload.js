// Node under ptalloc: V8 keeps its own heap, but buffers, strings handed to C++, zlib and
// worker threads allocate through malloc.
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');
const zlib = require('zlib');
const crypto = require('crypto');

function digest(x) { return crypto.createHash('sha256').update(x).digest('hex').slice(0, 16); }

if (isMainThread) {
  const objs = [];
  for (let i = 0; i < 200000; i++) objs.push({ id: i, name: 'item' + i, tags: [i % 7, i % 11] });
  const text = JSON.stringify(objs);
  console.log('json', text.length, digest(text));
  const buf = Buffer.alloc(32 * 1024 * 1024, 7);
  const z = zlib.deflateSync(buf);
  console.log('zlib', z.length, digest(zlib.inflateSync(z)));
  const workers = [];
  for (let w = 0; w < 4; w++) {
    workers.push(new Promise((resolve, reject) => {
      const worker = new Worker(__filename, { workerData: w });
      worker.on('message', resolve);
      worker.on('error', reject);
    }));
  }
  Promise.all(workers).then((r) => console.log('workers', r.join(' ')));
} else {
  const parts = [];
  for (let i = 0; i < 100000; i++) parts.push(Buffer.from('w' + workerData + '-' + i));
  const all = Buffer.concat(parts);
  parentPort.postMessage(digest(zlib.gzipSync(all, { level: 1 }).length + ':' + digest(all)));
}
