// One thing loaded from the API, with the states every view shows: loading,
// loaded, failed (with the server's message) or forbidden (a 403).

import { ApiError } from './api';

export class Resource<T> {
	data = $state<T | undefined>(undefined);
	error = $state<ApiError | null>(null);
	loading = $state(false);
	#fn: () => Promise<T>;
	#seq = 0;

	constructor(fn: () => Promise<T>, start = true) {
		this.#fn = fn;
		if (start) void this.load();
	}

	get forbidden(): boolean {
		return this.error?.status === 403;
	}

	/** Loads (again). A later call wins over an earlier one still under way. */
	async load(): Promise<void> {
		const seq = ++this.#seq;
		this.loading = true;
		try {
			const data = await this.#fn();
			if (seq !== this.#seq) return;
			this.data = data;
			this.error = null;
		} catch (e) {
			if (seq !== this.#seq) return;
			this.error = toApiError(e);
		} finally {
			if (seq === this.#seq) this.loading = false;
		}
	}
}

export function toApiError(e: unknown): ApiError {
	if (e instanceof ApiError) return e;
	return new ApiError(0, e instanceof Error ? e.message : String(e));
}

export function message(e: unknown): string {
	return toApiError(e).message;
}
