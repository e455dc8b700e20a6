// Admission control with the official socket.io-client: a node that holds MAX_CONNECTIONS
// sockets refuses a new session at once (HTTP 503), which the client treats as a failed
// transport: it emits `connect_error`, backs off and retries by itself, and connects as soon as
// there is room, with no code in the frontend.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connected, frontend, makeUser, startNode } from '../lib/harness.js';

describe('admission control', () => {
  const cleanup = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  for (const transports of [['websocket'], ['polling', 'websocket']]) {
    test(`a client refused by a full node retries and gets in once a socket leaves (${transports.join(' then ')})`, async () => {
      const node = await startNode({ env: { MAX_CONNECTIONS: '1' } });
      cleanup.push(() => node.destroy());
      const first = frontend(node.url, makeUser('first'));
      cleanup.push(() => first.close());
      await connected(first);

      const second = frontend(node.url, makeUser('second'), { transports, reconnectionDelay: 100, reconnectionDelayMax: 300 });
      cleanup.push(() => second.close());
      let refusals = 0;
      const refusedTwice = new Promise((resolve) => {
        second.socket.on('connect_error', () => {
          refusals += 1;
          if (refusals === 2) resolve();
        });
      });
      await refusedTwice; // refused, and retried by itself
      assert.equal(second.socket.connected, false);
      assert.equal(first.socket.connected, true, 'the connected client is not disturbed');

      first.close();
      await connected(second, 10000);
      assert.ok(refusals >= 2);
    });
  }
});
