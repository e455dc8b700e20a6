// The Socket.IO handshake: who gets in, who is refused with UNAUTHORIZED, and the default
// transports (HTTP long-polling upgraded to WebSocket).

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  SECRET, api, connect, connectRefused, makeUser, openChat, signJwt, startNode, token, waitUntil,
} from '../lib/harness.js';

describe('handshake', () => {
  let node;
  let admin;
  before(async () => {
    node = await startNode();
    admin = makeUser('admin', 'admin');
  });
  after(() => node?.destroy());

  const now = () => Math.floor(Date.now() / 1000);
  const refusals = {
    'no auth object at all': () => undefined,
    'an auth object without token': () => ({}),
    'a token that is not a string': () => ({ token: 42 }),
    'a malformed token': () => ({ token: 'not.a.jwt' }),
    'an empty token': () => ({ token: '' }),
    'an expired token (past the 30 s leeway)': () => ({ token: token('exp-user', 'user', { exp: now() - 120 }) }),
    'a token signed with another secret': () => ({ token: token('forger', 'admin', { secret: 'some-other-secret-0123456789' }) }),
    'a token with an unknown role': () => ({ token: token('root-user', 'root') }),
    'a token without a role': () => ({ token: signJwt({ id: 'no-role', exp: now() + 600 }) }),
    'a token without exp': () => ({ token: signJwt({ id: 'no-exp', role: 'user' }) }),
    'a token signed with another algorithm (HS512; HS256 is pinned)': () => {
      const head = `${Buffer.from('{"alg":"HS512","typ":"JWT"}').toString('base64url')}.${Buffer.from(
        JSON.stringify({ id: 'hs512-user', role: 'admin', exp: now() + 600 }),
      ).toString('base64url')}`;
      return { token: `${head}.${createHmac('sha512', SECRET).update(head).digest('base64url')}` };
    },
    'a token with an id longer than 64 characters': () => ({ token: token('u'.repeat(65), 'user') }),
    'an unsigned token (alg none)': () => ({
      token: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
        JSON.stringify({ id: 'none-alg', role: 'admin', exp: now() + 600 }),
      ).toString('base64url')}.`,
    }),
  };

  for (const [what, auth] of Object.entries(refusals)) {
    test(`${what} is refused with connect_error UNAUTHORIZED`, async () => {
      const err = await connectRefused(node, auth());
      assert.match(err.message, /^UNAUTHORIZED/);
    });
  }

  test('a refused socket never counts as connected', async () => {
    await connectRefused(node, { token: token('ghost-user', 'root') });
    const res = await api(node, 'GET', '/api/socket/active-users?limit=1000', { user: admin });
    assert.equal(res.status, 200);
    assert.ok(!res.body.activeUsers.some((e) => e.userId === 'ghost-user'));
  });

  test('user, admin and superadmin tokens connect; sub stands in for id; id wins over sub', async () => {
    for (const role of ['user', 'admin', 'superadmin']) {
      const c = await connect(node, makeUser(role, role));
      assert.ok(c.connected);
      c.close();
    }
    const bySub = await connect(node, signJwt({ sub: 'sub-only-user', role: 'user', exp: now() + 600 }));
    const both = await connect(node, signJwt({ id: 'id-wins', sub: 'sub-loses', role: 'user', exp: now() + 600 }));
    // presence is registered just after the handshake: wait for it
    const ids = await waitUntil(async () => {
      const res = await api(node, 'GET', '/api/socket/active-users?limit=1000', { user: admin });
      const found = res.body.activeUsers.map((e) => e.userId);
      return found.includes('sub-only-user') && found.includes('id-wins') ? found : undefined;
    }, { what: 'both sockets in presence' });
    assert.ok(ids.includes('sub-only-user'));
    assert.ok(ids.includes('id-wins'));
    assert.ok(!ids.includes('sub-loses'));
    bySub.close();
    both.close();
  });

  test('the display name comes from the name claim and falls back to the id', async () => {
    const named = { id: 'named-user', role: 'user', name: 'Nadia N.', token: token('named-user', 'user', { name: 'Nadia N.' }) };
    const nameless = { id: 'nameless-user', role: 'user', token: token('nameless-user', 'user') };
    for (const [who, expected] of [[named, 'Nadia N.'], [nameless, 'nameless-user']]) {
      const chat = await openChat(node, who);
      const c = await connect(node, who);
      const ack = await c.ack('message:send', { chatId: chat.id, message: { content: 'hi' } });
      assert.equal(ack.message.senderName, expected);
      assert.equal(ack.message.senderId, who.id);
      c.close();
    }
  });

  test('a token inside its 30 s leeway still connects', async () => {
    const c = await connect(node, { token: token('leeway-user', 'user', { exp: now() - 5 }) });
    assert.ok(c.connected);
    c.close();
  });

  test('default transports: long-polling upgrades to WebSocket and events flow both ways', async () => {
    const alice = makeUser('alice');
    const chat = await openChat(node, alice);
    const watcher = await connect(node, admin);
    const polling = await connect(node, alice, { transports: undefined });
    const engine = polling.socket.io.engine;
    if (engine.transport.name !== 'websocket') {
      assert.equal(engine.transport.name, 'polling');
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no upgrade within 5 s')), 5000);
        engine.once('upgrade', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    assert.equal(engine.transport.name, 'websocket');
    const ack = await polling.ack('message:send', { chatId: chat.id, message: { content: 'over an upgraded transport' } });
    assert.equal(ack.ok, true);
    const seen = await watcher.waitFor('message:new', (p) => p.message.id === ack.message.id);
    assert.equal(seen.message.content, 'over an upgraded transport');
    await polling.waitFor('message:new', (p) => p.message.id === ack.message.id);
    polling.close();
    watcher.close();
  });

  test('long-polling only also works (no upgrade)', async () => {
    const bob = makeUser('bob');
    const chat = await openChat(node, bob);
    const c = await connect(node, bob, { transports: ['polling'] });
    assert.equal(c.socket.io.engine.transport.name, 'polling');
    const ack = await c.ack('message:send', { chatId: chat.id, message: { content: 'polled' } });
    assert.equal(ack.ok, true);
    await c.waitFor('message:new', (p) => p.message.id === ack.message.id);
    c.close();
  });
});
