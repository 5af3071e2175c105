import { sveltekit } from '@sveltejs/kit/vite';
import { defineConfig } from 'vite';

export default defineConfig({
	plugins: [sveltekit()],
	server: {
		// `npm run dev` against a local `picloud` (cargo run): same origin for
		// the cookie, through the dev server's proxy.
		proxy: {
			'/api': 'http://127.0.0.1:8080',
			'/run': 'http://127.0.0.1:8080'
		}
	}
});
