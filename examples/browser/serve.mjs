// A static file server for the built page, on 127.0.0.1 only:
//   node serve.mjs <folder> [port]
// .wasm must be served as application/wasm for streaming compilation.
// Everything under /workers/ is served cross-origin isolated (COOP + COEP),
// which is what gives its page and workers SharedArrayBuffer; the first page
// is not, as most pages are not.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.map': 'application/json', '.json': 'application/json', '.wasm': 'application/wasm' };

/** Serves `root`; resolves to its URL and a close function. */
export function serve(root, port = 0) {
  const base = resolve(root);
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname));
    const file = join(base, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(base)) return void res.writeHead(403).end();
    try {
      const body = await readFile(file);
      const isolated = path.startsWith('/workers/') ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {};
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store', ...isolated }).end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((done) => server.listen(port, '127.0.0.1', () => done({ url: `http://127.0.0.1:${server.address().port}/`, close: () => new Promise((r) => server.close(r)) })));
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  const root = process.argv[2];
  if (!root) throw new Error('usage: node serve.mjs <folder> [port]');
  const { url } = await serve(root, Number(process.argv[3] ?? 8080));
  console.log(`serving ${root} at ${url} (Ctrl-C stops)`);
}
