// The world of a browser test: the real `picloud` binary on the memory
// store on a free loopback port, Debian's Chromium through playwright-core,
// and helpers to seed users and apps through the HTTP API.
//
// Every request the page makes must go to the server under test: any other
// (a CDN, a font, analytics) fails the test that made it.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
const target = process.env.CARGO_TARGET_DIR ?? path.join(root, 'target');
export const binary = process.env.PICLOUD_BIN ?? path.join(target, 'debug', 'picloud');
export const screenshots = path.join(target, 'screenshots');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const PASSWORD = 'correct horse battery';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Starts the binary; resolves once /readyz answers 200. */
export async function startServer() {
  const port = await freePort();
  const token = `e2e_${randomBytes(24).toString('hex')}`;
  const env = { ...process.env, PICLOUD_LISTEN: `127.0.0.1:${port}`, PICLOUD_BOOTSTRAP_TOKEN: token, RUST_LOG: 'warn' };
  delete env.DATABASE_URL;
  const child = spawn(binary, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.status === 200) break;
    } catch { /* not yet */ }
    if (child.exitCode !== null) throw new Error(`picloud exited: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const api = async (method, p, body, opts = {}) => {
    const headers = { authorization: `Bearer ${opts.token ?? token}` };
    let payload;
    if (body !== undefined) {
      if (typeof body === 'string') {
        headers['content-type'] = 'text/plain';
        payload = body;
      } else {
        headers['content-type'] = 'application/json';
        payload = JSON.stringify(body);
      }
    }
    const r = await fetch(`${base}/api/v1${p}`, { method, headers, body: payload });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = text; }
    return { status: r.status, body: json };
  };
  const server = {
    base,
    token,
    api,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('exit', r)));
    },
    /** Creates a user (instance role `member`, `admin` or `owner`); returns its id. */
    async user(username, role = 'member', email = null) {
      const r = await api('POST', '/admin/admins', { username, password: PASSWORD, instance_role: role, email });
      if (r.status !== 201) throw new Error(`create user ${username}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.id;
    },
    async app(slug) {
      const r = await api('POST', '/admin/apps', { slug, name: slug });
      if (r.status !== 201) throw new Error(`create app ${slug}: ${r.status}`);
      return r.body;
    },
    async grant(slug, userId, role) {
      const r = await api('POST', `/admin/apps/${slug}/members`, { user_id: userId, role });
      if (r.status !== 201) throw new Error(`grant ${role}: ${r.status} ${JSON.stringify(r.body)}`);
    },
  };
  return server;
}

/** A browser page that fails on any request beyond `server`. */
export async function openBrowser(server, { width = 1280, height = 800 } = {}) {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const foreign = [];
  const origin = new URL(server.base).origin;
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return {
    browser,
    context,
    page,
    foreign,
    errors,
    async close() {
      await browser.close();
      if (foreign.length) throw new Error(`the page requested outside the server: ${foreign.join(', ')}`);
    },
  };
}

/** Signs in through the form. */
export async function signIn(page, server, username, password = PASSWORD) {
  await page.goto(`${server.base}/`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Saves a screenshot under target/screenshots/. */
export async function shot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}
