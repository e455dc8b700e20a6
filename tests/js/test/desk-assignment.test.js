// Auto-assignment (ASSIGNMENT=auto) seen by the official socket.io-client: a user's new chat
// goes to the available agent (`chat:updated` by `system`), waits in the queue when the agent
// is full, is assigned when a chat closes, and goes back to the queue when the agent stays away
// longer than REASSIGN_AFTER_SECS.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { api, connect, isTimestamp, makeUser, openChat, startNode } from '../lib/harness.js';

describe('auto-assignment', () => {
  let node;
  before(async () => {
    node = await startNode({
      env: { ASSIGNMENT: 'auto', MAX_OPEN_CHATS_PER_AGENT: '1', REASSIGN_AFTER_SECS: '1' },
    });
  });
  after(() => node?.destroy());

  test('a chat goes to the available agent, the next one queues until a chat closes', async () => {
    const agent = makeUser('agent', 'admin');
    const alice = makeUser('alice');
    const staff = await connect(node, agent);
    const user = await connect(node, alice);
    await staff.waitFor('staff:availability', (e) => e.userId === agent.id && e.status === 'available');

    const first = await openChat(node, alice);
    const assigned = await user.waitFor('chat:updated', (e) => e.chat.id === first.id);
    assert.equal(assigned.by, 'system');
    assert.deepEqual(assigned.changed, ['assignedAdmin', 'participants']);
    assert.equal(assigned.chat.assignedAdmin, agent.id);
    assert.ok(isTimestamp(assigned.chat.assignedAt));
    assert.equal(assigned.chat.queuedAt, undefined);

    const second = await openChat(node, alice);
    assert.ok(isTimestamp(second.queuedAt), 'the agent is full: it waits');

    const closed = await api(node, 'PATCH', `/api/chats/${first.id}`, { user: agent, body: { status: 'closed' } });
    assert.equal(closed.status, 200);
    const next = await staff.waitFor('chat:updated', (e) => e.chat.id === second.id && e.by === 'system');
    assert.equal(next.chat.assignedAdmin, agent.id);
    staff.close();
    user.close();
  });

  test('an agent away longer than REASSIGN_AFTER_SECS loses the chat back to the queue', async () => {
    const agent = makeUser('agent', 'admin');
    const bob = makeUser('bob');
    const staff = await connect(node, agent);
    await staff.waitFor('staff:availability', (e) => e.userId === agent.id && e.status === 'available');
    const user = await connect(node, bob);
    const chat = await openChat(node, bob);
    await user.waitFor('chat:updated', (e) => e.chat.id === chat.id && e.chat.assignedAdmin === agent.id);

    assert.deepEqual(await staff.ack('staff:availability', { status: 'away' }), { ok: true });
    const back = await user.waitFor('chat:updated', (e) => e.chat.id === chat.id && !e.chat.assignedAdmin, 8000);
    assert.equal(back.by, 'system');
    assert.ok(isTimestamp(back.chat.queuedAt));
    assert.deepEqual(back.chat.participants, [bob.id]);
    staff.close();
    user.close();
  });
});
