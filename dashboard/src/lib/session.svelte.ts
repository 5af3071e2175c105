// Who is signed in. The layout asks the server once at start (the cookie is
// HttpOnly, so the page cannot tell by itself) and on every 401 forgets the
// user, which brings the sign-in form back.

import { onUnauthorized, type UserDto } from './api';

class Session {
	user = $state<UserDto | null>(null);
	/** True until the first `GET /auth/session` has answered. */
	checking = $state(true);
	/** Why the user is looking at the sign-in form again, if not by choice. */
	notice = $state<string | null>(null);

	/** Owners and admins manage users (`InstanceManageUsers`). */
	get managesUsers(): boolean {
		return this.user?.instance_role === 'owner' || this.user?.instance_role === 'admin';
	}

	/** Only owners change instance roles. */
	get isOwner(): boolean {
		return this.user?.instance_role === 'owner';
	}

	ended() {
		if (this.user) this.notice = 'Your session has ended. Sign in again.';
		this.user = null;
	}
}

export const session = new Session();

onUnauthorized(() => session.ended());
