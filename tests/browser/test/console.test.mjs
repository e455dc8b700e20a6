// The development console (`GET /` with SWITCHBOARD_ENV=development), used in Chromium as a
// newcomer would: two windows, one a user and one staff. One test per thing the console shows,
// an axe-core check, and what production and foreign requests get.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { consoleCode, idOf, named, send, seriousViolations, signIn as signInAt } from '../lib/console.mjs';
import { api, BINARY, launchBrowser, startNginx, startNode, waitUntil, withPages, WAIT } from '../lib/harness.mjs';

let browser;
let node;

before(async () => {
  // SWITCHBOARD_ENV is not set: development, the default.
  node = await startNode({ env: { NODE_ID: 'console-node' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await node?.destroy();
});

/** Opens this file's node's console (or `at`'s) in a new window and signs in. */
const signIn = (open, name, role, windowName, { at = node, code } = {}) => signInAt(open, name, role, windowName, { at, code: code ?? consoleCode(at) });

/** A user window with a chat open, and a staff window that has opened the same chat. */
async function chatting(open) {
  const userName = named('Alice');
  const staffName = named('Bob');
  const user = await signIn(open, userName, 'user', 'user-window');
  await user.getByRole('button', { name: 'Open a support chat' }).click();
  await user.locator('#chat-title', { hasText: `Support for ${userName}` }).waitFor();
  const staff = await signIn(open, staffName, 'staff', 'staff-window');
  await staff.getByRole('button', { name: new RegExp(`Support for ${userName}`) }).click();
  await staff.locator('#chat-title', { hasText: `Support for ${userName}` }).waitFor();
  return { user, staff, userName, staffName };
}

const message = (page, text) => page.locator('#messages li', { hasText: text });

test('console: signing in shows who you are, your role and the node', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const name = named('Carla');
    const page = await signIn(open, name, 'staff', 'staff-window');
    assert.equal(await page.locator('#whoami').textContent(), `Signed in as ${name} (${idOf(name)}, staff) on node console-node`);
    // A reload keeps this window's identity.
    await page.reload();
    await page.locator('#whoami', { hasText: `Signed in as ${name}` }).waitFor();
  });
});

test('console: a user opens a support chat and staff find it in their chat list', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { staff, userName } = await chatting(open);
    await staff.locator('#chat-list button[aria-current="true"]', { hasText: idOf(userName) }).waitFor();
  });
});

test('console: messages go both ways between a user window and a staff window', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { user, staff, userName } = await chatting(open);
    await send(user, 'Hello, my order is late');
    await message(staff, 'Hello, my order is late').locator('.sender', { hasText: userName }).waitFor();
    await send(staff, 'Let me look into it');
    await message(user, 'Let me look into it').waitFor();
    await message(user, 'Hello, my order is late').locator('.sender', { hasText: 'You' }).waitFor();
  });
});

test('console: typing in one window shows "is typing" in the other, and it ends', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { user, staff, staffName } = await chatting(open);
    await staff.getByLabel('Message', { exact: true }).pressSequentially('typing', { delay: 20 });
    await user.locator('#typing', { hasText: `${staffName} is typing` }).waitFor();
    await staff.getByRole('button', { name: 'Send', exact: true }).click();
    await user.waitForFunction(() => document.getElementById('typing').textContent === '', null, { timeout: WAIT });
  });
});

test('console: the sender sees its message read once the other window shows it', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { user, staff } = await chatting(open);
    await send(user, 'Is anyone there?');
    const status = message(user, 'Is anyone there?').locator('.status');
    await status.waitFor();
    assert.match(await status.getAttribute('data-status'), /^(sent|delivered|read)$/);
    await message(staff, 'Is anyone there?').waitFor();
    await message(user, 'Is anyone there?').locator('.status[data-status="read"]', { hasText: '✓✓ read' }).waitFor();
  });
});

test('console: a message sent while the other window is closed shows as sent, then read when it opens the chat', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { user, staff, userName } = await chatting(open);
    const staffToken = await staff.evaluate(() => JSON.parse(sessionStorage.getItem('switchboard-console')).token);
    await staff.close();
    // Sent once no staff socket is left anywhere (earlier tests' windows included): nobody
    // can have received it.
    await waitUntil(async () => {
      const res = await api(node, 'GET', '/api/socket/active-users?limit=500', { token: staffToken });
      return res.status === 200 && res.body.activeUsers.every((s) => s.userRole === 'user');
    }, { timeout: WAIT, what: 'every staff socket gone' });
    await send(user, 'Anyone?');
    await message(user, 'Anyone?').locator('.status[data-status="sent"]', { hasText: '✓ sent' }).waitFor();
    const again = await signIn(open, named('Dora'), 'staff', 'staff-window-2');
    await again.getByRole('button', { name: new RegExp(`Support for ${userName}`) }).click();
    await message(again, 'Anyone?').waitFor();
    await message(user, 'Anyone?').locator('.status[data-status="read"]').waitFor();
  });
});

test('console: staff send a report message, the user window shows it live and marks it read', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { user, staff, userName } = await chatting(open);
    // Opening the chat filled in its user as the report's recipient.
    await staff.waitForFunction((id) => document.getElementById('report-user').value === id, idOf(userName), { timeout: WAIT });
    await staff.getByLabel('Title', { exact: true }).fill('Order 42 shipped');
    await staff.getByLabel('Status', { exact: true }).selectOption('Warning');
    await staff.getByRole('button', { name: 'Send report' }).click();
    await staff.locator('#report-result', { hasText: `Report sent to ${idOf(userName)}` }).waitFor();
    const report = user.locator('#report-list li', { hasText: 'Warning: Order 42 shipped' });
    await report.waitFor();
    await report.getByRole('button', { name: 'Mark read' }).click();
    await report.locator('.status', { hasText: 'read' }).waitFor();
  });
});

test('console: staff see who is online and on which node', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { staff, userName, staffName } = await chatting(open);
    for (const [name, role] of [[userName, 'user'], [staffName, 'admin']]) {
      const row = staff.locator(`#online-table tr[data-user="${idOf(name)}"]`);
      await row.waitFor();
      assert.deepEqual(await row.locator('td').allTextContents(), [idOf(name), name, role, 'console-node']);
    }
  });
});

test('console: the user window says the online list is for staff', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = await signIn(open, named('Emil'), 'user', 'user-window');
    await user.locator('#online-note', { hasText: 'for staff' }).waitFor();
    assert.equal(await user.locator('#online-table').isHidden(), true);
  });
});

test('console: axe-core finds no serious or critical accessibility violations (sign-in, user and staff views)', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    // axe is injected as an inline script, which the console's CSP forbids: bypass it here.
    const context = await browser.newContext({ bypassCSP: true });
    try {
      const signin = await context.newPage();
      await signin.goto(`${node.url}/`);
      assert.deepEqual(await seriousViolations(signin), [], 'sign-in view');
      const openInAxeContext = ({ name }) => open({ context, name });
      const { user, staff } = await chatting(openInAxeContext);
      await send(user, 'accessible?');
      await message(staff, 'accessible?').waitFor();
      await staff.locator('#online-table tr[data-user]').first().waitFor();
      assert.deepEqual(await seriousViolations(user), [], 'user view');
      assert.deepEqual(await seriousViolations(staff), [], 'staff view');
    } finally {
      await context.close();
    }
  });
});

test('in production GET / and every console route are 404, and no token is minted over HTTP', async () => {
  const prod = await startNode({ env: { SWITCHBOARD_ENV: 'production' } });
  try {
    for (const route of ['/', '/console/console.js', '/console/console.css', '/console/socket.io.min.js']) {
      const res = await fetch(prod.url + route);
      assert.equal(res.status, 404, route);
    }
    const mint = await fetch(`${prod.url}/console/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Mallory', role: 'admin' }),
    });
    assert.equal(mint.status, 404);
    assert.equal((await mint.json()).error.code, 'NOT_FOUND');
  } finally {
    await prod.destroy();
  }
});

test('in development a token is minted only with the console code, from this machine, not forwarded', async () => {
  // A node of its own: the wrong codes below shut its console.
  const dev = await startNode({ env: { NODE_ID: 'mint-node' } });
  const mint = (base, { headers = {}, code = consoleCode(dev) } = {}) => fetch(`${base}/console/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ name: 'Mallory', role: 'admin', ...(code === null ? {} : { code }) }),
  });
  try {
    const ok = await mint(dev.url);
    assert.equal(ok.status, 200);
    const body = await ok.json();
    assert.deepEqual(body.user, { id: 'mallory', name: 'Mallory', role: 'admin' });
    assert.equal(typeof body.token, 'string');

    // Any process on this machine can reach the node from loopback: without the code, nothing.
    const noCode = await mint(dev.url, { code: null });
    assert.equal(noCode.status, 403);
    assert.match((await noCode.json()).error.message, /console code/);

    const foreign = await mint(dev.url, { headers: { origin: 'http://evil.example' } });
    assert.equal(foreign.status, 403);
    assert.equal((await foreign.json()).error.code, 'FORBIDDEN');
    for (const header of ['x-forwarded-for', 'x-forwarded-host', 'x-envoy-external-address', 'forwarded', 'via']) {
      const forwarded = await mint(dev.url, { headers: { [header]: '203.0.113.9' } });
      assert.equal(forwarded.status, 403, header);
    }

    // nginx on this machine forwards a request from anywhere: even with its default headers
    // only (no X-Forwarded-For) and `Host: localhost`, it is refused without the code...
    const nginx = await startNginx([dev.port]);
    try {
      const proxied = await mint(nginx.url, { code: 'ABCD-EFGH-JKMN', headers: { host: 'localhost' } });
      assert.equal(proxied.status, 403);
    } finally {
      await nginx.stop();
    }

    // ...and ten wrong codes shut the console until the node restarts with a new code.
    for (let i = 0; i < 10; i += 1) assert.equal((await mint(dev.url, { code: 'WRONG' })).status, 403);
    const shut = await mint(dev.url);
    assert.equal(shut.status, 403);
    assert.match((await shut.json()).error.message, /restart the node/);
  } finally {
    await dev.destroy();
  }
});

/** Starts the binary exactly as the README's `cargo run --release`: no variables at all (the
 *  default 0.0.0.0:5001, `./data` in its working directory); returns it with its log. */
async function startAsTheReadmeDoes() {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'switchboard-readme-'));
  // The README's port must be free (nothing else on this machine listens there).
  const taken = await new Promise((resolve) => {
    const probe = net.connect(5001, '127.0.0.1');
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
  assert.equal(taken, false, 'port 5001 (the README default) is taken on this machine');
  const child = spawn(BINARY, [], { cwd, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (c) => { log += c; });
  child.stderr.on('data', (c) => { log += c; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(cwd, { recursive: true, force: true });
  };
  try {
    await waitUntil(async () => (await fetch('http://127.0.0.1:5001/healthz', { signal: AbortSignal.timeout(1000) })).ok,
      { timeout: 20000, what: 'the README node on port 5001' });
  } catch (e) {
    await stop();
    throw new Error(`${e.message}\n${log}`);
  }
  return { url: 'http://localhost:5001', log: () => log, stop };
}

test('the README\'s first minutes: a node started with no settings, two console windows chat', async (t) => {
  const readme = await startAsTheReadmeDoes();
  try {
    // The code, as the newcomer reads it off the node's log.
    const code = readme.log().match(/"console_code":"([A-Z0-9-]+)"/)?.[1];
    assert.ok(code, `the log shows the console code:\n${readme.log()}`);
    await withPages(t, browser, async ({ open }) => {
      const user = await signIn(open, 'Alice', 'user', 'user-window', { at: readme, code });
      await user.getByRole('button', { name: 'Open a support chat' }).click();
      await user.locator('#chat-title', { hasText: 'Support for Alice' }).waitFor();
      const staff = await signIn(open, 'Bob', 'staff', 'staff-window', { at: readme, code });
      await staff.getByRole('button', { name: /Support for Alice/ }).click();
      await send(user, 'Hello from the README');
      await message(staff, 'Hello from the README').waitFor();
      await send(staff, 'Hello Alice');
      await message(user, 'Hello Alice').waitFor();
    });
  } finally {
    await readme.stop();
  }
});
