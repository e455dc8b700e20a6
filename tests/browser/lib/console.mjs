// What the development console's tests share (console.test.mjs, console-desk.test.mjs): fresh
// names, the ids the console derives from them, the console code a node printed, signing in,
// sending a message, and axe-core's serious and critical violations.

import { readFileSync } from 'node:fs';
import path from 'node:path';

import { BROWSER_ROOT, uid } from './harness.mjs';

const AXE = readFileSync(path.join(BROWSER_ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

/** A fresh name per test, so tests never share users. */
export const named = (first) => `${first} ${uid('x').slice(-4)}`;
/** The user id the console makes of a name. */
export const idOf = (name) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/** The console code a node printed at start-up (it keeps it in DATA_DIR/console-code). */
export const consoleCode = (n) => readFileSync(path.join(n.dataDir, 'console-code'), 'utf8').trim();

/** The sign-in radio of each role. */
const ROLE_RADIO = { user: 'User', staff: 'Staff (admin)', superadmin: 'Superadmin' };

/** Opens the console of node `at` in a new window and signs in as `name` with `role` (user,
 *  staff or superadmin). */
export async function signIn(open, name, role, windowName, { at, code = consoleCode(at) }) {
  const page = await open({ name: windowName });
  await page.goto(`${at.url}/`);
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByLabel('Console code', { exact: true }).fill(code);
  await page.getByRole('radio', { name: ROLE_RADIO[role], exact: true }).check();
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#whoami', { hasText: `Signed in as ${name}` }).waitFor();
  await page.locator('#connection', { hasText: 'online' }).waitFor();
  return page;
}

export async function send(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send', exact: true }).click();
}

/** Runs axe-core in the page; returns its serious and critical violations. */
export async function seriousViolations(page) {
  await page.addScriptTag({ content: AXE });
  const results = await page.evaluate(() => window.axe.run(document));
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}
