// The development console's support desk (src/http/console/desk.js), in Chromium: the live chat
// list (`chat:created`, `chat:updated`, no polling), assignment, staff availability, and a
// superadmin removing a user (disconnect with a block, revoking tokens) with the audit log; an
// admin sees no removal form; axe-core on the desk views.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { idOf, named, seriousViolations, signIn as signInAt } from '../lib/console.mjs';
import { launchBrowser, startNode, withPages } from '../lib/harness.mjs';

let browser;
let node;

before(async () => {
  node = await startNode({ env: { NODE_ID: 'desk-node' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await node?.destroy();
});

/** Opens this file's node's console in a new window and signs in. */
const signIn = (open, name, role, windowName) => signInAt(open, name, role, windowName, { at: node });

/** The chat list entry of `userName`'s support chat in `page`. */
const chatEntry = (page, userName) => page.locator('#chat-list button', { hasText: `Support for ${userName}` });

/** The row of staff member `id` in `page`'s availability table. */
const staffRow = (page, id) => page.locator(`#staff-table tr[data-user="${id}"]`);

async function openSupportChat(user, userName) {
  await user.getByRole('button', { name: 'Open a support chat' }).click();
  await user.locator('#chat-title', { hasText: `Support for ${userName}` }).waitFor();
}

test('console desk: a chat a user opens appears live in a staff window, and an assignment shows in another', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    // Both staff windows are signed in before the chat exists: only `chat:created` can show it.
    const [aName, bName, userName] = [named('Ann'), named('Ben'), named('Una')];
    const a = await signIn(open, aName, 'staff', 'staff-a');
    const b = await signIn(open, bName, 'staff', 'staff-b');
    const user = await signIn(open, userName, 'user', 'user-window');
    await openSupportChat(user, userName);
    await chatEntry(a, userName).filter({ hasText: 'unassigned' }).waitFor();

    // Ben takes the chat; Ann's list and availability table follow (`chat:updated`).
    await chatEntry(b, userName).click();
    await b.locator('#chat-meta', { hasText: 'not assigned' }).waitFor();
    await b.getByRole('button', { name: 'Assign to me' }).click();
    await b.locator('#chat-meta', { hasText: `assigned to ${idOf(bName)}` }).waitFor();
    await chatEntry(a, userName).filter({ hasText: `assigned to ${idOf(bName)}` }).waitFor();
    await staffRow(a, idOf(bName)).locator('td').nth(2).filter({ hasText: '1' }).waitFor();

    // Ben closes it: open, then closed, everywhere.
    await b.getByRole('button', { name: 'Close chat' }).click();
    await chatEntry(a, userName).filter({ hasText: 'closed' }).waitFor();
    await chatEntry(user, userName).filter({ hasText: 'closed' }).waitFor();
  });
});

test('console desk: a staff member going away shows in another staff window', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const [aName, bName] = [named('Cleo'), named('Dan')];
    const a = await signIn(open, aName, 'staff', 'staff-a');
    const b = await signIn(open, bName, 'staff', 'staff-b');
    await staffRow(a, idOf(bName)).locator('td', { hasText: 'available' }).waitFor();
    await b.getByRole('button', { name: 'Set me away' }).click();
    await b.locator('#my-availability', { hasText: 'You are away' }).waitFor();
    await staffRow(a, idOf(bName)).locator('td', { hasText: 'away' }).waitFor();
    await b.getByRole('button', { name: 'Set me available' }).click();
    await staffRow(a, idOf(bName)).locator('td', { hasText: 'available' }).waitFor();
  });
});

test('console desk: a superadmin blocks a user, whose window goes offline and is refused, and the audit log shows it', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const [rootName, userName] = [named('Rita'), named('Vic')];
    const user = await signIn(open, userName, 'user', 'user-window');
    const root = await signIn(open, rootName, 'superadmin', 'root-window');
    await root.locator('#whoami', { hasText: 'superadmin' }).waitFor();

    await root.getByLabel('User id', { exact: true }).fill(idOf(userName));
    await root.getByLabel('Action', { exact: true }).selectOption('block');
    await root.getByLabel('Block for (seconds)', { exact: true }).fill('600');
    await root.getByLabel('Reason', { exact: true }).fill('abuse');
    await root.getByRole('button', { name: 'Remove' }).click();
    await root.locator('#remove-result', { hasText: new RegExp(`Disconnected \\d+ sockets? of ${idOf(userName)}, blocked until`) }).waitFor();

    // The user's window is disconnected by the server, and a reload is refused.
    await user.locator('#connection', { hasText: 'offline (disconnected by the server)' }).waitFor();
    await user.reload();
    await user.locator('#connection', { hasText: 'FORBIDDEN: blocked' }).waitFor();

    // The audit log lists the block, by this superadmin, newest first.
    const newest = root.locator('#audit-list li').first();
    await newest.filter({ hasText: `${idOf(rootName)} (superadmin) user.block user ${idOf(userName)}` }).waitFor();

    // Revoking tokens answers with the instant before which they are refused.
    await root.getByLabel('Action', { exact: true }).selectOption('revoke');
    await root.getByRole('button', { name: 'Remove' }).click();
    await root.locator('#remove-result', { hasText: `Tokens of ${idOf(userName)} issued before` }).waitFor();
    await newest.filter({ hasText: 'user.revoke-tokens' }).waitFor();
  });
});

test('console desk: an admin works the desk but sees no removal form and no audit log', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const admin = await signIn(open, named('Abe'), 'staff', 'staff-window');
    await admin.locator('#desk-title').waitFor();
    assert.equal(await admin.locator('#remove-form').isHidden(), true);
    assert.equal(await admin.locator('#audit').isHidden(), true);
    const user = await signIn(open, named('Ulla'), 'user', 'user-window');
    assert.equal(await user.locator('#desk').isHidden(), true);
  });
});

test('console desk: axe-core finds no serious or critical violations in the superadmin desk view', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    // axe is injected as an inline script, which the console's CSP forbids: bypass it here.
    const context = await browser.newContext({ bypassCSP: true });
    try {
      const openInAxeContext = ({ name }) => open({ context, name });
      const userName = named('Wes');
      const user = await signIn(openInAxeContext, userName, 'user', 'user-window');
      await openSupportChat(user, userName);
      const root = await signIn(openInAxeContext, named('Sue'), 'superadmin', 'root-window');
      await chatEntry(root, userName).click();
      await root.locator('#chat-meta', { hasText: 'not assigned' }).waitFor();
      await root.locator('#staff-table tr[data-user]').first().waitFor();
      assert.deepEqual(await seriousViolations(root), [], 'superadmin desk view');
    } finally {
      await context.close();
    }
  });
});
