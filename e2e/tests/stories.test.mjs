// The dashboard's stories in a real browser: the whole Members story of
// seed 001, a compile error shown at its line, a schedule created with its
// next run, a dead job retried, and screenshots of every page at desktop
// and phone widths (no sideways scrolling at 390 px).

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

/** Opens app `slug`'s tab `tab` (by the names DESIGN.md fixes). */
async function openTab(page, slug, tab) {
  await page.goto(`${server.base}/apps/${slug}`);
  await page.getByRole('tab', { name: new RegExp(`^${tab}`) }).click();
}

async function until(what, check, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const got = await check();
    if (got) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('dashboard stories', () => {
  test('members: add, promote, demote, remove with confirm; inactive greyed; a member app admin cannot add', async () => {
    await server.user('mo', 'owner');
    const mia = await server.user('mia', 'member', 'mia@example.test');
    await server.user('max', 'member');
    await server.user('adminuser', 'admin');
    const ina = await server.user('ina', 'member');
    const maa = await server.user('maa', 'member');
    await server.app('crew');
    await server.grant('crew', ina, 'viewer');
    await server.grant('crew', maa, 'app_admin');
    const off = await server.api('PATCH', `/admin/admins/${ina}`, { is_active: false });
    assert.equal(off.status, 200);

    const b = await openBrowser(server);
    try {
      const { page } = b;
      await signIn(page, server, 'mo');
      await openTab(page, 'crew', 'Members');
      const row = (name) => page.locator('tr', { has: page.getByText(name, { exact: true }) });
      // The inactive user is greyed out.
      await row('ina').waitFor();
      assert.ok(await row('ina').evaluate((el) => el.classList.contains('inactive')));
      assert.equal(await row('maa').evaluate((el) => el.classList.contains('inactive')), false);
      // Only active members, not on the app yet, are offered.
      const offered = await page.getByLabel('User').locator('option').allInnerTexts();
      assert.ok(offered.includes('mia') && offered.includes('max'), offered.join());
      assert.ok(!offered.includes('ina') && !offered.includes('maa') && !offered.includes('adminuser'), offered.join());
      // Add.
      await page.getByLabel('User').selectOption({ label: 'mia' });
      await page.getByLabel('Role').selectOption({ label: 'Editor' });
      await page.getByRole('button', { name: 'Add member' }).click();
      await row('mia').getByText('editor', { exact: true }).waitFor();
      await shot(page, 'members');
      // Promote, then demote.
      await page.getByRole('button', { name: 'Actions for mia' }).click();
      await page.getByRole('menuitem', { name: 'Make app admin' }).click();
      await row('mia').getByText('app admin', { exact: true }).waitFor();
      await page.getByRole('button', { name: 'Actions for mia' }).click();
      await page.getByRole('menuitem', { name: 'Make viewer' }).click();
      await row('mia').getByText('viewer', { exact: true }).waitFor();
      // Remove, through the confirmation.
      await page.getByRole('button', { name: 'Actions for mia' }).click();
      await page.getByRole('menuitem', { name: 'Remove' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      await shot(page, 'members-remove');
      await dialog.getByRole('button', { name: 'Remove' }).click();
      await row('mia').waitFor({ state: 'detached' });
      const members = await server.api('GET', '/admin/apps/crew/members');
      assert.ok(!members.body.some((m) => m.user_id === mia), JSON.stringify(members.body));
    } finally {
      await b.close();
    }

    // A member app admin sees the add form disabled, and why.
    const c = await openBrowser(server);
    try {
      await signIn(c.page, server, 'maa');
      await openTab(c.page, 'crew', 'Members');
      await c.page.getByText('needs access to the user directory').waitFor();
      assert.equal(await c.page.getByLabel('User').isDisabled(), true);
      assert.equal(await c.page.getByRole('button', { name: 'Add member' }).isDisabled(), true);
      await shot(c.page, 'members-app-admin');
    } finally {
      await c.close();
    }
  });

  test('the menu and the dialog work by keyboard, and focus returns', async () => {
    await server.user('keys', 'owner');
    const kim = await server.user('kim', 'member');
    await server.app('keys');
    await server.grant('keys', kim, 'viewer');
    const b = await openBrowser(server);
    try {
      const { page } = b;
      await signIn(page, server, 'keys');
      await openTab(page, 'keys', 'Members');
      const button = page.getByRole('button', { name: 'Actions for kim' });
      await button.focus();
      await page.keyboard.press('Enter');
      await page.getByRole('menu').waitFor();
      // Escape closes the menu and gives focus back to its button.
      await page.keyboard.press('Escape');
      await page.getByRole('menu').waitFor({ state: 'detached' });
      assert.ok(await button.evaluate((el) => el === document.activeElement), 'focus did not return to the menu button');
      // Open again, move to Remove with the arrow keys, choose it.
      await page.keyboard.press('Enter');
      await page.getByRole('menu').waitFor();
      for (let i = 0; i < 4; i++) {
        const focused = await page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
        if (focused.startsWith('Remove')) break;
        await page.keyboard.press('ArrowDown');
      }
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      // Focus is inside the dialog; Escape cancels it and focus comes back.
      assert.ok(await dialog.evaluate((el) => el.contains(document.activeElement)), 'focus is not in the dialog');
      await page.keyboard.press('Escape');
      await dialog.waitFor({ state: 'detached' });
      assert.ok(
        await button.evaluate((el) => el === document.activeElement || el.contains(document.activeElement)),
        'focus did not return after the dialog'
      );
      // Nothing was removed.
      const members = await server.api('GET', '/admin/apps/keys/members');
      assert.equal(members.body.length, 1);
    } finally {
      await b.close();
    }
  });

  test('a script with a syntax error is shown at its line', async () => {
    await server.user('dev', 'owner');
    await server.app('code');
    const b = await openBrowser(server);
    try {
      const { page } = b;
      await signIn(page, server, 'dev');
      await openTab(page, 'code', 'Scripts');
      await page.getByLabel('Script name').fill('broken');
      await page.getByRole('button', { name: 'New script' }).click();
      await page.getByLabel('Source of broken').fill('let x = 1;\nlet y = ;\nx');
      await page.getByRole('button', { name: 'Deploy' }).click();
      const alert = page.locator('.compile[role="alert"]');
      await alert.waitFor();
      assert.match(await alert.innerText(), /line 2/);
      await shot(page, 'scripts-compile-error');
      // Nothing was stored.
      const scripts = await server.api('GET', '/admin/apps/code/scripts');
      assert.deepEqual(scripts.body, []);
    } finally {
      await b.close();
    }
  });

  test('a schedule created in the UI appears with its next run', async () => {
    await server.user('sched', 'owner');
    await server.app('cron');
    await server.api('PUT', '/admin/apps/cron/scripts/tick', '"tick"');
    const b = await openBrowser(server);
    try {
      const { page } = b;
      await signIn(page, server, 'sched');
      await openTab(page, 'cron', 'Schedules');
      // The schedule form comes first (the subscription form has a Name too).
      await page.getByLabel('Name', { exact: true }).first().fill('nightly');
      await page.getByLabel('Script', { exact: true }).selectOption('tick');
      await page.getByLabel('Cron').fill('30 2 * * *');
      await page.getByRole('button', { name: 'Save schedule' }).click();
      const row = page.locator('tr', { has: page.getByText('nightly', { exact: true }) });
      await row.waitFor();
      const text = await row.innerText();
      assert.match(text, /tick/);
      assert.match(text, /in \d+|tomorrow|today|\d{1,2}:\d{2}/, text);
      await shot(page, 'schedules');
      const saved = await server.api('GET', '/admin/apps/cron/schedules/nightly');
      assert.equal(saved.status, 200);
      assert.ok(saved.body.next_run_at, JSON.stringify(saved.body));
    } finally {
      await b.close();
    }
  });

  test('a dead job is retried from the Jobs tab', async () => {
    await server.user('ops', 'owner');
    await server.app('work');
    await server.api('PUT', '/admin/apps/work/scripts/job', 'throw "broken"');
    const r = await fetch(`${server.base}/async/work/job`, { method: 'POST', headers: { 'picloud-max-attempts': '1' }, body: '{}' });
    assert.equal(r.status, 202);
    const { job_id } = await r.json();
    await until('the job to die', async () => (await server.api('GET', `/admin/apps/work/jobs/${job_id}`)).body.status === 'dead');
    // The fix, then the retry from the UI.
    await server.api('PUT', '/admin/apps/work/scripts/job', '"fixed"');
    const b = await openBrowser(server);
    try {
      const { page } = b;
      await signIn(page, server, 'ops');
      await openTab(page, 'work', 'Jobs');
      // Dead letters come first; a job's actions are in its details.
      await page.getByText(job_id.slice(0, 8), { exact: true }).first().click();
      const retry = page.getByRole('button', { name: `Retry job ${job_id.slice(0, 8)}` });
      await retry.waitFor();
      await shot(page, 'jobs-dead');
      await retry.click();
      await until('the retried job to succeed', async () => (await server.api('GET', `/admin/apps/work/jobs/${job_id}`)).body.status === 'succeeded');
    } finally {
      await b.close();
    }
  });

  test('every page, at 1280x800 and at 390 px wide', async () => {
    await server.user('shots', 'owner');
    await server.app('gallery');
    await server.api('PUT', '/admin/apps/gallery/scripts/hello', '"hello"');
    for (const [label, size] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
      const b = await openBrowser(server, size);
      try {
        const { page } = b;
        await signIn(page, server, 'shots');
        const pages = [
          ['apps', '/'],
          ['users', '/users'],
          ['tokens', '/tokens'],
          ['app-scripts', '/apps/gallery?script=hello'],
          ['app-schedules', '/apps/gallery?tab=schedules'],
          ['app-jobs', '/apps/gallery?tab=jobs'],
          ['app-domains', '/apps/gallery?tab=domains'],
          ['app-members', '/apps/gallery?tab=members'],
          ['app-settings', '/apps/gallery?tab=settings'],
          ['app-logs', '/apps/gallery/logs'],
        ];
        for (const [name, path] of pages) {
          await page.goto(`${server.base}${path}`);
          await page.getByRole('button', { name: 'Sign out' }).waitFor();
          await page.waitForLoadState('networkidle').catch(() => {});
          await shot(page, `${label}-${name}`);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 1, `${label} ${name} scrolls sideways by ${overflow}px`);
        }
        assert.deepEqual(b.errors, []);
      } finally {
        await b.close();
      }
    }
  });
});
