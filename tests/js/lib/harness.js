// Test harness for the socket.io-client suite: starts real `switchboard` nodes on free ports
// with fresh data directories (and, for cluster tests, a real redis-server and nginx in front),
// signs tokens, wraps sockets with an event recorder, cuts connections through a TCP proxy, and
// calls the REST API. Nothing here sleeps for a fixed time: every wait is for an event or a condition,
// with a deadline.
//
// This file lives outside test/ on purpose: `node --test test/` runs every .js file there.

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
export const BINARY = process.env.SWITCHBOARD_BIN ?? path.join(REPO_ROOT, 'target', 'debug', 'switchboard');
export const SECRET = 'js-client-tests-secret-0123456789';

/** Every process this file started, so a crash of the test file still stops them. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A short unique suffix, so every test has its own users and data. */
export function uid(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** A port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `check` (sync or async) until it returns a truthy value or `timeout` ms pass. */
export async function waitUntil(check, { timeout = 5000, every = 25, what = 'condition', giveUp = () => false } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    if (giveUp()) throw new Error(`gave up waiting for ${what}`);
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A running switchboard process. */
export class Node {
  constructor(child, port, dataDir, ownsDataDir) {
    this.child = child;
    this.port = port;
    this.dataDir = dataDir;
    this.ownsDataDir = ownsDataDir;
    this.url = `http://127.0.0.1:${port}`;
    this.logs = '';
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
    });
    const keep = (chunk) => {
      this.logs += chunk;
      if (this.logs.length > 200_000) this.logs = this.logs.slice(-100_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
  }

  get alive() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM: the node drains and exits; resolves with its exit status. */
  async stop(timeout = 15000) {
    if (!this.alive) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeout);
    const status = await this.exited;
    clearTimeout(timer);
    return status;
  }

  /** Stops the node (hard) and removes its data directory if the harness made it. */
  async destroy() {
    if (this.alive && this.child.pid !== undefined) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    if (this.ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A fresh temporary data directory. */
export function tempDataDir() {
  return mkdtempSync(path.join(os.tmpdir(), 'switchboard-js-'));
}

/**
 * Starts a node and waits (with a deadline) until `/healthz` answers.
 * `dataDir` reuses a directory (restart); otherwise a fresh one is made and removed by destroy().
 */
export async function startNode({ dataDir, port, env = {}, timeout = 20000 } = {}) {
  const ownsDataDir = !dataDir;
  dataDir ??= tempDataDir();
  port ??= await freePort();
  const child = spawn(BINARY, [], {
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      JWT_SECRET: SECRET,
      RATE_LIMIT_PER_SEC: '100',
      CORS_ORIGINS: '*',
      LOG_FORMAT: 'json',
      RUST_LOG: 'warn',
      SHUTDOWN_GRACE_SECS: '5',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let gone = false;
  const spawnFailed = new Promise((_, reject) => child.once('error', (e) => {
    gone = true;
    reject(new Error(`cannot start ${BINARY}: ${e.message}`));
  }));
  const node = new Node(child, port, dataDir, ownsDataDir);
  const died = node.exited.then(({ code, signal }) => {
    throw new Error(`switchboard exited during start-up (code ${code}, signal ${signal}):\n${node.logs}`);
  });
  const up = waitUntil(
    async () => (await fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(1000) })).ok,
    { timeout, every: 50, what: `/healthz on port ${port}`, giveUp: () => gone || !node.alive },
  );
  up.catch(() => {});
  try {
    await Promise.race([up, died, spawnFailed]);
  } catch (e) {
    await node.destroy();
    throw e;
  }
  died.catch(() => {}); // later exits are expected (stop, restart)
  spawnFailed.catch(() => {});
  return node;
}

// ---------------------------------------------------------------------------------------------
// Tokens

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Signs a JWT with HS256 (or the given header), exactly as another service would. */
export function signJwt(payload, { secret = SECRET, header = { alg: 'HS256', typ: 'JWT' } } = {}) {
  const head = `${b64url(header)}.${b64url(payload)}`;
  const sig = createHmac('sha256', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

/** A valid token for `id` with `role`; `exp` one hour ahead unless given. */
export function token(id, role = 'user', { name, exp, secret } = {}) {
  const claims = { id, role, exp: exp ?? Math.floor(Date.now() / 1000) + 3600 };
  if (name !== undefined) claims.name = name;
  return signJwt(claims, { secret });
}

/** A user: id, role, name and token. */
export function makeUser(prefix, role = 'user') {
  const id = uid(prefix);
  const name = `${prefix[0].toUpperCase()}${prefix.slice(1)} ${id.slice(-4)}`;
  return { id, role, name, token: token(id, role, { name }) };
}

// ---------------------------------------------------------------------------------------------
// REST

/** Calls the REST API; `body` objects are sent as JSON, strings/FormData as they are. */
export async function api(node, method, route, { user, token: tok, body, headers = {} } = {}) {
  const h = { ...headers };
  const bearer = tok ?? user?.token;
  if (bearer) h.authorization = `Bearer ${bearer}`;
  let payload = body;
  if (body !== undefined && typeof body === 'object' && !(body instanceof FormData) && !(body instanceof Uint8Array)) {
    payload = JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(node.url + route, { method, headers: h, body: payload, signal: AbortSignal.timeout(15000) });
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, body: json, text, headers: res.headers };
}

/** Opens a support chat for `user` (as the user) and returns it. */
export async function openChat(node, user, body = {}) {
  const res = await api(node, 'POST', '/api/chats', { user, body });
  if (res.status !== 201) throw new Error(`POST /api/chats: ${res.status} ${res.text}`);
  return res.body;
}

/** A chat's full history, oldest first, through the REST API. */
export async function history(node, user, chatId) {
  const res = await api(node, 'GET', `/api/chats/${chatId}/messages?afterSeq=0&limit=100`, { user });
  if (res.status !== 200) throw new Error(`history: ${res.status} ${res.text}`);
  return res.body.messages;
}

// ---------------------------------------------------------------------------------------------
// Sockets

/** A connected socket that records every event it receives. */
export class Client {
  constructor(socket, user) {
    this.socket = socket;
    this.user = user;
    /** Every event received, in order: `{ event, data }`. */
    this.events = [];
    this.waiters = [];
    socket.onAny((event, ...args) => {
      const rec = { event, data: args[0], args, used: false };
      this.events.push(rec);
      this.waiters = this.waiters.filter((w) => {
        if (rec.used || w.event !== event || !w.pred(rec.data)) return true;
        rec.used = true;
        w.resolve(rec.data);
        return false;
      });
    });
  }

  get connected() {
    return this.socket.connected;
  }

  /** Resolves with the next not yet consumed `event` whose payload passes `pred`. */
  waitFor(event, pred = () => true, timeout = 5000) {
    const rec = this.events.find((r) => !r.used && r.event === event && pred(r.data));
    if (rec) {
      rec.used = true;
      return Promise.resolve(rec.data);
    }
    return new Promise((resolve, reject) => {
      const w = { event, pred, resolve };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.user?.id ?? 'socket'}: no '${event}' within ${timeout} ms; got ${this.describe()}`));
      }, timeout);
      w.resolve = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      this.waiters.push(w);
    });
  }

  /** Every received `event` whose payload passes `pred` (consumed or not). */
  received(event, pred = () => true) {
    return this.events.filter((r) => r.event === event && pred(r.data)).map((r) => r.data);
  }

  /**
   * Waits for everything already on its way to this socket, then forgets every event received
   * so far: waitFor and received only see what the server sends from now on.
   */
  async reset() {
    await this.barrier();
    this.events.length = 0;
  }

  describe() {
    return JSON.stringify(this.events.map((r) => r.event));
  }

  /** Emits with an acknowledgement and resolves with the ack body. */
  ack(event, ...args) {
    return this.socket.timeout(5000).emitWithAck(event, ...args);
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /**
   * A round trip through the server: everything the server emitted to this socket before it
   * handled this call has arrived once it resolves (one socket's packets keep their order).
   */
  async barrier() {
    const res = await this.ack('joinUserRoom', this.user.id);
    if (!res?.ok) throw new Error(`barrier failed: ${JSON.stringify(res)}`);
  }

  close() {
    this.socket.disconnect();
  }
}

/** Connects with `auth` (a user, a token string, or a raw auth object); rejects on connect_error. */
export function connect(node, who, { transports = ['websocket'], timeout = 5000, ...opts } = {}) {
  const user = typeof who === 'object' && who?.token && who?.id ? who : undefined;
  const auth = user ? { token: user.token } : typeof who === 'string' ? { token: who } : who;
  const socket = io(node.url, {
    auth,
    transports,
    reconnection: false,
    forceNew: true,
    timeout,
    ...opts,
  });
  const client = new Client(socket, user);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error('connect timed out'));
    }, timeout + 1000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(client);
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      socket.disconnect();
      reject(err);
    });
  });
}

/** Connects expecting a refusal; resolves with the connect_error. */
export async function connectRefused(node, who, opts) {
  try {
    const c = await connect(node, who, opts);
    c.close();
  } catch (err) {
    return err;
  }
  throw new Error('the connection was accepted');
}

// ---------------------------------------------------------------------------------------------
// Shapes

export const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$/;

export function isTimestamp(v) {
  return typeof v === 'string' && RFC3339_UTC.test(v) && !Number.isNaN(Date.parse(v));
}

export const OBJECT_ID = /^[0-9a-f]{24}$/;


// ---------------------------------------------------------------------------------------------
// Frontends: socket.io-client as an unchanged frontend opens it (reconnection on)

/**
 * A socket as a frontend opens it: reconnection on, listeners only. `opts` go to `io()` (the
 * recovery tests on one node use a fast back-off; the cluster tests keep socket.io's defaults).
 */
export function frontend(url, user, opts = {}) {
  const socket = io(url, {
    auth: { token: user.token },
    transports: ['websocket'],
    forceNew: true,
    ...opts,
  });
  return new Client(socket, user);
}

/** Resolves once `client` is connected (at once if it is). */
export function connected(client, timeout = 10000) {
  if (client.socket.connected) return Promise.resolve();
  return nextConnect(client, timeout);
}

/** Resolves on `client`'s next `connect` (a reconnection); rejects after `timeout` ms. */
export function nextConnect(client, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no (re)connect within ${timeout} ms`)), timeout);
    client.socket.once('connect', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Resolves with the reason of `client`'s next `disconnect`. */
export function disconnected(client) {
  return new Promise((resolve) => client.socket.once('disconnect', resolve));
}

/** The seqs of the message:new events a client received for `chatId`, in arrival order. */
export function seqs(client, chatId) {
  return client.received('message:new', (d) => d.chatId === chatId).map((d) => d.message.seq);
}

/**
 * A TCP proxy to `port` that can cut its connections and hold new ones back; with
 * `replyDelayMs`, what the server sends back reaches the client that much later (order kept).
 */
export async function proxy(port, { replyDelayMs = 0 } = {}) {
  const open = new Set();
  let holding = false;
  const server = net.createServer((down) => {
    if (holding) {
      down.destroy();
      return;
    }
    const up = net.connect(port, '127.0.0.1');
    open.add(down);
    open.add(up);
    const drop = () => {
      down.destroy();
      up.destroy();
      open.delete(down);
      open.delete(up);
    };
    down.on('error', drop).on('close', drop);
    up.on('error', drop).on('close', drop);
    down.pipe(up);
    if (replyDelayMs > 0) up.on('data', (chunk) => setTimeout(() => down.writable && down.write(chunk), replyDelayMs));
    else up.pipe(down);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    url: `http://127.0.0.1:${server.address().port}`,
    /** Cuts every connection through the proxy (both sides). */
    cut() {
      for (const s of open) s.destroy();
      open.clear();
    },
    /** New connections are closed at once until release(). */
    hold() {
      holding = true;
    },
    release() {
      holding = false;
    },
    close() {
      this.cut();
      server.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Cluster: a real redis-server, and nginx with the repository's config in front of the nodes

/** A started child process that is killed when the test file ends. */
function track(child) {
  running.add(child);
  child.on('exit', () => running.delete(child));
  return child;
}

/** Starts a throwaway redis-server (no persistence) on a free port; resolves once it answers. */
export async function startRedis() {
  const port = await freePort();
  const child = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await waitUntil(() => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => resolve(false));
    c.on('data', (d) => {
      c.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    c.on('connect', () => c.write('PING\r\n'));
  }), { timeout: 10000, every: 50, what: `redis-server on port ${port}`, giveUp: () => child.exitCode !== null });
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/**
 * Starts nginx (not daemonized, in a temporary prefix) with deploy/nginx/switchboard.conf, its
 * upstreams rewritten to `nodes` and its listen line to a free loopback port, as
 * tests/deploy/lb_cluster.py does; resolves once `/healthz` answers through it.
 */
export async function startNginx(nodes) {
  const port = await freePort();
  let conf = readFileSync(path.join(REPO_ROOT, 'deploy', 'nginx', 'switchboard.conf'), 'utf8');
  const servers = nodes.map((n) => `    server 127.0.0.1:${n.port} max_fails=3 fail_timeout=10s;\n`).join('');
  const upstreams = /(# BEGIN switchboard upstreams\n)[\s\S]*?(\s*# END)/;
  if (!upstreams.test(conf)) throw new Error('upstream markers not found in deploy/nginx/switchboard.conf');
  conf = conf.replace(upstreams, (_, begin, end) => begin + servers + end.replace(/^\n/, ''));
  if (!conf.includes('listen 80;')) throw new Error('listen line not found in deploy/nginx/switchboard.conf');
  conf = conf.replace('listen 80;', `listen 127.0.0.1:${port};`);
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'switchboard-nginx-'));
  chmodSync(prefix, 0o777);
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(prefix, d));
  writeFileSync(path.join(prefix, 'switchboard.conf'), conf);
  const main = path.join(prefix, 'nginx.conf');
  writeFileSync(main, `worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log info;
events { worker_connections 1024; }
http {
    access_log ${prefix}/access.log;
    client_body_temp_path ${prefix}/body;
    proxy_temp_path ${prefix}/proxy;
    fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi;
    scgi_temp_path ${prefix}/scgi;
    include ${prefix}/switchboard.conf;
}
`);
  const child = track(spawn('nginx', ['-p', prefix, '-c', main, '-e', path.join(prefix, 'error.log'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  }));
  let logs = '';
  child.stdout.on('data', (c) => { logs += c; });
  child.stderr.on('data', (c) => { logs += c; });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) })).ok, {
    timeout: 10000, every: 50, what: `nginx on port ${port}`, giveUp: () => child.exitCode !== null,
  }).catch((e) => {
    throw new Error(`${e.message}\n${logs}`);
  });
  return {
    port,
    url,
    prefix,
    /** nginx's error log (upstream failures and retries show there). */
    errorLog: () => readFileSync(path.join(prefix, 'error.log'), 'utf8'),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

/** How many sockets `node` holds now (its `switchboard_sockets_connected` gauge). */
export async function socketsOn(node) {
  const text = await (await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const m = text.match(/^switchboard_sockets_connected(?:\{[^}]*\})? (\d+)/m);
  return m ? Number(m[1]) : 0;
}
