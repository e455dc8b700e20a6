// The soak's real services: a Redis Sentinel group (a primary, a replica, three Sentinels), the
// MongoDB-wire server (secantusd-py), three switchboard nodes, and a TCP load balancer in front
// of the nodes that can cut client connections. Every process is killed when the soak exits.
// Nothing waits for a fixed time: every wait is for a condition, with a deadline.

import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, startNode, waitUntil } from '../../js/lib/harness.js';

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGCONT');
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** `redis-cli -p port args...` with a 3 s bound; its output, or '' when it failed. */
export function cli(port, ...args) {
  return new Promise((resolve) => {
    execFile('timeout', ['3', 'redis-cli', '-h', '127.0.0.1', '-p', String(port), ...args], (err, stdout) => {
      resolve(err ? '' : stdout);
    });
  });
}

/** Is something answering on this loopback port? */
function listening(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/** A redis-server on `port` (no persistence), optionally a replica; resolves once it answers. */
async function redisServer(port, dir, extra = []) {
  const child = track(spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--protected-mode', 'no', '--dir', dir, ...extra,
  ], { stdio: 'ignore' }));
  await waitUntil(async () => (await cli(port, 'PING')).startsWith('PONG'), {
    timeout: 10000, every: 50, what: `redis-server on ${port}`, giveUp: () => child.exitCode !== null,
  });
  return child;
}

const SERVICE = 'chaosprimary';

/**
 * The Sentinel group. `failOver()` kills the current primary (SIGKILL), waits until the
 * Sentinels promote the replica, and starts the killed server again as a replica, so the next
 * failover has somewhere to go.
 */
export async function startSentinelGroup() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-chaos-redis-'));
  const servers = [];
  for (const role of ['a', 'b']) {
    const port = await freePort();
    const d = path.join(dir, role);
    mkdirSync(d);
    servers.push({ port, dir: d, child: null });
  }
  servers[0].child = await redisServer(servers[0].port, servers[0].dir);
  servers[1].child = await redisServer(servers[1].port, servers[1].dir, ['--replicaof', '127.0.0.1', String(servers[0].port)]);
  const sentinels = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const conf = path.join(dir, `sentinel-${i}.conf`);
    writeFileSync(conf, `port ${port}\nbind 127.0.0.1\nprotected-mode no\ndir ${dir}\n`
      + `sentinel monitor ${SERVICE} 127.0.0.1 ${servers[0].port} 2\n`
      + `sentinel down-after-milliseconds ${SERVICE} 1000\n`
      + `sentinel failover-timeout ${SERVICE} 2000\n`
      + `sentinel parallel-syncs ${SERVICE} 1\n`);
    const child = track(spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }));
    sentinels.push({ port, child });
  }
  const field = (reply, name) => {
    const l = reply.split('\n').map((s) => s.trim());
    const i = l.indexOf(name);
    return i >= 0 ? l[i + 1] : undefined;
  };
  await waitUntil(async () => {
    for (const s of sentinels) {
      const m = await cli(s.port, 'SENTINEL', 'MASTER', SERVICE);
      if (field(m, 'num-slaves') !== '1' || field(m, 'num-other-sentinels') !== '2') return false;
    }
    return true;
  }, { timeout: 30000, every: 200, what: 'the Sentinels to find each other and the replica' });
  const primaryPort = async () => {
    const out = await cli(sentinels[0].port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SERVICE);
    return Number(out.split('\n')[1]);
  };
  const url = `redis-sentinel://127.0.0.1:${sentinels[0].port}?sentinelServiceName=${SERVICE}`
    + sentinels.slice(1).map((s) => `&node=127.0.0.1:${s.port}`).join('');
  return {
    url,
    primaryPort,
    async failOver() {
      const port = await primaryPort();
      const old = servers.find((s) => s.port === port);
      const other = servers.find((s) => s !== old);
      old.child.kill('SIGKILL');
      await new Promise((r) => (old.child.exitCode !== null || old.child.signalCode ? r() : old.child.once('exit', r)));
      await waitUntil(async () => (await primaryPort()) === other.port
        && (await cli(other.port, 'INFO', 'replication')).includes('role:master'), {
        timeout: 30000, every: 200, what: 'the Sentinels to promote the replica',
      });
      old.child = await redisServer(old.port, old.dir, ['--replicaof', '127.0.0.1', String(other.port)]);
      await waitUntil(async () => (await cli(old.port, 'INFO', 'replication')).includes('master_link_status:up'), {
        timeout: 30000, every: 200, what: 'the old primary to follow the new one',
      });
    },
    stop() {
      for (const s of [...servers, ...sentinels]) s.child?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** secantusd-py on a free port with its own storage; `pause()`/`resume()` stall it (SIGSTOP/SIGCONT). */
export async function startMongo() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'switchboard-chaos-mongo-'));
  const port = await freePort();
  const child = track(spawn('secantusd-py', [
    '--host', '127.0.0.1', '--port', String(port), '--storage-path', path.join(dir, 'db'), '--log-level', 'WARNING',
  ], { stdio: 'ignore' }));
  await waitUntil(() => listening(port), {
    timeout: 60000, every: 100, what: `secantusd-py on ${port}`, giveUp: () => child.exitCode !== null,
  });
  return {
    uri: `mongodb://127.0.0.1:${port}/?directConnection=true&retryWrites=false`,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    stop() {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A switchboard node slot: a port, a data directory and a NODE_ID that survive restarts.
 * `signal()` sends a fault; `start()` brings it back on the same port.
 */
export class NodeSlot {
  constructor(name, env) {
    this.name = name;
    this.env = env;
    this.node = null;
    this.port = null;
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), `switchboard-chaos-${name}-`));
    this.paused = false;
  }

  get alive() {
    return Boolean(this.node?.alive);
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ??= await freePort();
    if (this.node) this.pastLogs = `${this.pastLogs ?? ''}${this.node.logs}\n--- ${this.name} restarted ---\n`;
    this.node = await startNode({ port: this.port, dataDir: this.dataDir, env: { NODE_ID: this.name, ...this.env }, timeout: 30000 });
    track(this.node.child);
    this.paused = false;
  }

  /** SIGKILL, SIGTERM (and waits for the drain's exit), SIGSTOP or SIGCONT. */
  async signal(sig) {
    if (!this.node?.alive) return;
    if (sig === 'SIGSTOP') this.paused = true;
    if (sig === 'SIGCONT') this.paused = false;
    this.node.child.kill(sig);
    if (sig === 'SIGKILL' || sig === 'SIGTERM') {
      const status = await Promise.race([this.node.exited, new Promise((r) => setTimeout(r, 30000, null))]);
      if (!status) {
        this.node.child.kill('SIGKILL');
        await this.node.exited;
        throw new Error(`${this.name} did not exit within 30 s of ${sig}`);
      }
      if (sig === 'SIGTERM' && status.code !== 0) throw new Error(`${this.name} drained with status ${JSON.stringify(status)}`);
    }
  }

  /** Its resident memory in bytes (process_resident_memory_bytes, or /proc). */
  async rss() {
    try {
      const status = readFileSync(`/proc/${this.node.child.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) * 1024;
    } catch {
      return NaN;
    }
  }

  destroy() {
    if (this.node?.alive) {
      this.node.child.kill('SIGCONT');
      this.node.child.kill('SIGKILL');
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A TCP load balancer on a loopback port: each new connection goes to the next live, unpaused
 * node (as a load balancer with health checks would; WebSocket-only clients need no
 * stickiness). `cut(fraction, pick)` destroys that share of the client connections.
 */
export async function startBalancer(slots) {
  const open = new Set();
  let next = 0;
  const server = net.createServer((down) => {
    const live = slots.filter((s) => s.alive && !s.paused && s.port);
    if (live.length === 0) {
      down.destroy();
      return;
    }
    const slot = live[next++ % live.length];
    const up = net.connect(slot.port, '127.0.0.1');
    const pair = { down, up };
    open.add(pair);
    const drop = () => {
      down.destroy();
      up.destroy();
      open.delete(pair);
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    /** Cuts every connection for which `pick()` (the soak's seeded draw) says so; returns how many. */
    cut(pick) {
      let n = 0;
      for (const p of [...open]) {
        if (!pick()) continue;
        p.down.destroy();
        p.up.destroy();
        open.delete(p);
        n++;
      }
      return n;
    },
    close() {
      for (const p of open) {
        p.down.destroy();
        p.up.destroy();
      }
      server.close();
    },
  };
}
