// user:typing: start and stop reach the chat's participants and admins, never the typer's own
// sockets or outsiders; an indicator that is not renewed ends by itself after about 3 s.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, makeUser, openChat, startNode } from '../lib/harness.js';

describe('typing', () => {
  let node;
  let alice; let bob; let admin; let admin2;
  let aliceTab1; let aliceTab2; let bobSock; let adminSock; let admin2Sock;
  let chat;

  before(async () => {
    node = await startNode();
    alice = makeUser('alice');
    bob = makeUser('bob');
    admin = makeUser('admin', 'admin');
    admin2 = makeUser('admin', 'admin');
    chat = await openChat(node, alice);
    [aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock] = await Promise.all([
      connect(node, alice), connect(node, alice), connect(node, bob), connect(node, admin), connect(node, admin2),
    ]);
  });
  after(async () => {
    for (const c of [aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock]) c?.close();
    await node?.destroy();
  });

  const all = () => [aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock];
  const typingOf = (userId, isTyping) => (p) => p.chatId === chat.id && p.userId === userId && p.isTyping === isTyping;

  test('a user typing is shown to admins, not to her own tabs nor to outsiders; stop ends it', async () => {
    const ack = await aliceTab1.ack('user:typing:start', { chatId: chat.id });
    assert.deepEqual(ack, { ok: true });
    for (const s of [adminSock, admin2Sock]) {
      const ev = await s.waitFor('user:typing', typingOf(alice.id, true));
      assert.deepEqual(ev, { chatId: chat.id, userId: alice.id, userName: alice.name, isTyping: true });
    }
    assert.deepEqual(await aliceTab1.ack('user:typing:stop', { chatId: chat.id }), { ok: true });
    for (const s of [adminSock, admin2Sock]) {
      const ev = await s.waitFor('user:typing', typingOf(alice.id, false));
      assert.deepEqual(ev, { chatId: chat.id, userId: alice.id, userName: alice.name, isTyping: false });
    }
    await Promise.all(all().map((c) => c.barrier()));
    for (const own of [aliceTab1, aliceTab2]) assert.equal(own.received('user:typing').length, 0, 'own sockets hear nothing');
    assert.equal(bobSock.received('user:typing').length, 0, 'outsiders hear nothing');
    for (const s of [adminSock, admin2Sock]) {
      assert.equal(s.received('user:typing', (p) => p.userId === alice.id).length, 2, 'one start, one stop');
    }
  });

  test('staff typing is shown to the participant and other admins, not to the typer', async () => {
    await Promise.all([aliceTab1, aliceTab2, bobSock, adminSock, admin2Sock].map((c) => c.reset()));
    adminSock.emit('user:typing:start', { chatId: chat.id }); // no ack: success is silent
    for (const s of [aliceTab1, aliceTab2, admin2Sock]) {
      const ev = await s.waitFor('user:typing', typingOf(admin.id, true));
      assert.equal(ev.userName, admin.name);
    }
    adminSock.emit('user:typing:stop', { chatId: chat.id });
    await aliceTab1.waitFor('user:typing', typingOf(admin.id, false));
    await Promise.all(all().map((c) => c.barrier()));
    assert.equal(adminSock.received('user:typing').length, 0);
    assert.equal(adminSock.received('error').length, 0);
    assert.equal(bobSock.received('user:typing').length, 0);
  });

  test('renewing an indicator sends nothing new; a stop without a start sends nothing', async () => {
    await Promise.all([adminSock, admin2Sock].map((c) => c.reset()));
    await aliceTab2.ack('user:typing:start', { chatId: chat.id });
    await aliceTab2.ack('user:typing:start', { chatId: chat.id });
    await aliceTab2.ack('user:typing:stop', { chatId: chat.id });
    assert.deepEqual(await aliceTab2.ack('user:typing:stop', { chatId: chat.id }), { ok: true });
    await admin2Sock.waitFor('user:typing', typingOf(alice.id, false));
    await admin2Sock.barrier();
    assert.deepEqual(admin2Sock.received('user:typing', (p) => p.userId === alice.id).map((p) => p.isTyping), [true, false]);
  });

  test('an indicator that is not renewed ends by itself after about 3 s', async () => {
    await adminSock.reset();
    const started = Date.now();
    await aliceTab1.ack('user:typing:start', { chatId: chat.id });
    await adminSock.waitFor('user:typing', typingOf(alice.id, true));
    const ended = await adminSock.waitFor('user:typing', typingOf(alice.id, false), 6000);
    const elapsed = Date.now() - started;
    assert.equal(ended.userName, alice.name);
    assert.ok(elapsed >= 2500, `ended after ${elapsed} ms, not before ~3 s`);
    assert.ok(elapsed <= 5000, `ended after ${elapsed} ms`);
    await aliceTab2.barrier();
    assert.equal(aliceTab2.received('user:typing', (p) => p.userId === alice.id).length, 0);
  });

  test('typing in a chat one does not take part in is FORBIDDEN, in a missing chat NOT_FOUND', async () => {
    const res = await bobSock.ack('user:typing:start', { chatId: chat.id });
    assert.equal(res.ok, false);
    assert.equal(res.error.code, 'FORBIDDEN');
    bobSock.emit('user:typing:stop', { chatId: chat.id });
    const err = await bobSock.waitFor('error', (e) => e.event === 'user:typing:stop');
    assert.equal(err.error, 'FORBIDDEN');
    const missing = await aliceTab1.ack('user:typing:start', { chatId: '0'.repeat(24) });
    assert.equal(missing.error.code, 'NOT_FOUND');
    await adminSock.barrier();
    assert.equal(adminSock.received('user:typing', (p) => p.userId === bob.id).length, 0);
  });
});
