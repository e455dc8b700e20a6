// Browser test harness: Debian's Chromium through playwright-core (never a downloaded browser),
// the test frontend served from its own origin, a real redis-server and nginx (deploy/'s config)
// for cluster tests, and failure artifacts (a screenshot and the console log of every page).
//
// Nodes are started by tests/js/lib/harness.js (the JS client suite's harness): the same binary,
// environment and deadlines. Nothing here sleeps for a fixed time: every wait has a deadline.

import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

import { freePort, REPO_ROOT, waitUntil } from '../../js/lib/harness.js';

export * from '../../js/lib/harness.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BROWSER_ROOT = path.resolve(here, '..');
export const ARTIFACTS = path.join(BROWSER_ROOT, 'artifacts');
export const FIXTURES = path.join(BROWSER_ROOT, 'fixtures');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** How long one browser wait may take; every wait in these tests is bounded by it. */
export const WAIT = 15_000;

/** Every child process this file started, so a crash of the test file still stops them. */
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Launches headless Debian Chromium (as root it needs --no-sandbox). */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: tests/steps/00-setup.sh installs Debian's chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

// ---------------------------------------------------------------------------------------------
// The test frontend's origin

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css' };
const FILES = {
  '/': path.join(BROWSER_ROOT, 'frontend', 'index.html'),
  '/app.js': path.join(BROWSER_ROOT, 'frontend', 'app.js'),
  '/services.js': path.join(BROWSER_ROOT, 'frontend', 'services.js'),
  '/vendor/socket.io.min.js': path.join(BROWSER_ROOT, 'node_modules', 'socket.io-client', 'dist', 'socket.io.min.js'),
};

/**
 * Serves the test frontend on a free port. `origin` (http://localhost:PORT) is the frontend
 * origin the nodes allow; `otherOrigin` (http://127.0.0.1:PORT, the same server under another
 * name) is an origin they do not.
 */
export async function serveFrontend() {
  const server = http.createServer((req, res) => {
    const file = FILES[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    origin: `http://localhost:${port}`,
    otherOrigin: `http://127.0.0.1:${port}`,
    /** The frontend's page URL for `params` (api, token, chat, transports, ...). */
    url(params, origin = `http://localhost:${port}`) {
      return `${origin}/?${new URLSearchParams(params)}`;
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Failure artifacts

/**
 * Pages of one test, with their console logs; on failure, `run` writes a screenshot and the
 * console log of each page to artifacts/<test>/ and names the directory in the error.
 */
export async function withPages(t, browser, run) {
  const contexts = [];
  const pages = [];
  const open = async ({ context, name } = {}) => {
    if (!context) {
      context = await browser.newContext();
      contexts.push(context);
    }
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    const entry = { page, name: name ?? `page-${pages.length + 1}`, log: [] };
    page.on('console', (m) => entry.log.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => entry.log.push(`[pageerror] ${e.stack ?? e}`));
    page.on('requestfailed', (r) => entry.log.push(`[requestfailed] ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
    pages.push(entry);
    return page;
  };
  const newContext = async () => {
    const context = await browser.newContext();
    contexts.push(context);
    return context;
  };
  try {
    await run({ open, newContext, logOf: (page) => pages.find((p) => p.page === page)?.log ?? [] });
  } catch (err) {
    const dir = path.join(ARTIFACTS, t.name.replace(/[^a-zA-Z0-9._-]+/g, '-').slice(0, 120));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const { page, name, log } of pages) {
      try {
        if (!page.isClosed()) await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true, timeout: 5000 });
      } catch (e) {
        log.push(`[harness] screenshot failed: ${e.message}`);
      }
      writeFileSync(path.join(dir, `${name}.console.log`), `${page.isClosed() ? '(closed) ' : page.url()}\n${log.join('\n')}\n`);
    }
    err.message += `\n  artifacts (screenshots, console logs): ${dir}`;
    throw err;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// Redis and nginx

/** A real redis-server on a free loopback port, no persistence. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  children.add(child);
  child.on('exit', () => children.delete(child));
  await waitUntil(() => ping(port), { timeout: 10_000, what: `redis-server on ${port}`, giveUp: () => child.exitCode !== null });
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => stopChild(child),
  };
}

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.setTimeout(1000, () => s.destroy());
    s.on('error', () => resolve(false));
    s.on('data', (d) => {
      resolve(d.toString().startsWith('+PONG'));
      s.end();
    });
    s.on('connect', () => s.write('PING\r\n'));
  });
}

/**
 * Debian's nginx, not daemonized, in a temporary prefix, with deploy/nginx/switchboard.conf as
 * it is but for its upstream list and listen line (as tests/deploy/lb_cluster.py renders it).
 */
export async function startNginx(nodePorts) {
  const port = await freePort();
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'switchboard-browser-nginx-'));
  let conf = readFileSync(path.join(REPO_ROOT, 'deploy/nginx/switchboard.conf'), 'utf8');
  const servers = nodePorts.map((p) => `    server 127.0.0.1:${p} max_fails=3 fail_timeout=10s;\n`).join('');
  const before = conf;
  conf = conf.replace(/(# BEGIN switchboard upstreams\n)[\s\S]*?(\s*# END)/, (_, a, b) => a + servers + b.replace(/^\n/, ''));
  if (conf === before) throw new Error('upstream markers not found in deploy/nginx/switchboard.conf');
  if (!conf.includes('listen 80;')) throw new Error('listen line not found in deploy/nginx/switchboard.conf');
  conf = conf.replace('listen 80;', `listen 127.0.0.1:${port};`);
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
  const check = spawnSync('nginx', ['-t', '-p', prefix, '-c', main, '-e', path.join(prefix, 'error.log')], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`nginx -t failed: ${check.stderr}`);
  const child = spawn('nginx', ['-p', prefix, '-c', main, '-e', path.join(prefix, 'error.log'), '-g', 'daemon off;'], { stdio: 'ignore' });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200, {
    timeout: 15_000,
    what: 'nginx in front of the nodes',
    giveUp: () => child.exitCode !== null,
  });
  return {
    url,
    port,
    stop: async () => {
      await stopChild(child);
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// Page helpers

/** Waits until the test frontend on `page` has connected its socket. */
export async function connected(page) {
  await page.waitForFunction(() => window.app?.connected === true, null, { timeout: WAIT });
}

/** Waits until `page` shows a message whose content is `content`; returns its <li> locator. */
export async function shows(page, content) {
  const item = page.locator('#messages li', { has: page.locator('.content', { hasText: content }) });
  await item.first().waitFor({ timeout: WAIT });
  return item;
}

/** The contents the page shows, in order. */
export function shownContents(page) {
  return page.locator('#messages li .content').allTextContents();
}
