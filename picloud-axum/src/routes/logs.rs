//! `GET /admin/apps/{id_or_slug}/logs/stream`: an app's runs as they
//! finish, as Server-Sent Events (`AppView`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use picloud_core::Principal;
use picloud_core::scripts::{LogTail, TailItem};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::ApiState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Caller, Path};
use crate::routes::scripts::InvocationDto;

/// How often a tail checks that its caller may still see the app (and
/// sends a keep-alive comment).
pub const RECHECK_EVERY: Duration = Duration::from_secs(15);

/// `?script=` of the log stream.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// Only this script's runs.
    pub script: Option<String>,
}

/// Follows the app's runs live (`AppView`): one `invocation` event per
/// finished run, its data an [`InvocationDto`] (logs cut to 64 KiB), within
/// moments of the run. A `lagged` event (data: how many) says a slow reader
/// skipped runs; read them with `…/invocations`. The stream ends when the
/// caller may no longer see the app, or its token was revoked or expired
/// (checked every 15 s), or the app goes.
/// It shows the runs of the node it is connected to. A user may hold 4
/// streams open at once (then 429), and a server 64 (then 503).
#[utoipa::path(
    get, path = "/api/v1/admin/apps/{id_or_slug}/logs/stream", tag = "scripts",
    params(
        ("id_or_slug" = String, Path, description = "App id or slug", example = "demo"),
        StreamParams,
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `invocation` events", content_type = "text/event-stream", body = String),
        (status = 403, description = "No role on the app", body = ErrorBody),
        (status = 404, description = "No such app or script", body = ErrorBody),
        (status = 400, description = "A malformed query", body = ErrorBody),
        (status = 422, description = "Not a valid script name", body = ErrorBody),
        (status = 429, description = "The caller has 4 log streams open already", body = ErrorBody),
        (status = 503, description = "The server has 64 log streams open", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream_logs(
    State(s): State<ApiState>,
    Caller(p): Caller,
    Path(app): Path<String>,
    headers: axum::http::HeaderMap,
    query: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = query?;
    let tail = s.scripts.tail(&p, &app, q.script.as_deref()).await?;
    // The PiCloud token the caller came with, if that is how it came (an
    // embedder's own scheme has none): re-checked with the role, so that a
    // revoked or expired token ends its stream too.
    let token = match crate::bearer::bearer_token_in(&headers) {
        Some(t) if s.auth.authenticate(t).await.is_ok_and(|q| q == p) => Some(t.to_owned()),
        _ => None,
    };
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    recheck.reset(); // the first tick is one period from now
    let caller = Follower {
        principal: p,
        token,
    };
    let events = stream::unfold(
        (tail, s, caller, recheck),
        |(mut tail, s, caller, mut recheck)| async move {
            let event = next_event(&mut tail, &s, &caller, &mut recheck).await?;
            Some((Ok(event), (tail, s, caller, recheck)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(RECHECK_EVERY)))
}

/// Who follows a stream, and the token to check again, if any.
struct Follower {
    principal: Principal,
    token: Option<String>,
}

impl Follower {
    /// Whether the caller may still follow `app`: its token (if it came
    /// with one) still authenticates, and its user still sees the app.
    async fn still_may_view(&self, s: &ApiState, app: &picloud_core::domain::App) -> bool {
        let principal = match &self.token {
            None => self.principal,
            Some(token) => match s.auth.authenticate(token).await {
                Ok(fresh) => fresh,
                Err(_) => return false,
            },
        };
        s.scripts.still_may_view(&principal, app).await
    }
}

/// The next event of `tail`, or `None` to end the stream.
async fn next_event(
    tail: &mut LogTail,
    s: &ApiState,
    caller: &Follower,
    recheck: &mut tokio::time::Interval,
) -> Option<Event> {
    loop {
        tokio::select! {
            item = tail.next() => return match item {
                TailItem::Run(run) => Event::default()
                    .event("invocation")
                    .json_data(InvocationDto::of(&run.script, run.record.clone()))
                    .ok(),
                TailItem::Lagged(n) => Some(Event::default().event("lagged").data(n.to_string())),
                TailItem::Closed => None,
            },
            _ = recheck.tick() => {
                if !caller.still_may_view(s, tail.app()).await {
                    return None;
                }
            }
        }
    }
}
