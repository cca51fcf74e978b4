// Starts troupe processes for end-to-end tests and stops them; every wait has a deadline.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

export const bin = process.env.TROUPE_BIN ?? '../../build/cli/troupe';
export const models = process.env.TROUPE_TEST_MODELS ?? '../../build/testmodels';

export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

// Runs `troupe ...args`, resolving once stdout prints a line matching `ready`.
export async function start(args, { ready = /troupe: serving .* at (http:\/\/\S+)\/v1/, timeoutMs = 120000, env = {} } = {}) {
  const proc = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const match = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`troupe ${args.join(' ')} not ready in ${timeoutMs} ms\n${err}`)), timeoutMs);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(ready);
      if (m) { clearTimeout(timer); resolve(m); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`troupe exited with ${code} before it was ready\n${err}`)); });
  });
  return {
    proc,
    url: match[1],
    stderr: () => err,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;  // already gone (a kill -9, say)
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const [code] = await once(proc, 'exit');
      clearTimeout(timer);
      return code;
    },
  };
}

export async function serve(model, extra = []) {
  const port = await freePort();
  return start(['serve', '--model', `${models}/${model}`, '--host', '127.0.0.1', '--port', String(port),
                '--kv-cache-memory', '256MiB', '--threads', '1', ...extra]);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns a truthy value or the deadline passes.
export async function eventually(fn, { timeoutMs = 15000, everyMs = 100 } = {}) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    last = await fn();
    if (last) return last;
    await sleep(everyMs);
  }
  return last;
}

export async function actors(url) {
  const res = await fetch(`${url}/v1/actors`);
  return res.json();
}

// The engine state of every worker: all idle with every KV block free?
export async function workersIdle(url) {
  const a = await actors(url);
  const workers = a.data.filter((x) => x.role === 'worker');
  return workers.length > 0 && workers.every((w) => w.engine.running === 0 && w.engine.waiting === 0 && w.engine.kv_blocks_used === 0);
}
