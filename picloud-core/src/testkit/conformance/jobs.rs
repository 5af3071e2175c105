//! The event engine's ports: the job queue, schedules and subscriptions.

use std::collections::HashSet;
use std::time::Duration;

use super::script_name;
use crate::domain::{
    App, Attempt, Event, InstanceRole, JobResult, JobSource, JobStatus, NewJob, QueueCap,
    ScheduleName, ScheduleSpec, StoredRequest, Tick, Topic,
};
use crate::ids::{AppId, EventId, JobId};
use crate::ports::{
    Completion, Enqueued, JobFilter, JobQueueError, ScheduleRepoError, StorageQuota,
};
use crate::stores::Stores;
use crate::testkit::Fixture;

/// The cases of these ports, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_jobs_cases {
    ($($callback:ident)::+; $($args:tt)*) => {
        $($callback)::+! { $($args)* jobs =>
            jobs_enqueue_get_and_list,
            jobs_same_dedupe_key_gives_one_job_even_racing,
            jobs_queue_cap_refuses_and_stores_nothing,
            jobs_totals_sum_every_apps_queue,
            jobs_concurrent_claims_never_share_a_job,
            jobs_claim_is_fair_between_apps,
            jobs_completion_is_fenced_by_the_attempt,
            jobs_failures_retry_then_die_and_a_retry_gives_a_fresh_budget,
            jobs_cancel_and_delete_follow_the_states,
            jobs_events_fan_out_only_from_a_success,
            jobs_a_completions_events_stay_within_the_cap,
            jobs_retry_delay_sets_next_due,
            jobs_schedules_put_get_list_delete,
            jobs_a_tick_fires_exactly_once_under_a_race,
            jobs_go_with_their_script_and_app,
        }
    };
}

const CAP: QueueCap = QueueCap {
    max_jobs: 10_000,
    max_bytes: 64 * 1024 * 1024,
};

async fn app_with(fx: &Fixture, stores: &Stores, name: &str, scripts: &[&str]) -> App {
    let app = fx.app(name).await;
    let dev = fx.user(&format!("dev-{name}"), InstanceRole::Admin).await;
    for s in scripts {
        stores
            .scripts
            .deploy(
                app.id,
                &script_name(s),
                "1".into(),
                dev.id,
                StorageQuota::default(),
            )
            .await
            .unwrap();
    }
    app
}

fn async_job(app: AppId, script: &str, body: &str) -> NewJob {
    NewJob {
        id: JobId::new(),
        app_id: app,
        script: script_name(script),
        source: JobSource::Async {
            request: StoredRequest {
                method: "POST".into(),
                path: "/x".into(),
                query: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                headers: [("content-type".to_owned(), "text/plain".to_owned())].into(),
                body: body.into(),
            },
        },
        max_attempts: 3,
        lease_ms: 60_000,
        dedupe_key: None,
    }
}

fn done(job: JobId, attempt: u32, succeeded: bool) -> Completion {
    Completion {
        job,
        attempt,
        record: Attempt {
            attempt,
            version: 1,
            succeeded,
            http_status: if succeeded { 200 } else { 500 },
            duration_us: 42,
            logs: vec![format!("attempt {attempt}")],
            error: (!succeeded).then(|| "script error: boom".to_owned()),
            at: crate::clock::now(),
        },
        result: Some(JobResult::new(if succeeded { 200 } else { 500 }, b"answer")),
        events: Vec::new(),
        events_lease_ms: 60_000,
        events_cap: CAP,
        retry_in: Duration::ZERO,
    }
}

fn topic(s: &str) -> Topic {
    Topic::parse(s).unwrap()
}

fn sname(s: &str) -> ScheduleName {
    ScheduleName::parse(s).unwrap()
}

/// An enqueued job is stored queued, exactly as given, and read back by
/// `get` and `list` (newest first, filtered); an unknown script or app is
/// `NotFound`.
pub async fn jobs_enqueue_get_and_list(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one", "two"]).await;
    let first = async_job(app.id, "one", "hello");
    let Enqueued::Created(job) = stores.jobs.enqueue(first.clone(), CAP).await.unwrap() else {
        panic!("a new job");
    };
    assert_eq!(
        (job.id, job.status, job.attempt),
        (first.id, JobStatus::Queued, 0)
    );
    assert_eq!(
        (job.max_attempts, job.last_attempt, job.lease_ms),
        (3, 3, 60_000)
    );
    assert_eq!(job.source, first.source);
    assert!(job.attempts.is_empty() && job.result.is_none());
    let got = stores.jobs.get(app.id, job.id).await.unwrap().unwrap();
    assert_eq!(got, job);
    assert_eq!(stores.jobs.get(AppId::new(), job.id).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(2)).await;
    let second = stores
        .jobs
        .enqueue(async_job(app.id, "two", "x"), CAP)
        .await
        .unwrap()
        .id();
    let all = stores
        .jobs
        .list(app.id, JobFilter::default())
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|j| j.id).collect::<Vec<_>>(),
        [second, job.id]
    );
    let only_one = JobFilter {
        script: Some(script_name("one")),
        ..JobFilter::default()
    };
    let listed = stores.jobs.list(app.id, only_one).await.unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<Vec<_>>(), [job.id]);
    let running = JobFilter {
        status: Some(JobStatus::Running),
        ..JobFilter::default()
    };
    assert!(stores.jobs.list(app.id, running).await.unwrap().is_empty());
    let e = stores
        .jobs
        .enqueue(async_job(app.id, "nope", "x"), CAP)
        .await
        .unwrap_err();
    assert!(matches!(e, JobQueueError::NotFound), "got {e:?}");
    let e = stores
        .jobs
        .enqueue(async_job(AppId::new(), "one", "x"), CAP)
        .await
        .unwrap_err();
    assert!(matches!(e, JobQueueError::NotFound), "got {e:?}");
}

/// Sixteen racing enqueues with one `Idempotency-Key` store one job, and
/// all of them name it; the same key on another script is another job.
pub async fn jobs_same_dedupe_key_gives_one_job_even_racing(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one", "two"]).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let stores = stores.clone();
        let mut job = async_job(app.id, "one", &format!("body {i}"));
        job.dedupe_key = Some("key-1".into());
        tasks.push(tokio::spawn(async move {
            stores.jobs.enqueue(job, CAP).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for t in tasks {
        let e = t.await.unwrap();
        created += usize::from(matches!(e, Enqueued::Created(_)));
        ids.insert(e.id());
    }
    assert_eq!((created, ids.len()), (1, 1), "one job for one key");
    let mut other = async_job(app.id, "two", "x");
    other.dedupe_key = Some("key-1".into());
    assert!(matches!(
        stores.jobs.enqueue(other, CAP).await.unwrap(),
        Enqueued::Created(_)
    ));
    assert_eq!(
        stores
            .jobs
            .list(app.id, JobFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Past the app's cap in jobs or in bytes, an enqueue is `QueueFull` and
/// stores nothing; another app is not affected; dead jobs count.
pub async fn jobs_queue_cap_refuses_and_stores_nothing(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let a = app_with(&fx, &stores, "a", &["one"]).await;
    let b = app_with(&fx, &stores, "b", &["one"]).await;
    let two = QueueCap {
        max_jobs: 2,
        max_bytes: 1 << 20,
    };
    for _ in 0..2 {
        stores
            .jobs
            .enqueue(async_job(a.id, "one", "x"), two)
            .await
            .unwrap();
    }
    let e = stores
        .jobs
        .enqueue(async_job(a.id, "one", "x"), two)
        .await
        .unwrap_err();
    let JobQueueError::QueueFull(usage) = e else {
        panic!("got {e:?}");
    };
    assert_eq!((usage.queued, usage.running, usage.dead), (2, 0, 0));
    assert_eq!(stores.jobs.usage(a.id).await.unwrap(), usage);
    assert_eq!(
        stores
            .jobs
            .list(a.id, JobFilter::default())
            .await
            .unwrap()
            .len(),
        2
    );
    stores
        .jobs
        .enqueue(async_job(b.id, "one", "x"), two)
        .await
        .unwrap();
    // Bytes: a body that alone passes the cap.
    let small = QueueCap {
        max_jobs: 100,
        max_bytes: 1000,
    };
    let e = stores
        .jobs
        .enqueue(async_job(b.id, "one", &"x".repeat(1000)), small)
        .await
        .unwrap_err();
    assert!(matches!(e, JobQueueError::QueueFull(_)), "got {e:?}");
    // A dead job still counts; deleting it frees its place.
    let mut one = async_job(b.id, "one", "y");
    one.max_attempts = 1;
    let ones = QueueCap {
        max_jobs: 2,
        max_bytes: 1 << 20,
    };
    let id = stores.jobs.enqueue(one, ones).await.unwrap().id();
    let claimed: Vec<_> = claim_all(&stores)
        .await
        .into_iter()
        .filter(|j| j.app_id == b.id)
        .collect();
    assert_eq!(claimed.len(), 2);
    let first = claimed.iter().find(|j| j.id != id).unwrap().id;
    let c = stores
        .jobs
        .complete(vec![done(id, 1, false), done(first, 1, true)])
        .await
        .unwrap();
    assert_eq!(c, [true, true]);
    assert_eq!(
        stores.jobs.get(b.id, id).await.unwrap().unwrap().status,
        JobStatus::Dead
    );
    assert_eq!(stores.jobs.usage(b.id).await.unwrap().dead, 1);
    stores
        .jobs
        .enqueue(async_job(b.id, "one", "z"), ones)
        .await
        .unwrap();
    let e = stores
        .jobs
        .enqueue(async_job(b.id, "one", "z"), ones)
        .await
        .unwrap_err();
    assert!(matches!(e, JobQueueError::QueueFull(_)), "got {e:?}");
    assert!(stores.jobs.delete(b.id, id).await.unwrap());
    stores
        .jobs
        .enqueue(async_job(b.id, "one", "z"), ones)
        .await
        .unwrap();
}

/// `totals` is every app's `usage` summed: queued, running and dead jobs
/// and their bytes; finished jobs do not count.
pub async fn jobs_totals_sum_every_apps_queue(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    assert_eq!(
        stores.jobs.totals().await.unwrap(),
        crate::domain::QueueUsage::default()
    );
    let a = app_with(&fx, &stores, "a", &["one"]).await;
    let b = app_with(&fx, &stores, "b", &["one"]).await;
    for app in [a.id, a.id, a.id, b.id, b.id] {
        let mut job = async_job(app, "one", "x");
        job.max_attempts = 1;
        stores.jobs.enqueue(job, CAP).await.unwrap();
    }
    // Two of b's: one succeeds, one dies.
    let b_jobs: Vec<_> = claim_all(&stores)
        .await
        .into_iter()
        .filter(|j| j.app_id == b.id)
        .collect();
    // Claiming took a's too: all five run now.
    let running = stores.jobs.totals().await.unwrap();
    assert_eq!((running.queued, running.running, running.dead), (0, 5, 0));
    let c = stores
        .jobs
        .complete(vec![
            done(b_jobs[0].id, 1, true),
            done(b_jobs[1].id, 1, false),
        ])
        .await
        .unwrap();
    assert_eq!(c, [true, true]);
    let totals = stores.jobs.totals().await.unwrap();
    let (ua, ub) = (
        stores.jobs.usage(a.id).await.unwrap(),
        stores.jobs.usage(b.id).await.unwrap(),
    );
    assert_eq!((totals.queued, totals.running, totals.dead), (0, 3, 1));
    assert_eq!(
        totals,
        crate::domain::QueueUsage {
            queued: ua.queued + ub.queued,
            running: ua.running + ub.running,
            dead: ua.dead + ub.dead,
            bytes: ua.bytes + ub.bytes,
        }
    );
    assert!(totals.bytes > 0);
    stores
        .jobs
        .enqueue(async_job(b.id, "one", "y"), CAP)
        .await
        .unwrap();
    assert_eq!(stores.jobs.totals().await.unwrap().queued, 1);
}

async fn claim_all(stores: &Stores) -> Vec<crate::domain::Job> {
    let mut all = Vec::new();
    loop {
        let got = stores.jobs.claim(100, 100).await.unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Eight workers claiming small batches at once, until the queue is empty,
/// get every one of 200 jobs exactly once, each as running attempt 1.
pub async fn jobs_concurrent_claims_never_share_a_job(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    let mut ids = HashSet::new();
    for i in 0..200 {
        let id = stores
            .jobs
            .enqueue(async_job(app.id, "one", &i.to_string()), CAP)
            .await
            .unwrap()
            .id();
        ids.insert(id);
    }
    let mut workers = Vec::new();
    for _ in 0..8 {
        let stores = stores.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = stores.jobs.claim(7, 7).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                for j in got {
                    assert_eq!((j.status, j.attempt), (JobStatus::Running, 1));
                    assert!(j.lease_until.is_some());
                    mine.push(j.id);
                }
            }
        }));
    }
    let mut seen = Vec::new();
    for w in workers {
        seen.extend(w.await.unwrap());
    }
    let distinct: HashSet<JobId> = seen.iter().copied().collect();
    assert_eq!(seen.len(), 200, "every job claimed once, none twice");
    assert_eq!(distinct, ids);
}

/// A claim takes at most `per_app` jobs of one app: an app with a backlog
/// does not hold back a job of another app enqueued after it.
pub async fn jobs_claim_is_fair_between_apps(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let busy = app_with(&fx, &stores, "busy", &["one"]).await;
    let quiet = app_with(&fx, &stores, "quiet", &["one"]).await;
    for i in 0..50 {
        stores
            .jobs
            .enqueue(async_job(busy.id, "one", &i.to_string()), CAP)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    let late = stores
        .jobs
        .enqueue(async_job(quiet.id, "one", "late"), CAP)
        .await
        .unwrap()
        .id();
    let got = stores.jobs.claim(10, 4).await.unwrap();
    assert_eq!(got.len(), 5, "4 of the busy app, 1 of the quiet one");
    assert!(got.iter().any(|j| j.id == late));
    assert_eq!(got.iter().filter(|j| j.app_id == busy.id).count(), 4);
}

/// An attempt whose lease ran out is reclaimed (the lost attempt is
/// recorded and counts); the slow old holder's completion then changes
/// nothing, and only the new holder completes the job.
pub async fn jobs_completion_is_fenced_by_the_attempt(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    let mut job = async_job(app.id, "one", "x");
    job.lease_ms = 1;
    let id = stores.jobs.enqueue(job, CAP).await.unwrap().id();
    let first = stores.jobs.claim(10, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(stores.jobs.claim(10, 10).await.unwrap().is_empty(), "held");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(stores.jobs.reclaim_expired().await.unwrap(), 1);
    let again = stores.jobs.claim(10, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[0].attempts.len(), 1, "the lost attempt is recorded");
    assert!(!again[0].attempts[0].succeeded);
    // The old holder (attempt 1) wakes up late: fenced out.
    assert_eq!(
        stores.jobs.complete(vec![done(id, 1, true)]).await.unwrap(),
        [false]
    );
    let now = stores.jobs.get(app.id, id).await.unwrap().unwrap();
    assert_eq!((now.status, now.attempt), (JobStatus::Running, 2));
    assert_eq!(
        stores.jobs.complete(vec![done(id, 2, true)]).await.unwrap(),
        [true]
    );
    let now = stores.jobs.get(app.id, id).await.unwrap().unwrap();
    assert_eq!(now.status, JobStatus::Succeeded);
    assert_eq!(now.result, Some(JobResult::new(200, b"answer")));
    assert_eq!(
        now.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(now.attempts[1].logs, ["attempt 2"]);
    // Completing twice is fenced too.
    assert_eq!(
        stores.jobs.complete(vec![done(id, 2, true)]).await.unwrap(),
        [false]
    );
}

/// A failed attempt with budget left queues the job again; the last one
/// makes it dead. A retry queues it with a fresh budget, attempts going on
/// numbering; a retry of a queued job is a conflict.
pub async fn jobs_failures_retry_then_die_and_a_retry_gives_a_fresh_budget(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    let mut job = async_job(app.id, "one", "x");
    job.max_attempts = 2;
    let id = stores.jobs.enqueue(job, CAP).await.unwrap().id();
    for attempt in 1..=2 {
        let got = stores.jobs.claim(10, 10).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].attempt, attempt);
        stores
            .jobs
            .complete(vec![done(id, attempt, false)])
            .await
            .unwrap();
    }
    let dead = stores.jobs.get(app.id, id).await.unwrap().unwrap();
    assert_eq!((dead.status, dead.attempt), (JobStatus::Dead, 2));
    assert!(stores.jobs.claim(10, 10).await.unwrap().is_empty());
    let again = stores.jobs.retry(app.id, id).await.unwrap();
    assert_eq!(
        (again.status, again.attempt, again.last_attempt),
        (JobStatus::Queued, 2, 4)
    );
    let e = stores.jobs.retry(app.id, id).await.unwrap_err();
    assert!(
        matches!(e, JobQueueError::Conflict(JobStatus::Queued)),
        "got {e:?}"
    );
    let got = stores.jobs.claim(10, 10).await.unwrap();
    assert_eq!(got[0].attempt, 3);
    let e = stores.jobs.retry(app.id, id).await.unwrap_err();
    assert!(
        matches!(e, JobQueueError::Conflict(JobStatus::Running)),
        "got {e:?}"
    );
    stores.jobs.complete(vec![done(id, 3, true)]).await.unwrap();
    // A succeeded job can be run again too.
    let again = stores.jobs.retry(app.id, id).await.unwrap();
    assert_eq!((again.status, again.last_attempt), (JobStatus::Queued, 5));
    let e = stores.jobs.retry(AppId::new(), id).await.unwrap_err();
    assert!(matches!(e, JobQueueError::NotFound), "got {e:?}");
}

/// Cancel takes a queued job only; delete takes finished jobs only.
pub async fn jobs_cancel_and_delete_follow_the_states(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    let id = stores
        .jobs
        .enqueue(async_job(app.id, "one", "x"), CAP)
        .await
        .unwrap()
        .id();
    let e = stores.jobs.delete(app.id, id).await.unwrap_err();
    assert!(matches!(e, JobQueueError::Conflict(JobStatus::Queued)));
    let c = stores.jobs.cancel(app.id, id).await.unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert!(stores.jobs.claim(10, 10).await.unwrap().is_empty());
    let e = stores.jobs.cancel(app.id, id).await.unwrap_err();
    assert!(matches!(e, JobQueueError::Conflict(JobStatus::Cancelled)));
    let running = stores
        .jobs
        .enqueue(async_job(app.id, "one", "y"), CAP)
        .await
        .unwrap()
        .id();
    stores.jobs.claim(10, 10).await.unwrap();
    let e = stores.jobs.cancel(app.id, running).await.unwrap_err();
    assert!(matches!(e, JobQueueError::Conflict(JobStatus::Running)));
    assert!(stores.jobs.delete(app.id, id).await.unwrap());
    assert!(!stores.jobs.delete(app.id, id).await.unwrap());
    let e = stores.jobs.cancel(app.id, JobId::new()).await.unwrap_err();
    assert!(matches!(e, JobQueueError::NotFound));
}

/// A succeeded completion's events become jobs of their topic's
/// subscriptions (one per subscription, with its script and budget); a
/// failed one's never do; `publish` stores them directly, within the cap.
pub async fn jobs_events_fan_out_only_from_a_success(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one", "two", "three"]).await;
    let (sub, created) = stores
        .subscriptions
        .put_subscription(
            app.id,
            &sname("s2"),
            &topic("order.paid"),
            &script_name("two"),
            5,
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!((sub.topic.as_str(), sub.max_attempts), ("order.paid", 5));
    let (_, created) = stores
        .subscriptions
        .put_subscription(
            app.id,
            &sname("s3"),
            &topic("order.paid"),
            &script_name("three"),
            1,
        )
        .await
        .unwrap();
    assert!(created);
    let (_, created) = stores
        .subscriptions
        .put_subscription(
            app.id,
            &sname("s3"),
            &topic("order.paid"),
            &script_name("three"),
            2,
        )
        .await
        .unwrap();
    assert!(!created, "replaced");
    let e = stores
        .subscriptions
        .put_subscription(app.id, &sname("bad"), &topic("t"), &script_name("nope"), 1)
        .await
        .unwrap_err();
    assert!(matches!(e, crate::ports::SubscriptionRepoError::NotFound));
    assert_eq!(
        stores
            .subscriptions
            .list_subscriptions(app.id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.name.as_str().to_owned())
            .collect::<Vec<_>>(),
        ["s2", "s3"]
    );
    let event = |t: &str| Event {
        id: EventId::new(),
        topic: topic(t),
        payload: Some(r#"{"n":1}"#.into()),
    };
    let failing = stores
        .jobs
        .enqueue(async_job(app.id, "one", "f"), CAP)
        .await
        .unwrap()
        .id();
    let mut one = async_job(app.id, "one", "ok");
    one.max_attempts = 1;
    let ok = stores.jobs.enqueue(one, CAP).await.unwrap().id();
    assert_eq!(claim_all(&stores).await.len(), 2);
    let mut fail = done(failing, 1, false);
    fail.events = vec![event("order.paid")];
    let mut success = done(ok, 1, true);
    let paid = event("order.paid");
    success.events = vec![paid.clone(), event("nobody.listens")];
    stores.jobs.complete(vec![fail, success]).await.unwrap();
    let jobs = stores
        .jobs
        .list(app.id, JobFilter::default())
        .await
        .unwrap();
    let events: Vec<_> = jobs
        .iter()
        .filter(|j| matches!(j.source, JobSource::Event { .. }))
        .collect();
    assert_eq!(
        events.len(),
        2,
        "one per subscription of the success's event"
    );
    let mut scripts: Vec<_> = events
        .iter()
        .map(|j| (j.script.as_str().to_owned(), j.max_attempts, j.status))
        .collect();
    scripts.sort();
    assert_eq!(
        scripts,
        [
            ("three".to_owned(), 2, JobStatus::Queued),
            ("two".to_owned(), 5, JobStatus::Queued)
        ]
    );
    for j in &events {
        assert_eq!(
            j.source,
            JobSource::Event {
                topic: paid.topic.clone(),
                event_id: paid.id,
                payload: paid.payload.clone(),
            }
        );
    }
    let n = stores
        .jobs
        .publish(app.id, vec![event("order.paid")], 60_000, CAP)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let tight = QueueCap {
        max_jobs: 6,
        max_bytes: 1 << 20,
    };
    // 5 held (1 failed and queued again, 4 events): room for 1.
    let n = stores
        .jobs
        .publish(app.id, vec![event("order.paid")], 60_000, tight)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        stores
            .subscriptions
            .delete_subscription(app.id, &sname("s2"))
            .await
            .unwrap()
    );
    assert!(
        !stores
            .subscriptions
            .delete_subscription(app.id, &sname("s2"))
            .await
            .unwrap()
    );
}

/// A succeeded completion's events are stored within its `events_cap`:
/// a script that subscribes to its own topic cannot grow the queue without
/// bound.
pub async fn jobs_a_completions_events_stay_within_the_cap(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    stores
        .subscriptions
        .put_subscription(
            app.id,
            &sname("loop"),
            &topic("again"),
            &script_name("one"),
            1,
        )
        .await
        .unwrap();
    let id = stores
        .jobs
        .enqueue(async_job(app.id, "one", "x"), CAP)
        .await
        .unwrap()
        .id();
    assert_eq!(claim_all(&stores).await.len(), 1);
    let mut c = done(id, 1, true);
    c.events = (0..5)
        .map(|_| Event {
            id: EventId::new(),
            topic: topic("again"),
            payload: None,
        })
        .collect();
    c.events_cap = QueueCap {
        max_jobs: 3,
        max_bytes: 1 << 20,
    };
    assert_eq!(stores.jobs.complete(vec![c]).await.unwrap(), [true]);
    let usage = stores.jobs.usage(app.id).await.unwrap();
    assert_eq!(usage.queued, 3, "5 events, room for 3");
}

/// A failure's retry delay holds the job back: no claim finds it, and
/// `next_due` names the time.
pub async fn jobs_retry_delay_sets_next_due(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    assert_eq!(stores.jobs.next_due().await.unwrap(), None);
    let before = crate::clock::now();
    let id = stores
        .jobs
        .enqueue(async_job(app.id, "one", "x"), CAP)
        .await
        .unwrap()
        .id();
    let due = stores.jobs.next_due().await.unwrap().unwrap();
    assert!(due >= before - chrono::TimeDelta::seconds(5));
    let got = stores.jobs.claim(1, 1).await.unwrap();
    let lease = got[0].lease_until.unwrap();
    assert_eq!(stores.jobs.next_due().await.unwrap(), Some(lease));
    let mut c = done(id, 1, false);
    c.retry_in = Duration::from_secs(3600);
    stores.jobs.complete(vec![c]).await.unwrap();
    assert!(stores.jobs.claim(10, 10).await.unwrap().is_empty());
    let due = stores.jobs.next_due().await.unwrap().unwrap();
    let job = stores.jobs.get(app.id, id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(due, job.run_at);
    assert!(due > before + chrono::TimeDelta::minutes(59));
}

fn spec(name: &str, script: &str, next: Option<chrono::DateTime<chrono::Utc>>) -> ScheduleSpec {
    ScheduleSpec {
        name: sname(name),
        script: script_name(script),
        cron: "*/5 * * * * *".into(),
        timezone: "Europe/Paris".into(),
        payload: Some(r#"{"k":"v"}"#.into()),
        enabled: true,
        max_attempts: 2,
        next_run_at: next,
    }
}

/// A schedule is created, replaced (keeping `created_at`), read back,
/// listed by name and deleted; an unknown script is `NotFound`; `due` and
/// `next_due` see only enabled schedules.
pub async fn jobs_schedules_put_get_list_delete(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    let now = stores.schedules.now().await.unwrap();
    let soon = now + chrono::TimeDelta::hours(1);
    let (made, created) = stores
        .schedules
        .put(app.id, spec("b", "one", Some(soon)))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (made.cron.as_str(), made.timezone.as_str(), made.next_run_at),
        ("*/5 * * * * *", "Europe/Paris", Some(soon))
    );
    assert_eq!(made.payload.as_deref(), Some(r#"{"k":"v"}"#));
    let (replaced, created) = stores
        .schedules
        .put(app.id, spec("b", "one", Some(soon)))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(replaced.created_at, made.created_at);
    stores
        .schedules
        .put(app.id, spec("a", "one", None))
        .await
        .unwrap();
    let names: Vec<_> = stores
        .schedules
        .list(app.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        stores.schedules.get(app.id, &sname("b")).await.unwrap(),
        Some(replaced)
    );
    assert_eq!(stores.schedules.next_due().await.unwrap(), Some(soon));
    assert!(stores.schedules.due(10).await.unwrap().is_empty());
    let mut off = spec("b", "one", Some(now - chrono::TimeDelta::seconds(1)));
    off.enabled = false;
    stores.schedules.put(app.id, off).await.unwrap();
    assert!(stores.schedules.due(10).await.unwrap().is_empty());
    assert_eq!(stores.schedules.next_due().await.unwrap(), None);
    let e = stores
        .schedules
        .put(app.id, spec("c", "nope", None))
        .await
        .unwrap_err();
    assert!(matches!(e, ScheduleRepoError::NotFound), "got {e:?}");
    assert!(stores.schedules.delete(app.id, &sname("b")).await.unwrap());
    assert!(!stores.schedules.delete(app.id, &sname("b")).await.unwrap());
}

fn tick(app: AppId, due: chrono::DateTime<chrono::Utc>, at: chrono::DateTime<chrono::Utc>) -> Tick {
    Tick {
        app_id: app,
        name: sname("every"),
        due,
        next: Some(at + chrono::TimeDelta::seconds(1)),
        job: NewJob {
            id: JobId::new(),
            app_id: app,
            script: script_name("one"),
            source: JobSource::Cron {
                schedule: sname("every"),
                scheduled_at: at,
                payload: None,
            },
            max_attempts: 2,
            lease_ms: 6000,
            dedupe_key: None,
        },
    }
}

/// Eight schedulers firing the same due tick at once: exactly one wins,
/// and one job exists for it. A tick whose nominal time already has a job
/// (the unique key) moves the schedule but stores nothing new.
pub async fn jobs_a_tick_fires_exactly_once_under_a_race(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one"]).await;
    let now = stores.schedules.now().await.unwrap();
    let due = now - chrono::TimeDelta::seconds(1);
    stores
        .schedules
        .put(app.id, spec("every", "one", Some(due)))
        .await
        .unwrap();
    assert_eq!(stores.schedules.due(10).await.unwrap().len(), 1);
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let stores = stores.clone();
            let t = tick(app.id, due, due);
            tokio::spawn(async move { stores.schedules.fire(t).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap());
    }
    assert_eq!(won, 1);
    let jobs = stores
        .jobs
        .list(app.id, JobFilter::default())
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].max_attempts, 2);
    let s = stores
        .schedules
        .get(app.id, &sname("every"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.next_run_at, Some(due + chrono::TimeDelta::seconds(1)));
    assert_eq!((s.last_run_at, s.last_job), (Some(due), Some(jobs[0].id)));
    // A stale due: nothing.
    assert!(!stores.schedules.fire(tick(app.id, due, due)).await.unwrap());
    // The same nominal time again under the new due: moved, no second job.
    let again = tick(app.id, due + chrono::TimeDelta::seconds(1), due);
    assert!(stores.schedules.fire(again).await.unwrap());
    assert_eq!(
        stores
            .jobs
            .list(app.id, JobFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Deleting a script deletes its jobs, schedules and subscriptions;
/// deleting an app deletes all of its.
pub async fn jobs_go_with_their_script_and_app(stores: Stores) {
    let fx = Fixture::new(stores.clone());
    let app = app_with(&fx, &stores, "a", &["one", "two"]).await;
    let gone = stores
        .jobs
        .enqueue(async_job(app.id, "one", "x"), CAP)
        .await
        .unwrap()
        .id();
    let kept = stores
        .jobs
        .enqueue(async_job(app.id, "two", "x"), CAP)
        .await
        .unwrap()
        .id();
    stores
        .schedules
        .put(app.id, spec("s1", "one", None))
        .await
        .unwrap();
    stores
        .subscriptions
        .put_subscription(app.id, &sname("sub"), &topic("t"), &script_name("one"), 1)
        .await
        .unwrap();
    assert!(
        stores
            .scripts
            .delete(app.id, &script_name("one"))
            .await
            .unwrap()
    );
    assert_eq!(stores.jobs.get(app.id, gone).await.unwrap(), None);
    assert!(stores.jobs.get(app.id, kept).await.unwrap().is_some());
    assert!(stores.schedules.list(app.id).await.unwrap().is_empty());
    assert!(
        stores
            .subscriptions
            .list_subscriptions(app.id)
            .await
            .unwrap()
            .is_empty()
    );
    stores.apps.delete(app.id).await.unwrap();
    assert_eq!(stores.jobs.get(app.id, kept).await.unwrap(), None);
    assert_eq!(stores.jobs.usage(app.id).await.unwrap().queued, 0);
}
