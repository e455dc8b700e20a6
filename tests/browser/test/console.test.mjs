// The development console (`GET /` with SWITCHBOARD_ENV=development), used in Chromium as a
// newcomer would: two windows, one a user and one staff. One test per thing the console shows,
// an axe-core check, and what production and foreign requests get.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { api, BROWSER_ROOT, launchBrowser, startNginx, startNode, uid, waitUntil, withPages, WAIT } from '../lib/harness.mjs';

const AXE = readFileSync(path.join(BROWSER_ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

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

/** A fresh name per test, so tests never share users. */
const named = (first) => `${first} ${uid('x').slice(-4)}`;
const idOf = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** Opens the console in a new window and signs in as `name` with `role` (user or staff). */
async function signIn(open, name, role, windowName) {
  const page = await open({ name: windowName });
  await page.goto(`${node.url}/`);
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByRole('radio', { name: role === 'user' ? 'User' : 'Staff (admin)' }).check();
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#whoami', { hasText: `Signed in as ${name}` }).waitFor();
  await page.locator('#connection', { hasText: 'online' }).waitFor();
  return page;
}

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

async function send(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
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

/** Runs axe-core in the page; returns its serious and critical violations. */
async function seriousViolations(page) {
  await page.addScriptTag({ content: AXE });
  const results = await page.evaluate(() => window.axe.run(document));
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

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

test('in development a token is minted for a loopback request, not for another origin, a forwarded request, or one through nginx', async () => {
  const mint = (base, headers = {}) => fetch(`${base}/console/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ name: 'Mallory', role: 'admin' }),
  });
  const ok = await mint(node.url);
  assert.equal(ok.status, 200);
  const body = await ok.json();
  assert.deepEqual(body.user, { id: 'mallory', name: 'Mallory', role: 'admin' });
  assert.equal(typeof body.token, 'string');

  const foreign = await mint(node.url, { origin: 'http://evil.example' });
  assert.equal(foreign.status, 403);
  assert.equal((await foreign.json()).error.code, 'FORBIDDEN');
  const forwarded = await mint(node.url, { 'x-forwarded-for': '203.0.113.9' });
  assert.equal(forwarded.status, 403);

  // nginx on this machine forwards a request from anywhere: its peer is loopback, but it says
  // X-Forwarded-For, so nothing is minted through it.
  const nginx = await startNginx([node.port]);
  try {
    const proxied = await mint(nginx.url);
    assert.equal(proxied.status, 403);
  } finally {
    await nginx.stop();
  }
});
