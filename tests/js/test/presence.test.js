// Presence: user:status on transitions of a user as a whole, the legacy user:online and
// joinUserRoom events, GET /api/socket/active-users and GET /api/users/{id}/status.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api, connect, isTimestamp, makeUser, startNode, waitUntil,
} from '../lib/harness.js';

describe('presence', () => {
  let node;
  let admin; let adminSock;
  before(async () => {
    // Transitions at once: the offline grace has its own tests (recovery.test.js).
    node = await startNode({ env: { OFFLINE_GRACE_SECS: '0' } });
    admin = makeUser('admin', 'admin');
    adminSock = await connect(node, admin);
  });
  after(async () => {
    adminSock?.close();
    await node?.destroy();
  });

  const sockets = async (user) => (await api(node, 'GET', `/api/users/${user.id}/status`, { user: admin })).body.sockets;
  const statusOf = (user, status) => (p) => p.userId === user.id && p.status === status;

  test('user:status goes out once when the first tab opens and once when the last closes', async () => {
    const carol = makeUser('carol');
    const tab1 = await connect(node, carol);
    const online = await adminSock.waitFor('user:status', statusOf(carol, 'online'));
    assert.deepEqual(online, { userId: carol.id, status: 'online' });

    const tab2 = await connect(node, carol);
    const tab3 = await connect(node, carol);
    await waitUntil(async () => (await sockets(carol)) === 3, { what: 'three sockets' });
    tab1.close();
    await waitUntil(async () => (await sockets(carol)) === 2, { what: 'two sockets' });
    tab2.close();
    await waitUntil(async () => (await sockets(carol)) === 1, { what: 'one socket' });
    await adminSock.barrier();
    assert.equal(adminSock.received('user:status', statusOf(carol, 'online')).length, 1, 'one online for three tabs');
    assert.equal(adminSock.received('user:status', statusOf(carol, 'offline')).length, 0, 'closing a tab is not offline');

    tab3.close();
    const offline = await adminSock.waitFor('user:status', statusOf(carol, 'offline'));
    assert.deepEqual(offline, { userId: carol.id, status: 'offline' });
    await adminSock.barrier();
    assert.equal(adminSock.received('user:status', (p) => p.userId === carol.id).length, 2);
  });

  test('user:status is not sent to users who share no chat', async () => {
    const dave = makeUser('dave');
    const stranger = makeUser('stranger');
    const strangerSock = await connect(node, stranger);
    const daveTab = await connect(node, dave);
    await adminSock.waitFor('user:status', statusOf(dave, 'online'));
    daveTab.close();
    await adminSock.waitFor('user:status', statusOf(dave, 'offline'));
    await strangerSock.barrier();
    assert.equal(strangerSock.received('user:status', (p) => p.userId === dave.id).length, 0);
    strangerSock.close();
  });

  test('a chat partner who is also staff hears user:status once per socket', async () => {
    const kim = makeUser('kim');
    const partner = makeUser('partner', 'admin');
    const partnerSock = await connect(node, partner);
    assert.equal((await api(node, 'POST', '/api/chats', { user: partner, body: { participantId: kim.id } })).status, 201);
    const kimSock = await connect(node, kim);
    await partnerSock.waitFor('user:status', statusOf(kim, 'online'));
    kimSock.close();
    await partnerSock.waitFor('user:status', statusOf(kim, 'offline'));
    await partnerSock.barrier();
    assert.deepEqual(partnerSock.received('user:status', (p) => p.userId === kim.id).map((p) => p.status), ['online', 'offline']);
    partnerSock.close();
  });

  test('participants of the user\'s open chats hear user:status; of closed chats, not', async () => {
    const lena = makeUser('lena');
    const buddy = makeUser('buddy'); // a user-role participant, added as the chat's assignee
    const chat = await api(node, 'POST', '/api/chats', { user: lena, body: {} });
    const patched = await api(node, 'PATCH', `/api/chats/${chat.body.id}`, { user: admin, body: { assignedAdmin: buddy.id } });
    assert.ok(patched.body.participants.includes(buddy.id));
    const buddySock = await connect(node, buddy);

    let lenaSock = await connect(node, lena);
    assert.deepEqual(await buddySock.waitFor('user:status', statusOf(lena, 'online')), { userId: lena.id, status: 'online' });
    lenaSock.close();
    await buddySock.waitFor('user:status', statusOf(lena, 'offline'));

    await api(node, 'PATCH', `/api/chats/${chat.body.id}`, { user: admin, body: { status: 'closed' } });
    lenaSock = await connect(node, lena);
    await adminSock.waitFor('user:status', (p) => p.userId === lena.id && p.status === 'online' && adminSock.received('user:status', statusOf(lena, 'online')).length === 2);
    await buddySock.barrier();
    assert.equal(buddySock.received('user:status', statusOf(lena, 'online')).length, 1, 'nothing through a closed chat');
    lenaSock.close();
    buddySock.close();
  });

  test('user:online with the own id is ok and is not a new transition; another id is FORBIDDEN', async () => {
    const erin = makeUser('erin');
    const other = makeUser('other');
    const s = await connect(node, erin);
    await adminSock.waitFor('user:status', statusOf(erin, 'online'));
    assert.deepEqual(await s.ack('user:online', { userId: erin.id }), { ok: true });
    const refused = await s.ack('user:online', { userId: other.id });
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, 'FORBIDDEN');
    s.emit('user:online', { userId: other.id });
    const err = await s.waitFor('error', (e) => e.event === 'user:online');
    assert.deepEqual(Object.keys(err).sort(), ['error', 'event', 'message']);
    assert.equal(err.error, 'FORBIDDEN');
    await adminSock.barrier();
    assert.equal(adminSock.received('user:status', (p) => p.userId === erin.id).length, 1);
    assert.equal(adminSock.received('user:status', (p) => p.userId === other.id).length, 0, 'no one was made online');
    assert.equal(await sockets(erin), 1);
    assert.equal(await sockets(other), 0);
    s.close();
  });

  test("joinUserRoom with the own id is a no-op; another user's room is FORBIDDEN and stays closed", async () => {
    const frank = makeUser('frank');
    const victim = makeUser('victim');
    const s = await connect(node, frank);
    const victimSock = await connect(node, victim);
    assert.deepEqual(await s.ack('joinUserRoom', frank.id), { ok: true });
    const refused = await s.ack('joinUserRoom', victim.id);
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, 'FORBIDDEN');
    s.emit('joinUserRoom', victim.id);
    assert.equal((await s.waitFor('error', (e) => e.event === 'joinUserRoom')).error, 'FORBIDDEN');
    // something private for the victim does not reach frank
    const sent = await adminSock.ack('sendReportMessage', { userId: victim.id, title: 'Private', message: 'for the victim only', status: 'Info' });
    assert.equal(sent.ok, true);
    await victimSock.waitFor('receiveReportMessage', (p) => p.message.id === sent.message.id);
    await s.barrier();
    assert.equal(s.received('receiveReportMessage').length, 0);
    s.close();
    victimSock.close();
  });

  test('active-users lists every socket (staff only) with count, users and cursor pages', async () => {
    const gina = makeUser('gina');
    const hank = makeUser('hank', 'superadmin');
    const g1 = await connect(node, gina);
    const g2 = await connect(node, gina);
    const h1 = await connect(node, hank);
    // presence is registered just after the handshake: wait for it, not for a fixed time
    await waitUntil(async () => (await sockets(gina)) === 2 && (await sockets(hank)) === 1, { what: 'the new sockets in presence' });

    const forbidden = await api(node, 'GET', '/api/socket/active-users', { user: gina });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.error.code, 'FORBIDDEN');
    assert.equal((await api(node, 'GET', '/api/socket/active-users')).status, 401);

    const all = await api(node, 'GET', '/api/socket/active-users', { user: hank });
    assert.equal(all.status, 200);
    const { activeUsers, count, users, nextCursor } = all.body;
    assert.equal(count, activeUsers.length);
    assert.equal(nextCursor, null);
    assert.equal(users, new Set(activeUsers.map((e) => e.userId)).size);
    const ginas = activeUsers.filter((e) => e.userId === gina.id);
    assert.equal(ginas.length, 2);
    assert.deepEqual(new Set(ginas.map((e) => e.socketId)), new Set([g1.socket.id, g2.socket.id]));
    for (const e of activeUsers) {
      assert.deepEqual(Object.keys(e).sort(), ['connectedAt', 'node', 'socketId', 'userId', 'userName', 'userRole']);
      assert.ok(isTimestamp(e.connectedAt));
      assert.equal(typeof e.node, 'string');
      assert.ok(e.node.length > 0);
    }
    assert.equal(ginas[0].userName, gina.name);
    assert.equal(ginas[0].userRole, 'user');
    assert.equal(activeUsers.find((e) => e.userId === hank.id).userRole, 'superadmin');

    // walk the pages one socket at a time
    const seen = [];
    let cursor = null;
    for (let page = 0; page < count + 2; page++) {
      const q = `/api/socket/active-users?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await api(node, 'GET', q, { user: admin });
      assert.equal(res.status, 200);
      assert.equal(res.body.count, count);
      assert.equal(res.body.users, users);
      assert.ok(res.body.activeUsers.length <= 1);
      seen.push(...res.body.activeUsers.map((e) => e.socketId));
      cursor = res.body.nextCursor;
      if (cursor === null) break;
    }
    assert.equal(cursor, null, 'the last page has nextCursor null');
    assert.deepEqual(seen.sort(), activeUsers.map((e) => e.socketId).sort());
    assert.equal((await api(node, 'GET', '/api/socket/active-users?limit=0', { user: admin })).status, 400);

    for (const c of [g1, g2, h1]) c.close();
  });

  test('users/{id}/status: the user themself or staff; sockets counted; offline with lastSeen', async () => {
    const ivy = makeUser('ivy');
    const nosy = makeUser('nosy');
    const t1 = await connect(node, ivy);
    const t2 = await connect(node, ivy);
    await waitUntil(async () => (await sockets(ivy)) === 2, { what: 'two sockets' });
    const own = await api(node, 'GET', `/api/users/${ivy.id}/status`, { user: ivy });
    assert.equal(own.status, 200);
    assert.equal(own.body.userId, ivy.id);
    assert.equal(own.body.status, 'online');
    assert.equal(own.body.sockets, 2);
    assert.equal(own.body.lastSeen, undefined);

    const other = await api(node, 'GET', `/api/users/${ivy.id}/status`, { user: nosy });
    assert.equal(other.status, 403);
    assert.equal(other.body.error.code, 'FORBIDDEN');
    assert.equal((await api(node, 'GET', `/api/users/${ivy.id}/status`)).status, 401);

    t1.close();
    t2.close();
    await adminSock.waitFor('user:status', statusOf(ivy, 'offline'));
    const gone = await api(node, 'GET', `/api/users/${ivy.id}/status`, { user: admin });
    assert.equal(gone.status, 200);
    assert.equal(gone.body.status, 'offline');
    assert.equal(gone.body.sockets, 0);
    assert.ok(isTimestamp(gone.body.lastSeen));

    const never = await api(node, 'GET', '/api/users/never-seen-user/status', { user: admin });
    assert.deepEqual(never.body, { userId: 'never-seen-user', status: 'offline', sockets: 0 });
  });
});
