//! The live tails of [`ScriptService::tail`](super::ScriptService::tail):
//! one broadcast channel per app that someone follows, so one app's runs
//! never push another's out of its ring, wake its readers, or show up in
//! its `lagged` counts; and bounds on how many tails are open, per user and
//! in all, so that log streams cannot take the server's connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{broadcast, watch};

use super::{TAIL_BACKLOG, TailEvent};
use crate::ids::{AdminUserId, AppId};

/// The most live tails (log streams) open at once on one node.
pub const MAX_TAILS: usize = 64;

/// The most live tails one user may hold open at once.
pub const MAX_TAILS_PER_USER: usize = 4;

/// Why a tail was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TailRefused {
    /// [`MAX_TAILS`] are open.
    Full,
    /// The user holds [`MAX_TAILS_PER_USER`] already.
    PerUser,
}

#[derive(Debug, Default)]
struct Open {
    by_app: HashMap<AppId, broadcast::Sender<Arc<TailEvent>>>,
    per_user: HashMap<AdminUserId, usize>,
    total: usize,
}

/// What [`Tails::subscribe`] gives: the app's runs, the closing signal, and
/// the tail's place.
pub(super) type Subscribed = (
    broadcast::Receiver<Arc<TailEvent>>,
    watch::Receiver<bool>,
    TailGuard,
);

/// Every open tail of a service.
#[derive(Debug)]
pub(super) struct Tails {
    open: Mutex<Open>,
    /// How many are open: read on every run, so that a node nobody follows
    /// pays one atomic load.
    count: AtomicUsize,
    /// `true` once closed: every tail ends.
    closed: watch::Sender<bool>,
}

impl Default for Tails {
    fn default() -> Self {
        Self {
            open: Mutex::default(),
            count: AtomicUsize::new(0),
            closed: watch::channel(false).0,
        }
    }
}

impl Tails {
    /// A receiver of `app`'s runs for `user`, and the guard that gives its
    /// place back when dropped.
    pub(super) fn subscribe(
        self: &Arc<Self>,
        app: AppId,
        user: AdminUserId,
    ) -> Result<Subscribed, TailRefused> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= MAX_TAILS {
            return Err(TailRefused::Full);
        }
        let held = open.per_user.get(&user).copied().unwrap_or(0);
        if held >= MAX_TAILS_PER_USER {
            return Err(TailRefused::PerUser);
        }
        *open.per_user.entry(user).or_default() += 1;
        open.total += 1;
        self.count.store(open.total, Ordering::Release);
        let rx = open
            .by_app
            .entry(app)
            .or_insert_with(|| broadcast::channel(TAIL_BACKLOG).0)
            .subscribe();
        Ok((
            rx,
            self.closed.subscribe(),
            TailGuard {
                tails: Arc::clone(self),
                app,
                user,
            },
        ))
    }

    /// Sends `event()` to the tails of `app`, if it has any; `event` is not
    /// called otherwise.
    pub(super) fn send(&self, app: AppId, event: impl FnOnce() -> TailEvent) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let sender = {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            match open.by_app.get(&app) {
                Some(sender) => sender.clone(),
                None => return,
            }
        };
        // No receiver left since: nobody missed it.
        let _ = sender.send(Arc::new(event()));
    }

    /// Whether `app` has a tail open.
    pub(super) fn is_followed(&self, app: AppId) -> bool {
        self.count.load(Ordering::Acquire) > 0
            && self
                .open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_app
                .contains_key(&app)
    }

    /// Ends every tail, now and later.
    pub(super) fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// A tail's place: dropped (after its receiver), it frees the place, and the
/// app's channel once nobody follows the app.
#[derive(Debug)]
pub(super) struct TailGuard {
    tails: Arc<Tails>,
    app: AppId,
    user: AdminUserId,
}

impl Drop for TailGuard {
    fn drop(&mut self) {
        let mut open = self
            .tails
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.per_user.get_mut(&self.user) {
            *held -= 1;
            if *held == 0 {
                open.per_user.remove(&self.user);
            }
        }
        open.total = open.total.saturating_sub(1);
        self.tails.count.store(open.total, Ordering::Release);
        // The receiver is dropped before the guard (field order in
        // `LogTail`), so an unfollowed app has no receiver left here.
        if open
            .by_app
            .get(&self.app)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            open.by_app.remove(&self.app);
        }
    }
}
