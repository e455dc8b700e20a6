// A user page reloaded while staff keep writing, and one user in two tabs.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  connected, launchBrowser, makeUser, openChat, serveFrontend, shownContents, shows, startNode, withPages, WAIT,
} from '../lib/harness.mjs';

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

async function chatPage(page, who, chat) {
  await page.goto(frontend.url({ api: node.url, token: who.token, chat: chat.id }));
  await connected(page);
  await page.waitForFunction(() => window.app.synced >= 1, null, { timeout: WAIT });
  return page;
}

test('messages sent while the user page reloads appear after the reload, once each and in order (history, then chat:sync)', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('rita');
    const staff = makeUser('steve', 'admin');
    const chat = await openChat(node, user);
    const userPage = await chatPage(await open({ name: 'user' }), user, chat);
    const staffPage = await chatPage(await open({ name: 'staff' }), staff, chat);
    await staffPage.evaluate(() => window.app.send('before the reload'));
    await shows(userPage, 'before the reload');

    // Hold the reloaded document until the staff page has sent two more messages: they are
    // sent while the user has no page (its old socket is gone, the new one not yet there).
    let sentDuringReload;
    const theDocument = (url) => url.origin === frontend.origin && url.pathname === '/';
    let held = false;
    await userPage.route(theDocument, async (route) => {
      held = true;
      sentDuringReload = (async () => {
        for (const text of ['during the reload 1', 'during the reload 2']) {
          const ack = await staffPage.evaluate((c) => window.app.send(c), text);
          assert.equal(ack.ok, true);
        }
      })();
      await sentDuringReload;
      await route.continue();
    }, { times: 1 });
    await userPage.reload();
    await connected(userPage);
    await sentDuringReload;
    assert.ok(held, 'the reloaded document was held while the staff page sent');
    await userPage.waitForFunction(() => window.app.synced >= 1, null, { timeout: WAIT });
    await shows(userPage, 'during the reload 2');
    assert.deepEqual(await shownContents(userPage), ['before the reload', 'during the reload 1', 'during the reload 2']);
    // And live delivery works on the new page.
    await staffPage.evaluate(() => window.app.send('after the reload'));
    await shows(userPage, 'after the reload');
  });
});

test('a reload within the offline grace shows staff no offline flicker', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('rolf');
    const control = makeUser('carl');
    const staff = makeUser('sina', 'admin');
    const chat = await openChat(node, user);
    const staffPage = await chatPage(await open({ name: 'staff' }), staff, chat);
    const userPage = await chatPage(await open({ name: 'user' }), user, chat);
    const controlPage = await chatPage(await open({ name: 'control-user' }), control, await openChat(node, control));
    await userPage.reload();
    await connected(userPage);
    // The control user leaves after the reload is over: once staff hear it went offline, a
    // grace that started earlier, at the reload, is over too.
    await controlPage.close();
    await staffPage.waitForFunction((id) => window.app.statuses.some((s) => s.userId === id && s.status === 'offline'), control.id, { timeout: 20_000 });
    assert.deepEqual(await staffPage.evaluate((id) => window.app.joinUserRoom(id), staff.id), { ok: true });
    const seen = await staffPage.evaluate((id) => window.app.statuses.filter((s) => s.userId === id).map((s) => s.status), user.id);
    assert.deepEqual(seen.filter((s) => s === 'offline'), [], `staff saw ${JSON.stringify(seen)} for the reloading user`);
  });
});

test('two tabs of one user both get message:new: from staff, and from each other', async (t) => {
  await withPages(t, browser, async ({ open, newContext }) => {
    const user = makeUser('tabea');
    const staff = makeUser('stella', 'admin');
    const chat = await openChat(node, user);
    const context = await newContext();
    const tab1 = await chatPage(await open({ context, name: 'user-tab-1' }), user, chat);
    const tab2 = await chatPage(await open({ context, name: 'user-tab-2' }), user, chat);
    const staffPage = await chatPage(await open({ name: 'staff' }), staff, chat);
    await staffPage.evaluate(() => window.app.send('to both tabs'));
    await shows(tab1, 'to both tabs');
    await shows(tab2, 'to both tabs');
    await tab1.fill('#text', 'typed in tab 1');
    await tab1.press('#text', 'Enter');
    await shows(tab2, 'typed in tab 1');
    await shows(staffPage, 'typed in tab 1');
    assert.deepEqual(await shownContents(tab2), ['to both tabs', 'typed in tab 1']);
  });
});
