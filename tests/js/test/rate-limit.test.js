// Per-socket rate limit (RATE_LIMIT_PER_SEC=5, bursts of 10): a flooding socket gets
// RATE_LIMITED for some events, stays connected and later works again; typing events over the
// limit are dropped silently (acked ok). Other sockets are not affected.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  connect, history, makeUser, openChat, startNode, waitUntil,
} from '../lib/harness.js';

describe('rate limit', () => {
  let node;
  let alice; let admin; let aliceSock; let adminSock; let chat;
  before(async () => {
    node = await startNode({ env: { RATE_LIMIT_PER_SEC: '5' } });
    alice = makeUser('alice');
    admin = makeUser('admin', 'admin');
    chat = await openChat(node, alice);
    [aliceSock, adminSock] = await Promise.all([connect(node, alice), connect(node, admin)]);
  });
  after(async () => {
    aliceSock?.close();
    adminSock?.close();
    await node?.destroy();
  });

  /** Waits until the socket is allowed events again. */
  const recovered = () => waitUntil(
    async () => (await aliceSock.ack('chat:sync', { chatId: chat.id, afterSeq: 0 })).ok,
    { timeout: 8000, every: 250, what: 'the rate limit to allow events again' },
  );

  test('a flood of 30 acked events: some are RATE_LIMITED, the socket stays connected and works again', async () => {
    const acks = await Promise.all(Array.from({ length: 30 }, () => aliceSock.ack('chat:sync', { chatId: chat.id, afterSeq: 0 })));
    const ok = acks.filter((a) => a.ok).length;
    const limited = acks.filter((a) => a.ok === false && a.error.code === 'RATE_LIMITED');
    assert.equal(ok + limited.length, 30, JSON.stringify(acks.find((a) => !a.ok && a.error.code !== 'RATE_LIMITED')));
    assert.ok(ok >= 5 && ok <= 15, `${ok} allowed (burst of 10)`);
    assert.ok(limited.length >= 15, `${limited.length} refused`);
    assert.equal(typeof limited[0].error.message, 'string');
    assert.ok(aliceSock.connected);
    await recovered();
  });

  test('without acks, refused events get the error event RATE_LIMITED and are not saved', async () => {
    for (let i = 0; i < 30; i++) aliceSock.emit('message:send', { chatId: chat.id, message: { content: `flood ${i}` } });
    // every event gets an answer: its own message:new (the confirmation) or an error event
    await waitUntil(
      () => aliceSock.received('message:new').length + aliceSock.received('error').length === 30,
      { timeout: 8000, what: '30 answers' },
    );
    const errors = aliceSock.received('error');
    assert.ok(errors.length >= 15, `${errors.length} refused`);
    for (const e of errors) assert.deepEqual(e, { message: e.message, error: 'RATE_LIMITED', event: 'message:send' });
    const saved = await history(node, alice, chat.id);
    assert.equal(saved.length, aliceSock.received('message:new').length, 'only what was confirmed was saved');
    assert.deepEqual(saved.map((m) => m.seq), saved.map((_, i) => i + 1));
    assert.ok(aliceSock.connected);
    await recovered();
  });

  test('unknown events count against the limit too', async () => {
    const unknown = Array.from({ length: 30 }, (_, i) => aliceSock.ack(`no:such:event:${i}`, {}));
    const known = aliceSock.ack('chat:sync', { chatId: chat.id, afterSeq: 0 });
    const codes = (await Promise.all(unknown)).map((a) => a.error.code);
    assert.ok(codes.every((c) => c === 'VALIDATION' || c === 'RATE_LIMITED'), codes.join());
    assert.ok(codes.filter((c) => c === 'RATE_LIMITED').length >= 15);
    assert.equal((await known).error?.code, 'RATE_LIMITED', 'the unknown events used up the budget');
    await recovered();
  });

  test('typing events over the limit are dropped silently and still acked ok', async () => {
    await adminSock.reset();
    const flood = Array.from({ length: 30 }, () => aliceSock.ack('chat:sync', { chatId: chat.id, afterSeq: 0 }));
    const typing = [];
    for (let i = 0; i < 10; i++) {
      typing.push(aliceSock.ack('user:typing:start', { chatId: chat.id }));
      typing.push(aliceSock.ack('user:typing:stop', { chatId: chat.id }));
    }
    aliceSock.emit('user:typing:start', { chatId: chat.id }); // no ack: no error event either
    const floodAcks = await Promise.all(flood);
    const typingAcks = await Promise.all(typing);
    assert.ok(floodAcks.some((a) => a.ok === false && a.error.code === 'RATE_LIMITED'));
    for (const a of typingAcks) assert.deepEqual(a, { ok: true });
    await recovered();
    await adminSock.barrier();
    const shown = adminSock.received('user:typing', (p) => p.userId === alice.id && p.chatId === chat.id).length;
    assert.ok(shown < 20, `only ${shown} of 20 typing transitions went out: the rest were dropped`);
    assert.equal(aliceSock.received('error', (e) => e.event.startsWith('user:typing')).length, 0);
  });

  test('the flooding socket works normally afterwards and another socket never noticed', async () => {
    const ack = await waitUntil(async () => {
      const a = await aliceSock.ack('message:send', { chatId: chat.id, message: { content: 'calm again' } });
      return a.ok ? a : undefined;
    }, { timeout: 8000, every: 250, what: 'a message to go through' });
    await adminSock.waitFor('message:new', (p) => p.message.id === ack.message.id);
    assert.ok(adminSock.connected && aliceSock.connected);
    assert.equal(adminSock.received('error').length, 0);
    const burst = await Promise.all(Array.from({ length: 8 }, () => adminSock.ack('chat:sync', { chatId: chat.id, afterSeq: 0 })));
    assert.ok(burst.every((a) => a.ok), 'the other socket has its own budget');
  });
});
