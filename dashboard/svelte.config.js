import adapter from '@sveltejs/adapter-static';
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte';
import { readFileSync } from 'node:fs';

// The build must be reproducible byte for byte (CI rebuilds and diffs it), so
// the app's version is the package version, not the default timestamp.
const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

/** @type {import('@sveltejs/kit').Config} */
const config = {
	preprocess: vitePreprocess(),
	kit: {
		// A single-page app: every path the server does not know serves 200.html.
		adapter: adapter({ pages: 'build', assets: 'build', fallback: '200.html', strict: true }),
		// Absolute asset URLs: the fallback page is served at any depth (/apps/x/logs).
		paths: { relative: false },
		version: { name: pkg.version },
		output: { bundleStrategy: 'single' },
		// The page's own policy: nothing but this server. The inline bootstrap
		// script is allowed by its hash, so no 'unsafe-inline' for scripts.
		csp: {
			mode: 'hash',
			directives: {
				'default-src': ['self'],
				'script-src': ['self'],
				'style-src': ['self', 'unsafe-inline'],
				'img-src': ['self', 'data:'],
				'font-src': ['self'],
				'connect-src': ['self'],
				'object-src': ['none'],
				'base-uri': ['self'],
				'form-action': ['self']
			}
		}
	}
};

export default config;
