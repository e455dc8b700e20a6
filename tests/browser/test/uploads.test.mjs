// Uploads from a page: a file chosen in an <input type=file> goes to POST /api/uploads as
// multipart (setInputFiles, as a person picking a file), is sent as a file message, and its
// image renders in <img> on the pages of the chat. Without PUBLIC_URL the frontend resolves the
// relative fileUrl against the API origin; with it, fileUrl is absolute and used as it is, and
// accepted back in message:send.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  connected, FIXTURES, freePort, launchBrowser, makeUser, openChat, serveFrontend, startNode, withPages, WAIT,
} from '../lib/harness.mjs';

const PNG = path.join(FIXTURES, 'red-3x2.png');

let browser;
let frontend;
let node;
let publicNode;
let publicUrl;

before(async () => {
  frontend = await serveFrontend();
  node = await startNode({ env: { CORS_ORIGINS: frontend.origin } });
  const port = await freePort();
  publicUrl = `http://127.0.0.1:${port}`;
  publicNode = await startNode({ port, env: { CORS_ORIGINS: frontend.origin, PUBLIC_URL: `${publicUrl}/` } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await node?.destroy();
  await publicNode?.destroy();
  await frontend?.close();
});

/** Opens the chat page of `who` against `target`. */
async function chatPage(open, target, who, chat, name) {
  const page = await open({ name });
  await page.goto(frontend.url({ api: target.url, token: who.token, chat: chat.id }));
  await connected(page);
  await page.waitForFunction(() => window.app.synced >= 1, null, { timeout: WAIT });
  return page;
}

/** Picks the fixture in the page's file input; resolves with the file message's ack. */
async function uploadFromInput(page) {
  await page.setInputFiles('#file', PNG);
  await page.waitForFunction(() => window.app.lastFileAck !== undefined || window.app.restErrors.length > 0, null, { timeout: WAIT });
  const { uploads, lastFileAck, restErrors } = await page.evaluate(() => ({ uploads: window.app.uploads, lastFileAck: window.app.lastFileAck, restErrors: window.app.restErrors }));
  assert.deepEqual(restErrors, []);
  assert.equal(uploads[0].status, 201);
  assert.equal(uploads[0].json.contentType, 'image/png');
  assert.equal(lastFileAck.ok, true, JSON.stringify(lastFileAck));
  return lastFileAck.message;
}

/** Waits until the page's <img> for `fileName` has loaded; returns its src and natural size. */
async function renderedImage(page, fileName) {
  const img = page.locator(`#messages img[alt="${fileName}"]`);
  await img.waitFor();
  await page.waitForFunction((name) => {
    const el = document.querySelector(`#messages img[alt="${name}"]`);
    return el?.complete && el.naturalWidth > 0;
  }, fileName, { timeout: WAIT });
  return img.evaluate((el) => ({ src: el.src, width: el.naturalWidth, height: el.naturalHeight }));
}

test('a file picked in <input type=file> is uploaded and rendered by <img> at its natural size on both pages (relative fileUrl, resolved against the API origin)', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('ursula');
    const staff = makeUser('sam', 'admin');
    const chat = await openChat(node, user);
    const userPage = await chatPage(open, node, user, chat, 'user');
    const staffPage = await chatPage(open, node, staff, chat, 'staff');
    const message = await uploadFromInput(userPage);
    assert.match(message.fileUrl, /^\/api\/files\/[^/?]+\?sig=/);
    assert.equal(message.fileName, 'red-3x2.png');
    for (const page of [userPage, staffPage]) {
      const img = await renderedImage(page, 'red-3x2.png');
      assert.deepEqual({ width: img.width, height: img.height }, { width: 3, height: 2 });
      assert.equal(img.src, node.url + message.fileUrl);
    }
  });
});

test('a relative fileUrl put into <img src> as it is loads from the frontend origin and fails: the reason for PUBLIC_URL', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('uwe');
    const chat = await openChat(node, user);
    const page = await chatPage(open, node, user, chat, 'user');
    const message = await uploadFromInput(page);
    const outcome = await page.evaluate((src) => new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(`loaded from ${img.src}`);
      img.onerror = () => resolve(`error from ${img.src}`);
      img.src = src;
    }), message.fileUrl);
    assert.equal(outcome, `error from ${frontend.origin}${message.fileUrl}`);
  });
});

test('with PUBLIC_URL, fileUrl is absolute, renders in <img> as it is, and is accepted back in message:send (a forged one is not)', async (t) => {
  await withPages(t, browser, async ({ open }) => {
    const user = makeUser('ulrike');
    const staff = makeUser('sid', 'admin');
    const chat = await openChat(publicNode, user);
    const userPage = await chatPage(open, publicNode, user, chat, 'user');
    const staffPage = await chatPage(open, publicNode, staff, chat, 'staff');
    const message = await uploadFromInput(userPage);
    assert.ok(message.fileUrl.startsWith(`${publicUrl}/api/files/`), message.fileUrl);
    for (const page of [userPage, staffPage]) {
      const img = await renderedImage(page, 'red-3x2.png');
      assert.deepEqual({ src: img.src, width: img.width, height: img.height }, { src: message.fileUrl, width: 3, height: 2 });
    }
    // The staff page forwards the absolute URL it received: it is this deployment's own.
    const again = await staffPage.evaluate((url) => window.app.sendFile(url, 'forwarded.png'), message.fileUrl);
    assert.equal(again.ok, true, JSON.stringify(again));
    assert.equal(again.message.fileUrl, message.fileUrl);
    // The relative form of the same URL is still accepted.
    const relative = await staffPage.evaluate((url) => window.app.sendFile(url, 'relative.png'), message.fileUrl.slice(publicUrl.length));
    assert.equal(relative.ok, true, JSON.stringify(relative));
    // An own-looking URL with another file's id under the same signature is refused.
    const forged = message.fileUrl.replace(/files\/[^?]+/, 'files/0123456789abcdef01234567');
    const refused = await staffPage.evaluate((url) => window.app.sendFile(url, 'forged.png'), forged);
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, 'VALIDATION');
  });
});
