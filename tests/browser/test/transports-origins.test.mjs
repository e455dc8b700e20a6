// Chromium connects the test frontend (its own origin) to a real node: long-polling then the
// WebSocket upgrade, WebSocket only, and what the browser does with an origin CORS_ORIGINS does
// not list.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { connected, launchBrowser, makeUser, openChat, serveFrontend, startNode, withPages, WAIT } from '../lib/harness.mjs';

let browser;
let frontend;
let node;

before(async () => {
  frontend = await serveFrontend();
  node = await startNode({ env: { CORS_ORIGINS: frontend.origin } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await node?.destroy();
  await frontend?.close();
});

/** Engine.IO requests the page made, by transport. */
function engineRequests(page) {
  const seen = { polling: 0, websocket: 0 };
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/socket.io/') seen[u.searchParams.get('transport')] += 1;
  });
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).pathname === '/socket.io/') seen.websocket += 1;
  });
  return seen;
}

test('the default transports connect over long-polling, then upgrade to WebSocket', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('alice');
    const page = await open({ name: 'user' });
    const seen = engineRequests(page);
    await page.goto(frontend.url({ api: node.url, token: user.token }));
    await connected(page);
    await page.waitForFunction(() => window.app.transports.join('>') === 'polling>websocket', null, { timeout: WAIT });
    assert.ok(seen.polling >= 1, 'the handshake went over long-polling');
    assert.equal(seen.websocket, 1, 'one WebSocket was opened for the upgrade');
    // The upgraded socket still carries events both ways.
    const chat = await openChat(node, user);
    const ack = await page.evaluate(async (chatId) => {
      window.app.chatId = chatId;
      return window.app.send('over the upgraded socket');
    }, chat.id);
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await page.locator('#messages li .content', { hasText: 'over the upgraded socket' }).waitFor();
  });
});

test('WebSocket only connects without a single long-polling request', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('bob');
    const page = await open({ name: 'user' });
    const seen = engineRequests(page);
    await page.goto(frontend.url({ api: node.url, token: user.token, transports: 'websocket' }));
    await connected(page);
    assert.deepEqual(await page.evaluate(() => window.app.transports), ['websocket']);
    assert.equal(seen.polling, 0);
    const ack = await page.evaluate((id) => window.app.joinUserRoom(id), user.id);
    assert.deepEqual(ack, { ok: true });
  });
});

test('an allowed origin reads REST responses and connects', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('carol');
    const page = await open({ name: 'user' });
    await page.goto(frontend.url({ api: node.url, token: user.token }));
    await connected(page);
    const res = await page.evaluate(() => window.app.rest('POST', '/api/chats', {}));
    assert.equal(res.status, 201, JSON.stringify(res));
  });
});

test('a refused origin: the browser blocks the polling handshake as a CORS failure, socket.io-client reports connect_error "xhr poll error", fetch rejects', async (t) => {
  await withPages(t, browser, async ({ open, logOf }) => {
    const user = makeUser('dave');
    const page = await open({ name: 'refused-origin' });
    await page.goto(frontend.url({ api: node.url, token: user.token }, frontend.otherOrigin));
    await page.waitForFunction(() => window.app.connectErrors.length > 0, null, { timeout: WAIT });
    const [first] = await page.evaluate(() => window.app.connectErrors);
    assert.equal(first.message, 'xhr poll error');
    assert.equal(await page.evaluate(() => window.app.connected), false);
    // Chromium says why in the console: the response had no Access-Control-Allow-Origin.
    const cors = () => logOf(page).some((l) => /blocked by CORS policy/.test(l));
    const deadline = Date.now() + WAIT;
    while (!cors() && Date.now() < deadline) await page.waitForEvent('console', { timeout: WAIT }).catch(() => {});
    assert.ok(cors(), `no CORS error in the console:\n${logOf(page).join('\n')}`);
    // REST from that origin: the browser hides the response, fetch rejects with a TypeError.
    const rest = await page.evaluate(() => window.app.rest('GET', '/api/chats').then(() => 'resolved', (e) => `${e.name}: ${e.message}`));
    assert.equal(rest, 'TypeError: Failed to fetch');
  });
});

test('a refused origin over WebSocket only: the upgrade is refused and socket.io-client reports connect_error "websocket error"', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('erin');
    const page = await open({ name: 'refused-origin-ws' });
    await page.goto(frontend.url({ api: node.url, token: user.token, transports: 'websocket' }, frontend.otherOrigin));
    await page.waitForFunction(() => window.app.connectErrors.length > 0 || window.app.connected, null, { timeout: WAIT });
    assert.equal(await page.evaluate(() => window.app.connected), false, 'the WebSocket from a refused origin was accepted');
    assert.equal((await page.evaluate(() => window.app.connectErrors))[0].message, 'websocket error');
  });
});
