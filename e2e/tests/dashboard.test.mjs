// The dashboard in a real browser (Debian's Chromium via playwright-core)
// against the real binary on the memory store. Drives the UI by the
// accessible names DESIGN.md fixes; screenshots go to target/screenshots/.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { openBrowser, shot, signIn, startServer } from './harness.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

/** The tab names of the app page `slug`, as the page shows them. */
async function tabsOf(page, slug) {
  await page.goto(`${server.base}/`);
  await page.getByRole('link', { name: slug, exact: false }).first().click();
  await page.getByRole('tab').first().waitFor();
  const names = await page.getByRole('tab').allInnerTexts();
  return names.map((n) => n.trim().split(/\s+/)[0]);
}

describe('the dashboard', () => {
  test('signs in and out, and keeps the token out of reach of page scripts', async () => {
    await server.user('olive', 'owner');
    const b = await openBrowser(server);
    try {
      await b.page.goto(`${server.base}/`);
      await shot(b.page, 'sign-in');
      await signIn(b.page, server, 'olive');
      await shot(b.page, 'apps');
      const cookies = await b.context.cookies();
      const session = cookies.find((c) => c.name === 'picloud_session');
      assert.ok(session, 'the session cookie is set');
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');
      const readable = await b.page.evaluate(() => ({
        cookie: document.cookie,
        local: JSON.stringify(localStorage),
        session: JSON.stringify(sessionStorage),
      }));
      assert.ok(!readable.cookie.includes('picloud_session'), 'document.cookie shows the session');
      assert.ok(!/pc_[0-9a-f]{16}/.test(readable.local + readable.session), 'a token is in web storage');
      await b.page.getByRole('button', { name: 'Sign out' }).click();
      await b.page.getByRole('button', { name: 'Sign in' }).waitFor();
      const status = await b.page.evaluate(() => fetch('/api/v1/auth/session').then((r) => r.status));
      assert.equal(status, 401);
    } finally {
      await b.close();
    }
  });

  test('shows each role its tabs', async () => {
    const owner = 'tabowner';
    await server.user(owner, 'owner');
    await server.user('tabadmin', 'admin');
    const mia = await server.user('tabmia', 'member');
    const vic = await server.user('tabvic', 'member');
    await server.app('tabs');
    await server.grant('tabs', mia, 'app_admin');
    await server.grant('tabs', vic, 'viewer');
    const all = ['Scripts', 'Schedules', 'Jobs', 'Domains', 'Members', 'Settings'];
    const noMembers = all.filter((t) => t !== 'Members');
    for (const [user, expected] of [
      [owner, all],
      ['tabadmin', noMembers],
      ['tabmia', all],
      ['tabvic', noMembers],
    ]) {
      const b = await openBrowser(server);
      try {
        await signIn(b.page, server, user);
        assert.deepEqual(await tabsOf(b.page, 'tabs'), expected, user);
        await shot(b.page, `tabs-${user}`);
      } finally {
        await b.close();
      }
    }
  });

  test('rejects a cookie write without the CSRF header', async () => {
    await server.user('csrfer', 'owner');
    const b = await openBrowser(server);
    try {
      await signIn(b.page, server, 'csrfer');
      const [without, withHeader] = await b.page.evaluate(async () => {
        const post = (headers) =>
          fetch('/api/v1/admin/apps', {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: JSON.stringify({ slug: `csrf-${Math.random().toString(36).slice(2, 8)}`, name: 'x' }),
          }).then((r) => r.status);
        return [await post({}), await post({ 'x-picloud-csrf': '1' })];
      });
      assert.equal(without, 403);
      assert.equal(withHeader, 201);
    } finally {
      await b.close();
    }
  });

  test("keeps a /run page away from a signed-in admin's session", async () => {
    await server.user('sandboxer', 'owner');
    await server.app('sbx');
    const source = `response(200, \`<!doctype html><title>start</title><script>
fetch("/api/v1/admin/apps").then(r => r.text()).then(t => { document.title = "read:" + t.slice(0, 40) },
  e => { document.title = "blocked" });
</script>\`, #{ "content-type": "text/html" })`;
    const r = await server.api('PUT', '/admin/apps/sbx/scripts/page', source);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
    const b = await openBrowser(server);
    try {
      await signIn(b.page, server, 'sandboxer');
      await b.page.goto(`${server.base}/run/sbx/page`);
      await b.page.waitForFunction(() => document.title !== 'start', null, { timeout: 10000 });
      const title = await b.page.title();
      assert.equal(title, 'blocked', `the script's page read the API: ${title}`);
    } finally {
      await b.close();
    }
  });
});
