// How times, durations and sizes read on the page.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function when(t: string | null | undefined): string {
	if (!t) return '—';
	const d = new Date(t);
	return Number.isNaN(d.getTime()) ? t : dateTime.format(d);
}

export function day(t: string | null | undefined): string {
	if (!t) return '—';
	const d = new Date(t);
	return Number.isNaN(d.getTime()) ? t : dateOnly.format(d);
}

export function clock(t: string | null | undefined): string {
	if (!t) return '—';
	const d = new Date(t);
	return Number.isNaN(d.getTime()) ? t : timeOnly.format(d);
}

/** "in 5 min", "3 h ago". */
export function relative(t: string | null | undefined, now = Date.now()): string {
	if (!t) return '—';
	const ms = new Date(t).getTime() - now;
	if (Number.isNaN(ms)) return t;
	const abs = Math.abs(ms);
	let text: string;
	if (abs < 45_000) text = `${Math.max(1, Math.round(abs / 1000))} s`;
	else if (abs < 45 * 60_000) text = `${Math.round(abs / 60_000)} min`;
	else if (abs < 36 * 3_600_000) text = `${Math.round(abs / 3_600_000)} h`;
	else text = `${Math.round(abs / 86_400_000)} d`;
	return ms >= 0 ? `in ${text}` : `${text} ago`;
}

/** A duration in microseconds, in the unit that reads best. */
export function micros(us: number | null | undefined): string {
	if (us === null || us === undefined) return '—';
	if (us < 1000) return `${us} µs`;
	if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
	return `${(us / 1_000_000).toFixed(2)} s`;
}

export function bytes(n: number | null | undefined): string {
	if (n === null || n === undefined) return '—';
	if (n < 1024) return `${n} B`;
	const units = ['KiB', 'MiB', 'GiB', 'TiB'];
	let v = n / 1024;
	let i = 0;
	while (v >= 1024 && i < units.length - 1) {
		v /= 1024;
		i++;
	}
	return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function appRoleLabel(r: string | null | undefined): string {
	if (r === 'app_admin') return 'app admin';
	return r ?? 'none';
}

/** The status class of an HTTP status: ok, warn (4xx), bad (5xx). */
export function statusTone(s: number): 'ok' | 'warn' | 'bad' {
	return s >= 500 ? 'bad' : s >= 400 ? 'warn' : 'ok';
}
