// The PiCloud admin API, as the dashboard uses it: one namespace per resource,
// mirroring the HTTP routes under /api/v1. The page authenticates with the
// HttpOnly session cookie only (it never sees a token), and every request that
// changes something carries `x-picloud-csrf: 1`, without which the server
// answers 403.

export const BASE = '/api/v1';

// ---------------------------------------------------------------------------
// DTOs (picloud-axum's JSON shapes)
// ---------------------------------------------------------------------------

export type InstanceRole = 'owner' | 'admin' | 'member';
export type AppRole = 'app_admin' | 'editor' | 'viewer';
export const APP_ROLES: AppRole[] = ['viewer', 'editor', 'app_admin'];
export const INSTANCE_ROLES: InstanceRole[] = ['member', 'admin', 'owner'];

/** RFC 3339, UTC. */
export type Time = string;
export type Uuid = string;

export interface UserDto {
	id: Uuid;
	username: string;
	email: string | null;
	instance_role: InstanceRole;
	is_active: boolean;
	created_at: Time;
}

export interface AppDto {
	id: Uuid;
	slug: string;
	name: string;
	created_at: Time;
	/** The caller's effective role: owners app_admin, admins editor, members their own. */
	my_role: AppRole | null;
}

export interface AppMemberDto {
	user_id: Uuid;
	username: string;
	email: string | null;
	instance_role: InstanceRole;
	is_active: boolean;
	role: AppRole;
	created_at: Time;
}

export interface TokenDto {
	id: Uuid;
	name: string;
	app_id: Uuid | null;
	max_role: AppRole | null;
	created_at: Time;
	expires_at: Time | null;
}

/** A token just issued: `token` is the secret, shown this once. */
export interface TokenCreatedDto extends TokenDto {
	token: string;
}

export type Visibility = 'public' | 'private';

export interface ScriptDto {
	id: Uuid;
	name: string;
	live_version: number;
	latest_version: number;
	created_at: Time;
	updated_at: Time;
	visibility: Visibility;
}

export interface VersionDto {
	version: number;
	size_bytes: number;
	created_by: Uuid;
	created_at: Time;
	live: boolean;
}

export interface ScriptDetailDto extends ScriptDto {
	versions: VersionDto[];
}

export interface VersionSourceDto extends VersionDto {
	source: string;
}

export interface DeployDto extends ScriptDto {
	/** True when the source was the live version's already. */
	unchanged: boolean;
}

export interface InvocationDto {
	script: string;
	at: Time;
	version: number;
	status: number;
	duration_us: number;
	logs: string[];
	error: string | null;
	line: number | null;
	column: number | null;
	trigger: string;
	request_id: string;
	method: string | null;
	path: string | null;
	query: string | null;
}

export interface Limits {
	wall_clock_ms: number;
	max_operations: number;
	max_call_depth: number;
	max_expr_depth: number;
	max_function_expr_depth: number;
	max_string_bytes: number;
	max_array_len: number;
	max_map_len: number;
	max_variables: number;
	max_functions: number;
	max_output_bytes: number;
	max_memory_bytes: number;
	max_queued_jobs: number;
	max_queued_bytes: number;
	kv_max_keys: number;
	kv_max_bytes: number;
}

export interface UsageDto {
	script_source_bytes: number;
	script_source_bytes_quota: number;
	versions_per_script_quota: number;
	invocations_kept_per_script: number;
	invocation_bytes_per_script: number;
	invocation_bytes_per_app: number;
	invocation_record_max_bytes: number;
}

export type PublicErrors = 'detailed' | 'generic';

export interface AppSettingsDto {
	public_errors: PublicErrors;
	/** null: any host the instance's egress rule allows. */
	egress_hosts: string[] | null;
}

export interface SettingsPatch {
	public_errors?: PublicErrors;
	egress_hosts?: string[] | null;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'dead' | 'cancelled';
export const JOB_STATUSES: JobStatus[] = ['queued', 'running', 'succeeded', 'dead', 'cancelled'];

export interface AttemptDto {
	attempt: number;
	version: number;
	status: 'succeeded' | 'failed';
	http_status: number;
	duration_us: number;
	logs: string[];
	error: string | null;
	at: Time;
}

export interface StoredRequestDto {
	method: string;
	path: string;
	query: [string, string][];
	headers: Record<string, string>;
	body: string;
}

export interface JobDto {
	id: string;
	script: string;
	/** `async`, `cron` or `event`. */
	kind: string;
	status: JobStatus;
	attempt: number;
	max_attempts: number;
	attempts: AttemptDto[];
	result: { status: number; body: string } | null;
	created_at: Time;
	run_at: Time;
	updated_at: Time;
	request: StoredRequestDto | null;
	schedule: string | null;
	scheduled_at: Time | null;
	topic: string | null;
	event_id: Uuid | null;
	payload: unknown;
}

export interface ScheduleDto {
	name: string;
	script: string;
	cron: string;
	timezone: string;
	payload: unknown;
	enabled: boolean;
	max_attempts: number;
	next_run_at: Time | null;
	last_run_at: Time | null;
	last_status: JobStatus | null;
	created_at: Time;
	updated_at: Time;
}

export interface ScheduleInput {
	script: string;
	cron: string;
	timezone?: string;
	payload?: unknown;
	enabled?: boolean;
	max_attempts?: number;
}

export interface SubscriptionDto {
	name: string;
	topic: string;
	script: string;
	max_attempts: number;
	created_at: Time;
	updated_at: Time;
}

export interface SubscriptionInput {
	topic: string;
	script: string;
	max_attempts?: number;
}

export interface DomainDto {
	hostname: string;
	created_at: Time;
}

export interface EnvVarDto {
	name: string;
	/** Never present for a secret. */
	value: string | null;
	secret: boolean;
	updated_at: Time;
}

export interface KvEntryDto {
	key: string;
	value: unknown;
	version: number;
	expires_at: Time | null;
	updated_at: Time;
}

export interface KvPageDto {
	keys: string[];
	cursor: string | null;
	usage: { keys: number; bytes: number };
}

// ---------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------

/** A failed request: the HTTP status and the server's `error` text. */
export class ApiError extends Error {
	readonly status: number;
	/** The whole error body (a compile error's `line` and `column` are here). */
	readonly body: Record<string, unknown>;
	/** `Retry-After`, in seconds, when the server sent it. */
	readonly retryAfter: number | null;

	constructor(status: number, message: string, body: Record<string, unknown> = {}, retryAfter: number | null = null) {
		super(message);
		this.name = 'ApiError';
		this.status = status;
		this.body = body;
		this.retryAfter = retryAfter;
	}

	get forbidden(): boolean {
		return this.status === 403;
	}

	get notFound(): boolean {
		return this.status === 404;
	}
}

/** A compile error's position (a 422 from a deploy). */
export function errorPosition(e: unknown): { line: number; column: number | null } | null {
	if (!(e instanceof ApiError) || typeof e.body.line !== 'number') return null;
	return { line: e.body.line, column: typeof e.body.column === 'number' ? e.body.column : null };
}

/** Called on a 401 from anything but the session endpoint: the session ended. */
let unauthorized: () => void = () => {};
export function onUnauthorized(f: () => void): void {
	unauthorized = f;
}

type Query = Record<string, string | number | boolean | null | undefined>;

interface RequestOptions {
	query?: Query;
	json?: unknown;
	text?: string;
	/** Don't treat a 401 as the end of the session (the sign-in itself). */
	quiet401?: boolean;
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `encodeURIComponent` for a path segment. */
export const seg = (s: string): string => encodeURIComponent(s);

function url(path: string, query?: Query): string {
	let u = BASE + path;
	if (query) {
		const q = new URLSearchParams();
		for (const [k, v] of Object.entries(query)) {
			if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
		}
		const s = q.toString();
		if (s) u += '?' + s;
	}
	return u;
}

async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
	const headers: Record<string, string> = { accept: 'application/json' };
	if (!SAFE.has(method)) headers['x-picloud-csrf'] = '1';
	let body: BodyInit | undefined;
	if (opts.json !== undefined) {
		headers['content-type'] = 'application/json';
		body = JSON.stringify(opts.json);
	} else if (opts.text !== undefined) {
		headers['content-type'] = 'text/plain; charset=utf-8';
		body = opts.text;
	}
	let res: Response;
	try {
		res = await fetch(url(path, opts.query), {
			method,
			headers,
			body,
			credentials: 'same-origin',
			cache: 'no-store'
		});
	} catch {
		throw new ApiError(0, 'The server could not be reached. Check your connection and try again.');
	}
	if (res.status === 204) return undefined as T;
	const text = await res.text();
	let parsed: unknown = undefined;
	if (text) {
		try {
			parsed = JSON.parse(text);
		} catch {
			parsed = undefined;
		}
	}
	if (!res.ok) {
		const errBody =
			parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
		const message =
			typeof errBody.error === 'string' ? errBody.error : text.trim() || `${res.status} ${res.statusText}`.trim();
		const ra = Number(res.headers.get('retry-after'));
		const err = new ApiError(res.status, message, errBody, Number.isFinite(ra) && ra > 0 ? ra : null);
		if (res.status === 401 && !opts.quiet401) unauthorized();
		throw err;
	}
	return parsed as T;
}

const get = <T>(path: string, query?: Query) => request<T>('GET', path, { query });
const post = <T>(path: string, json?: unknown) => request<T>('POST', path, { json: json ?? {} });
const put = <T>(path: string, json: unknown) => request<T>('PUT', path, { json });
const patch = <T>(path: string, json: unknown) => request<T>('PATCH', path, { json });
const del = (path: string) => request<void>('DELETE', path);

const appPath = (app: string) => `/admin/apps/${seg(app)}`;

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

/** The dashboard's sign-in: an HttpOnly cookie the page never reads. */
export const session = {
	/** Who is signed in; 401 (an ApiError) when nobody is. */
	current: () => request<{ user: UserDto }>('GET', '/auth/session', { quiet401: true }).then((r) => r.user),
	signIn: (username: string, password: string) =>
		request<{ user: UserDto }>('POST', '/auth/session', { json: { username, password }, quiet401: true }).then(
			(r) => r.user
		),
	signOut: () => request<void>('DELETE', '/auth/session', { quiet401: true }),
	/** `PUT /admin/me/password`. */
	changePassword: (current_password: string | null, new_password: string) =>
		// A wrong current password is a 401 too: it must not end the session.
		request<void>('PUT', '/admin/me/password', {
			json: current_password ? { current_password, new_password } : { new_password },
			quiet401: true
		})
};

export const apps = {
	list: () => get<AppDto[]>('/admin/apps'),
	get: (app: string) => get<AppDto>(appPath(app)),
	create: (slug: string, name: string) => post<AppDto>('/admin/apps', { slug, name }),
	rename: (app: string, name: string) => patch<AppDto>(appPath(app), { name }),
	delete: (app: string) => del(appPath(app)),
	settings: (app: string) => get<AppSettingsDto>(`${appPath(app)}/settings`),
	patchSettings: (app: string, p: SettingsPatch) => patch<AppSettingsDto>(`${appPath(app)}/settings`, p),
	limits: (app: string) => get<Limits>(`${appPath(app)}/limits`),
	patchLimits: (app: string, p: Partial<Limits>) => patch<Limits>(`${appPath(app)}/limits`, p),
	usage: (app: string) => get<UsageDto>(`${appPath(app)}/usage`),
	/** The app's invocations across scripts, newest first (at most 100). */
	invocations: (
		app: string,
		q: { script?: string; status?: number; since?: string; request_id?: string; limit?: number } = {}
	) => get<InvocationDto[]>(`${appPath(app)}/invocations`, q),
	/** The URL of the live log stream (Server-Sent Events, `invocation` events). */
	logStreamUrl: (app: string, script?: string) =>
		url(`${appPath(app)}/logs/stream`, script ? { script } : undefined)
};

export const scripts = {
	list: (app: string) => get<ScriptDto[]>(`${appPath(app)}/scripts`),
	get: (app: string, name: string) => get<ScriptDetailDto>(`${appPath(app)}/scripts/${seg(name)}`),
	version: (app: string, name: string, version: number) =>
		get<VersionSourceDto>(`${appPath(app)}/scripts/${seg(name)}/versions/${version}`),
	/** Deploys `source` as a new version (422 with `line`/`column` if it does not compile). */
	deploy: (app: string, name: string, source: string) =>
		request<DeployDto>('PUT', `${appPath(app)}/scripts/${seg(name)}`, { text: source }),
	rollback: (app: string, name: string, version: number) =>
		post<ScriptDto>(`${appPath(app)}/scripts/${seg(name)}/rollback`, { version }),
	setVisibility: (app: string, name: string, visibility: Visibility) =>
		patch<ScriptDto>(`${appPath(app)}/scripts/${seg(name)}`, { visibility }),
	delete: (app: string, name: string) => del(`${appPath(app)}/scripts/${seg(name)}`),
	invocations: (app: string, name: string, limit = 20) =>
		get<InvocationDto[]>(`${appPath(app)}/scripts/${seg(name)}/invocations`, { limit })
};

export const jobs = {
	list: (app: string, q: { status?: JobStatus; script?: string; limit?: number } = {}) =>
		get<JobDto[]>(`${appPath(app)}/jobs`, q),
	get: (app: string, id: string) => get<JobDto>(`${appPath(app)}/jobs/${seg(id)}`),
	retry: (app: string, id: string) => post<JobDto>(`${appPath(app)}/jobs/${seg(id)}/retry`),
	cancel: (app: string, id: string) => post<JobDto>(`${appPath(app)}/jobs/${seg(id)}/cancel`),
	delete: (app: string, id: string) => del(`${appPath(app)}/jobs/${seg(id)}`)
};

export const schedules = {
	list: (app: string) => get<ScheduleDto[]>(`${appPath(app)}/schedules`),
	get: (app: string, name: string) => get<ScheduleDto>(`${appPath(app)}/schedules/${seg(name)}`),
	/** Creates or replaces (422 with the server's message for a bad cron or zone). */
	put: (app: string, name: string, input: ScheduleInput) =>
		put<ScheduleDto>(`${appPath(app)}/schedules/${seg(name)}`, input),
	delete: (app: string, name: string) => del(`${appPath(app)}/schedules/${seg(name)}`)
};

export const subscriptions = {
	list: (app: string) => get<SubscriptionDto[]>(`${appPath(app)}/subscriptions`),
	put: (app: string, name: string, input: SubscriptionInput) =>
		put<SubscriptionDto>(`${appPath(app)}/subscriptions/${seg(name)}`, input),
	delete: (app: string, name: string) => del(`${appPath(app)}/subscriptions/${seg(name)}`)
};

export const domains = {
	list: (app: string) => get<DomainDto[]>(`${appPath(app)}/domains`),
	add: (app: string, hostname: string) => post<DomainDto>(`${appPath(app)}/domains`, { hostname }),
	remove: (app: string, hostname: string) => del(`${appPath(app)}/domains/${seg(hostname)}`)
};

export const appMembers = {
	list: (app: string) => get<AppMemberDto[]>(`${appPath(app)}/members`),
	/** 409 when already a member; 422 for an inactive user, an owner or an admin. */
	add: (app: string, user_id: Uuid, role: AppRole) =>
		post<AppMemberDto>(`${appPath(app)}/members`, { user_id, role }),
	setRole: (app: string, user_id: Uuid, role: AppRole) =>
		patch<AppMemberDto>(`${appPath(app)}/members/${seg(user_id)}`, { role }),
	remove: (app: string, user_id: Uuid) => del(`${appPath(app)}/members/${seg(user_id)}`)
};

export const env = {
	list: (app: string) => get<EnvVarDto[]>(`${appPath(app)}/env`),
	get: (app: string, name: string) => get<EnvVarDto>(`${appPath(app)}/env/${seg(name)}`),
	put: (app: string, name: string, value: string, secret: boolean) =>
		put<EnvVarDto>(`${appPath(app)}/env/${seg(name)}`, { value, secret }),
	delete: (app: string, name: string) => del(`${appPath(app)}/env/${seg(name)}`)
};

export const kv = {
	list: (app: string, q: { prefix?: string; cursor?: string | null; limit?: number } = {}) =>
		get<KvPageDto>(`${appPath(app)}/kv`, q),
	get: (app: string, key: string) => get<KvEntryDto>(`${appPath(app)}/kv/${seg(key)}`),
	put: (app: string, key: string, value: unknown, ttl?: number) =>
		put<KvEntryDto>(`${appPath(app)}/kv/${seg(key)}`, ttl ? { value, ttl } : { value }),
	delete: (app: string, key: string) => del(`${appPath(app)}/kv/${seg(key)}`)
};

/** The user directory (`/admin/admins`): owners and admins only. */
export const users = {
	list: () => get<UserDto[]>('/admin/admins'),
	create: (u: { username: string; email?: string | null; password: string; instance_role: InstanceRole }) =>
		post<UserDto>('/admin/admins', u),
	update: (id: Uuid, p: { is_active?: boolean; instance_role?: InstanceRole }) =>
		patch<UserDto>(`/admin/admins/${seg(id)}`, p)
};

/** The caller's own API tokens. */
export const tokens = {
	list: () => get<TokenDto[]>('/admin/tokens'),
	create: (t: { name: string; app?: string; max_role?: AppRole; expires_in?: number }) =>
		post<TokenCreatedDto>('/admin/tokens', t),
	revoke: (id: Uuid) => del(`/admin/tokens/${seg(id)}`)
};

/** What `/run/{app}/{script}` answered, for the "try it" panel. */
export interface RunResult {
	status: number;
	statusText: string;
	headers: [string, string][];
	body: string;
	ms: number;
}

/**
 * Calls a script's public endpoint. No credentials: the server drops them
 * anyway, and a script must behave as it would for any caller.
 */
export async function run(
	app: string,
	script: string,
	req: { method: string; path: string; body?: string; contentType?: string }
): Promise<RunResult> {
	let rest = req.path.trim();
	if (rest && !rest.startsWith('/') && !rest.startsWith('?')) rest = '/' + rest;
	const target = `/run/${seg(app)}/${seg(script)}${rest}`;
	const headers: Record<string, string> = {};
	const hasBody = !['GET', 'HEAD'].includes(req.method) && req.body !== undefined && req.body !== '';
	if (hasBody && req.contentType) headers['content-type'] = req.contentType;
	const started = performance.now();
	let res: Response;
	try {
		res = await fetch(target, {
			method: req.method,
			headers,
			body: hasBody ? req.body : undefined,
			credentials: 'omit',
			cache: 'no-store'
		});
	} catch {
		throw new ApiError(0, 'The server could not be reached.');
	}
	const body = await res.text();
	const ms = performance.now() - started;
	return { status: res.status, statusText: res.statusText, headers: [...res.headers.entries()], body, ms };
}
