// Report messages from staff to users: sendReportMessage / receiveReportMessage /
// reportMessageSent, report:read, and the /api/reports endpoints.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  OBJECT_ID, api, connect, isTimestamp, makeUser, startNode,
} from '../lib/harness.js';

function assertReport(r, { user, sender, title, message, status }) {
  assert.match(r.id, OBJECT_ID);
  assert.equal(r.userId, user.id);
  assert.equal(r.title, title);
  assert.equal(r.message, message);
  assert.equal(r.status, status);
  assert.equal(r.sentBy, sender.id);
  assert.equal(r.sentByName, sender.name);
  assert.equal(r.isRead, false);
  assert.equal(r.readAt, undefined);
  assert.ok(isTimestamp(r.createdAt));
}

describe('reports', () => {
  let node;
  let ursula; let victor; let admin; let admin2;
  let uTab1; let uTab2; let vSock; let adminTab1; let adminTab2; let admin2Sock;

  before(async () => {
    node = await startNode();
    ursula = makeUser('ursula');
    victor = makeUser('victor');
    admin = makeUser('admin', 'admin');
    admin2 = makeUser('boss', 'superadmin');
    [uTab1, uTab2, vSock, adminTab1, adminTab2, admin2Sock] = await Promise.all([
      connect(node, ursula), connect(node, ursula), connect(node, victor),
      connect(node, admin), connect(node, admin), connect(node, admin2),
    ]);
  });
  after(async () => {
    for (const c of [uTab1, uTab2, vSock, adminTab1, adminTab2, admin2Sock]) c?.close();
    await node?.destroy();
  });
  const all = () => [uTab1, uTab2, vSock, adminTab1, adminTab2, admin2Sock];

  test('staff sendReportMessage: saved, delivered to the user, confirmed to the sending socket; sentBy from the token', async () => {
    const payload = {
      userId: ursula.id, orderId: 'order-1', paymentId: 'pay-1', invoiceId: 'inv-1',
      title: 'Refund issued', message: 'Your refund is on its way.', status: 'Info',
      sentBy: 'someone-else', sentByName: 'Forged',
    };
    const ack = await adminTab1.ack('sendReportMessage', payload);
    assert.equal(ack.ok, true);
    assert.equal(ack.success, true);
    assertReport(ack.message, { user: ursula, sender: admin, title: 'Refund issued', message: 'Your refund is on its way.', status: 'Info' });
    assert.equal(ack.message.orderId, 'order-1');
    assert.equal(ack.message.paymentId, 'pay-1');
    assert.equal(ack.message.invoiceId, 'inv-1');

    for (const tab of [uTab1, uTab2]) {
      const got = await tab.waitFor('receiveReportMessage', (p) => p.message.id === ack.message.id);
      assert.deepEqual(got, { success: true, message: ack.message });
    }
    const sent = await adminTab1.waitFor('reportMessageSent', (p) => p.message?.id === ack.message.id);
    assert.deepEqual(sent, ack);

    await Promise.all(all().map((c) => c.barrier()));
    assert.equal(adminTab2.received('reportMessageSent').length, 0, 'only the sending socket is told');
    assert.equal(vSock.received('receiveReportMessage').length, 0, 'other users hear nothing');
    for (const tab of [uTab1, uTab2]) assert.equal(tab.received('receiveReportMessage', (p) => p.message.id === ack.message.id).length, 1);

    const listed = await api(node, 'GET', '/api/reports', { user: ursula });
    assert.deepEqual(listed.body.reports[0], ack.message);
  });

  test('a user may not send reports: FORBIDDEN in reportMessageSent and the ack, and no error event', async () => {
    const payload = { userId: victor.id, title: 'Spoof', message: 'not allowed', status: 'Warning' };
    const ack = await uTab1.ack('sendReportMessage', payload);
    assert.equal(ack.ok, false);
    assert.equal(ack.success, false);
    assert.equal(ack.error.code, 'FORBIDDEN');
    assert.equal(typeof ack.error.message, 'string');
    const sent = await uTab1.waitFor('reportMessageSent', (p) => p.ok === false);
    assert.deepEqual(sent, ack);

    uTab1.emit('sendReportMessage', payload); // without ack: still reportMessageSent, never `error`
    const again = await uTab1.waitFor('reportMessageSent', (p) => p.ok === false);
    assert.equal(again.error.code, 'FORBIDDEN');
    await Promise.all(all().map((c) => c.barrier()));
    assert.equal(uTab1.received('error').length, 0);
    assert.equal(vSock.received('receiveReportMessage').length, 0);
    const victorReports = await api(node, 'GET', '/api/reports', { user: victor });
    assert.deepEqual(victorReports.body.reports, []);
  });

  test('an invalid report is VALIDATION through reportMessageSent and the ack, and nothing is saved', async () => {
    const base = { userId: victor.id, title: 'T', message: 'M', status: 'Info' };
    const bad = [
      { ...base, status: 'Urgent' },
      { ...base, title: '' },
      { ...base, title: 'x'.repeat(201) },
      { ...base, message: 'x'.repeat(2001) },
      { ...base, userId: 'u'.repeat(65) },
      { ...base, orderId: 'o'.repeat(65) },
      { ...base, title: 42 },
      { title: 'no user', message: 'M', status: 'Info' },
      'a string',
    ];
    for (const p of bad) {
      const ack = await adminTab1.ack('sendReportMessage', p);
      assert.equal(ack.ok, false, JSON.stringify(p).slice(0, 80));
      assert.equal(ack.success, false);
      assert.equal(ack.error.code, 'VALIDATION', JSON.stringify(p).slice(0, 80));
    }
    await adminTab1.barrier();
    assert.equal(adminTab1.received('reportMessageSent', (p) => p.ok === false).length, bad.length);
    assert.equal(adminTab1.received('error').length, 0);
    // the limits themselves are allowed
    const edge = await adminTab1.ack('sendReportMessage', { ...base, title: 't'.repeat(200), message: 'm'.repeat(2000), userId: 'v'.repeat(64) });
    assert.equal(edge.ok, true);
    const saved = await api(node, 'GET', `/api/reports?userId=${victor.id}`, { user: admin });
    assert.deepEqual(saved.body.reports, []);
  });

  test('report:read by the recipient marks it and tells the user and admins; staff and others are FORBIDDEN', async () => {
    const report = (await adminTab1.ack('sendReportMessage', { userId: ursula.id, title: 'Read me', message: 'please', status: 'Warning' })).message;

    for (const [sock, who] of [[adminTab1, 'staff'], [vSock, 'another user']]) {
      const res = await sock.ack('report:read', { reportId: report.id });
      assert.equal(res.ok, false, who);
      assert.equal(res.error.code, 'FORBIDDEN', who);
    }
    adminTab2.emit('report:read', { reportId: report.id });
    assert.equal((await adminTab2.waitFor('error', (e) => e.event === 'report:read')).error, 'FORBIDDEN');
    assert.equal((await uTab1.ack('report:read', { reportId: 'zzz' })).error.code, 'VALIDATION');
    assert.equal((await uTab1.ack('report:read', { reportId: '1'.repeat(24) })).error.code, 'NOT_FOUND');
    assert.equal((await api(node, 'GET', '/api/reports/unread-count', { user: ursula })).body.count, 2);

    const ack = await uTab2.ack('report:read', { reportId: report.id });
    assert.equal(ack.ok, true);
    assert.equal(ack.reportId, report.id);
    assert.ok(isTimestamp(ack.readAt));
    for (const s of [uTab1, uTab2, adminTab1, adminTab2, admin2Sock]) {
      const ev = await s.waitFor('report:read', (p) => p.reportId === report.id);
      assert.deepEqual(ev, { reportId: report.id, userId: ursula.id, readAt: ack.readAt });
    }
    await vSock.barrier();
    assert.equal(vSock.received('report:read').length, 0);
    const again = await uTab1.ack('report:read', { reportId: report.id });
    assert.equal(again.readAt, ack.readAt, 'reading again keeps the first readAt');

    const listed = (await api(node, 'GET', '/api/reports', { user: ursula })).body.reports.find((r) => r.id === report.id);
    assert.equal(listed.isRead, true);
    assert.equal(listed.readAt, ack.readAt);
    assert.equal((await api(node, 'GET', '/api/reports/unread-count', { user: ursula })).body.count, 1);
  });

  test('POST /api/reports: staff only, 201, delivered live; sentBy from the token', async () => {
    const body = { userId: victor.id, title: 'Invoice ready', message: 'See invoice 9', status: 'Summary', invoiceId: 'inv-9', sentBy: 'forged' };
    const res = await api(node, 'POST', '/api/reports', { user: admin2, body });
    assert.equal(res.status, 201);
    assertReport(res.body, { user: victor, sender: admin2, title: 'Invoice ready', message: 'See invoice 9', status: 'Summary' });
    const live = await vSock.waitFor('receiveReportMessage', (p) => p.message.id === res.body.id);
    assert.deepEqual(live, { success: true, message: res.body });

    const byUser = await api(node, 'POST', '/api/reports', { user: ursula, body });
    assert.equal(byUser.status, 403);
    assert.equal(byUser.body.error.code, 'FORBIDDEN');
    assert.equal((await api(node, 'POST', '/api/reports', { body })).status, 401);
    const invalid = await api(node, 'POST', '/api/reports', { user: admin, body: { ...body, status: 'Nope' } });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.error.code, 'VALIDATION');
  });

  test('GET /api/reports: own reports, newest first, unread filter and cursor pages; other users 403; staff any', async () => {
    const wendy = makeUser('wendy');
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const r = await api(node, 'POST', '/api/reports', { user: admin, body: { userId: wendy.id, title: `r${i}`, message: 'm', status: 'Issue' } });
      assert.equal(r.status, 201);
      ids.push(r.body.id);
    }
    const newestFirst = [...ids].reverse();
    const mine = await api(node, 'GET', '/api/reports', { user: wendy });
    assert.equal(mine.status, 200);
    assert.deepEqual(mine.body.reports.map((r) => r.id), newestFirst);
    assert.equal(mine.body.nextCursor, null);

    const read = await api(node, 'POST', `/api/reports/${ids[1]}/read`, { user: wendy });
    assert.equal(read.status, 200);
    assert.equal(read.body.reportId, ids[1]);
    assert.ok(isTimestamp(read.body.readAt));
    const unread = await api(node, 'GET', '/api/reports?unread=true', { user: wendy });
    assert.deepEqual(unread.body.reports.map((r) => r.id), newestFirst.filter((id) => id !== ids[1]));
    assert.equal((await api(node, 'GET', '/api/reports/unread-count', { user: wendy })).body.count, 4);

    const pages = [];
    let cursor = null;
    for (let i = 0; i < 5; i++) {
      const q = `/api/reports?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = await api(node, 'GET', q, { user: wendy });
      assert.equal(page.status, 200);
      pages.push(page.body.reports.map((r) => r.id));
      cursor = page.body.nextCursor;
      if (!cursor) break;
    }
    assert.deepEqual(pages, [newestFirst.slice(0, 2), newestFirst.slice(2, 4), newestFirst.slice(4)]);
    assert.equal(cursor, null);

    const other = await api(node, 'GET', `/api/reports?userId=${ursula.id}`, { user: wendy });
    assert.equal(other.status, 403);
    assert.equal(other.body.error.code, 'FORBIDDEN');
    const ownById = await api(node, 'GET', `/api/reports?userId=${wendy.id}`, { user: wendy });
    assert.equal(ownById.body.reports.length, 5);
    const staff = await api(node, 'GET', `/api/reports?userId=${wendy.id}&unread=true`, { user: admin2 });
    assert.equal(staff.status, 200);
    assert.equal(staff.body.reports.length, 4);
    assert.ok(staff.body.reports.every((r) => r.userId === wendy.id));
    assert.equal((await api(node, 'GET', '/api/reports?unread=maybe', { user: wendy })).status, 400);
    assert.equal((await api(node, 'GET', '/api/reports?cursor=garbage', { user: wendy })).status, 400);
    assert.equal((await api(node, 'GET', '/api/reports')).status, 401);
  });

  test('POST /api/reports/{id}/read: recipient only, emits report:read; GET unread-count', async () => {
    const r = (await api(node, 'POST', '/api/reports', { user: admin, body: { userId: ursula.id, title: 'REST read', message: 'm', status: 'Info' } })).body;
    const before = (await api(node, 'GET', '/api/reports/unread-count', { user: ursula })).body.count;
    assert.equal((await api(node, 'POST', `/api/reports/${r.id}/read`, { user: admin })).status, 403);
    assert.equal((await api(node, 'POST', `/api/reports/${r.id}/read`, { user: victor })).status, 403);
    assert.equal((await api(node, 'POST', '/api/reports/not-an-id/read', { user: ursula })).status, 400);
    assert.equal((await api(node, 'POST', `/api/reports/${'2'.repeat(24)}/read`, { user: ursula })).status, 404);
    const res = await api(node, 'POST', `/api/reports/${r.id}/read`, { user: ursula });
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body).sort(), ['readAt', 'reportId']);
    for (const s of [uTab1, adminTab2]) {
      const ev = await s.waitFor('report:read', (p) => p.reportId === r.id);
      assert.deepEqual(ev, { reportId: r.id, userId: ursula.id, readAt: res.body.readAt });
    }
    const after = (await api(node, 'GET', '/api/reports/unread-count', { user: ursula })).body.count;
    assert.equal(after, before - 1);
    assert.equal((await api(node, 'GET', '/api/reports/unread-count')).status, 401);
  });
});
