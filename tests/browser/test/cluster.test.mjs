// A 2-node cluster (a real redis-server, nodes sharing one embedded-store DATA_DIR as in
// tests/deploy/lb_cluster.py) behind nginx with deploy/nginx/switchboard.conf. The user page
// goes through nginx (polling, then the upgrade: nginx's hash keeps the session on one node);
// the staff page connects straight to the node nginx did not pick, so every event here crosses
// nodes over Redis.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, test } from 'node:test';

import {
  api, connected, launchBrowser, makeUser, openChat, serveFrontend, shows, startNginx, startNode, startRedis,
  tempDataDir, waitUntil, withPages, WAIT,
} from '../lib/harness.mjs';

let browser;
let frontend;
let redis;
let nginx;
let dataDir;
const NODE_IDS = ['node-1', 'node-2'];
const nodes = [];

before(async () => {
  frontend = await serveFrontend();
  redis = await startRedis();
  dataDir = tempDataDir();
  // One after the other: the first opening of the shared SQLite file must not race another's.
  for (const id of NODE_IDS) {
    nodes.push(await startNode({ dataDir, env: { CORS_ORIGINS: frontend.origin, REDIS_URL: redis.url, NODE_ID: id } }));
  }
  nginx = await startNginx(nodes.map((n) => n.port));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await nginx?.stop();
  for (const n of nodes) await n.destroy();
  await redis?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  await frontend?.close();
});

/** Where `user`'s sockets are, from the active-users API (any node answers for the cluster). */
async function nodesOf(staff, user) {
  const res = await api(nodes[0], 'GET', '/api/socket/active-users?limit=500', { user: staff });
  return res.body.activeUsers.filter((s) => s.userId === user.id).map((s) => s.node);
}

/** A user page through nginx and a staff page on the other node, both showing one chat. */
async function userAndStaff(open) {
  const user = makeUser('ulla');
  const staff = makeUser('stan', 'admin');
  const chat = await openChat(nodes[0], user);
  const userPage = await open({ name: 'user-via-nginx' });
  await userPage.goto(frontend.url({ api: nginx.url, token: user.token, chat: chat.id }));
  await connected(userPage);
  const [userNode] = await waitUntil(async () => {
    const at = await nodesOf(staff, user);
    return at.length === 1 && at;
  }, { timeout: WAIT, what: 'the user page in active-users' });
  const other = nodes[NODE_IDS.indexOf(userNode) === 0 ? 1 : 0];
  const staffPage = await open({ name: 'staff-other-node' });
  await staffPage.goto(frontend.url({ api: other.url, token: staff.token, chat: chat.id }));
  await connected(staffPage);
  await userPage.waitForFunction(() => window.app.synced >= 1, null, { timeout: WAIT });
  await staffPage.waitForFunction(() => window.app.synced >= 1, null, { timeout: WAIT });
  const [staffNode] = await waitUntil(async () => {
    const at = await nodesOf(staff, staff);
    return at.length === 1 && at;
  }, { timeout: WAIT, what: 'the staff page in active-users' });
  assert.notEqual(staffNode, userNode, 'the two pages are on different nodes');
  return { user, staff, chat, userPage, staffPage };
}

test('a message goes from a user page through nginx to a staff page on the other node, and back', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { userPage, staffPage } = await userAndStaff(open);
    await userPage.fill('#text', 'hello from the user page');
    await userPage.press('#text', 'Enter');
    await shows(staffPage, 'hello from the user page');
    await staffPage.fill('#text', 'hello from the staff page');
    await staffPage.press('#text', 'Enter');
    await shows(userPage, 'hello from the staff page');
    // The sender's page shows its own message once (ack and message:new are one message).
    assert.equal(await userPage.locator('#messages li').count(), 2);
  });
});

test('typing on the staff page shows on the user page (another node), and stops', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { staff, userPage, staffPage } = await userAndStaff(open);
    await staffPage.evaluate(() => window.app.typingStart());
    await userPage.locator('#typing', { hasText: `${staff.name} is typing` }).waitFor();
    await staffPage.evaluate(() => window.app.typingStop());
    await userPage.waitForFunction(() => document.getElementById('typing').textContent === '', null, { timeout: WAIT });
  });
});

test('a read receipt from the staff page reaches the user page on the other node', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { staff, userPage, staffPage } = await userAndStaff(open);
    const ack = await userPage.evaluate(() => window.app.send('please read me'));
    assert.equal(ack.ok, true);
    await shows(staffPage, 'please read me');
    await staffPage.evaluate((id) => window.app.markRead(id), ack.message.id);
    await userPage.waitForFunction((by) => window.app.reads.some((r) => r.readBy === by), staff.id, { timeout: WAIT });
    await userPage.locator('#messages li[data-read="true"]', { hasText: 'please read me' }).waitFor();
  });
});

test('joinUserRoom is acked for the own id and refused for another; sendReportMessage gets reportMessageSent and the user page receiveReportMessage', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const { user, staff, userPage, staffPage } = await userAndStaff(open);
    assert.deepEqual(await userPage.evaluate((id) => window.app.joinUserRoom(id), user.id), { ok: true });
    const refused = await userPage.evaluate((id) => window.app.joinUserRoom(id), staff.id);
    assert.equal(refused.error?.code, 'FORBIDDEN');
    await staffPage.evaluate((userId) => window.app.sendReport({ userId, orderId: 'order-7', title: 'Order shipped', message: 'It is on its way', status: 'Info' }), user.id);
    await staffPage.waitForFunction(() => window.app.reportReplies.length === 1, null, { timeout: WAIT });
    const [reply] = await staffPage.evaluate(() => window.app.reportReplies);
    assert.equal(reply.success, true, JSON.stringify(reply));
    assert.equal(reply.message.sentBy, staff.id);
    await userPage.locator('#reports li', { hasText: 'Info: Order shipped: It is on its way' }).waitFor();
  });
});
