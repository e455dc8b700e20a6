// The compose chat check (tests/docker/cluster-chat.mjs) without Docker, to reproduce what it
// sees in seconds instead of a 20-minute image build: three `switchboard` processes in cluster
// mode on one redis-server and one data directory, Debian's nginx and HAProxy in front with
// deploy/nginx/switchboard.conf and deploy/haproxy/haproxy.cfg (upstreams rewritten), and the
// check's `docker stop` / `docker inspect` answered by a shim that sends the node SIGTERM (its
// drain) and reports its exit status. Not a test step: a tool for issue 32's kind of question.
//
//   SWITCHBOARD_BIN=target/debug/switchboard node tests/docker/local-cluster.mjs \
//     [--runs N] [--check tests/docker/cluster-chat.mjs] [--slow-node-ms MS]
//
// --slow-node-ms delays Redis's answers to node 3 by MS (a TCP proxy), so that node 3's events
// are published MS after they are logged: other nodes' later events overtake them at every
// socket, as a loaded machine does now and then (docs/recovery.md, "Limits, stated").
// Prints the check's JSON line per run and a tally; exits 1 if any run failed.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, proxy, REPO_ROOT, SECRET, startNginx, startNode, startRedis, tempDataDir, waitUntil } from '../js/lib/harness.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '1' },
    check: { type: 'string', default: path.join(REPO_ROOT, 'tests/docker/cluster-chat.mjs') },
    'slow-node-ms': { type: 'string', default: '0' },
  },
});

/** Debian's HAProxy with deploy/haproxy/haproxy.cfg, its servers rewritten to `nodes`. */
async function startHaproxy(nodes) {
  const port = await freePort();
  let conf = readFileSync(path.join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg'), 'utf8');
  const servers = nodes.map((n, i) => `    server node-${i + 1} 127.0.0.1:${n.port} cookie node-${i + 1}\n`).join('');
  conf = conf.replace(/(# BEGIN switchboard servers\n)[\s\S]*?(\s*# END)/, (_, a, b) => a + servers + b.replace(/^\n/, ''));
  conf = conf.replace('bind :8080\n', `bind 127.0.0.1:${port}\n`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'local-cluster-haproxy-'));
  writeFileSync(path.join(dir, 'haproxy.cfg'), conf);
  const child = spawn('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200,
    { timeout: 20000, every: 100, what: 'haproxy' });
  return {
    url,
    stop() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `docker stop|inspect CONTAINER` for the check: CONTAINER is `sbtest-switchboard-N-1`. */
function dockerShim(nodes) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'local-cluster-docker-'));
  nodes.forEach((n, i) => {
    const name = path.join(dir, `sbtest-switchboard-${i + 1}-1`);
    writeFileSync(`${name}.pid`, String(n.child.pid));
    n.exited.then(({ code }) => {
      try {
        writeFileSync(`${name}.exit`, String(code));
      } catch {
        // The run is over and its shim removed.
      }
    });
  });
  writeFileSync(path.join(dir, 'docker'), `#!/bin/bash
d=$(dirname "$0"); c="$d/\${@: -1}"
case "$1" in
  stop) kill -TERM "$(cat "$c.pid")"; for _ in $(seq 600); do [ -e "$c.exit" ] && exit 0; sleep 0.1; done; exit 1 ;;
  inspect) cat "$c.exit" ;;
  *) exit 2 ;;
esac
`, { mode: 0o755 });
  return dir;
}

async function run() {
  const done = [];
  try {
    const redis = await startRedis();
    done.push(() => redis.stop());
    const slowMs = Number(args['slow-node-ms']);
    const slow = slowMs > 0 ? await proxy(redis.port, { replyDelayMs: slowMs }) : null;
    if (slow) done.push(() => slow.close());
    const dataDir = tempDataDir();
    done.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const nodes = [];
    for (const i of [1, 2, 3]) {
      const port = i === 3 && slow ? slow.port : redis.port;
      // As docker-compose.yml runs them, but for the embedded store (no MongoDB here).
      const env = { REDIS_URL: `redis://127.0.0.1:${port}`, NODE_ID: `switchboard-${i}`, RATE_LIMIT_PER_SEC: '20', SHUTDOWN_GRACE_SECS: '20' };
      const n = await startNode({ dataDir, env, timeout: 30000 });
      done.push(() => n.destroy());
      nodes.push(n);
    }
    const nginx = await startNginx(nodes);
    done.push(() => nginx.stop());
    const haproxy = await startHaproxy(nodes);
    done.push(() => haproxy.stop());
    const shim = dockerShim(nodes);
    done.push(() => rmSync(shim, { recursive: true, force: true }));
    const line = await new Promise((resolve) => {
      const child = spawn('node', [args.check, '--nginx', nginx.url, '--haproxy', haproxy.url, '--secret', SECRET, '--project', 'sbtest'], {
        env: { ...process.env, PATH: `${shim}:${process.env.PATH}` },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.on('exit', () => resolve(out.trim().split('\n').pop() ?? ''));
    });
    console.log(line);
    try {
      return JSON.parse(line);
    } catch {
      return { ok: false, failures: [`no summary: ${line}`] };
    }
  } finally {
    for (const f of done.reverse()) await f();
  }
}

const tally = { runs: 0, failed: 0, lost: 0, duplicated: 0, missedByReplay: 0 };
for (let n = 0; n < Number(args.runs); n++) {
  const s = await run().catch((e) => ({ ok: false, failures: [e.message] }));
  tally.runs++;
  if (!s.ok) tally.failed++;
  for (const k of ['lost', 'duplicated', 'missedByReplay']) tally[k] += s[k] ?? 0;
}
console.log(JSON.stringify(tally));
process.exit(tally.failed ? 1 : 0);
