//! [`JobQueue`], [`ScheduleRepository`] and [`SubscriptionRepository`] for
//! [`MemoryStore`]: the event engine's queue, under the store's one lock
//! (so each call is atomic, like one PostgreSQL transaction).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use picloud_core::domain::{
    ATTEMPTS_KEPT, Attempt, DEDUPE_WINDOW, Event, FINISHED_BYTES_PER_APP, FINISHED_KEPT_FOR,
    FINISHED_KEPT_PER_APP, Job, JobSource, JobStatus, NewJob, QueueCap, QueueUsage, Schedule,
    ScheduleName, ScheduleSpec, ScriptName, Subscription, Tick, Topic,
};
use picloud_core::ids::{AppId, JobId};
use picloud_core::ports::{
    Completion, Enqueued, JobFilter, JobQueue, JobQueueError, ScheduleRepoError,
    ScheduleRepository, SubscriptionRepoError, SubscriptionRepository,
};

use crate::{MemoryStore, State};

/// The event engine's part of the state.
#[derive(Debug, Default)]
pub(crate) struct Events {
    jobs: HashMap<JobId, Job>,
    /// Queued jobs per app, by `(run_at, id)`.
    queued: BTreeMap<AppId, BTreeSet<(DateTime<Utc>, JobId)>>,
    /// Running jobs by `(lease_until, id)`.
    running: BTreeSet<(DateTime<Utc>, JobId)>,
    /// `(app, script, key)` → the job enqueued with that `Idempotency-Key`.
    dedupe: HashMap<(AppId, String, String), JobId>,
    /// `(app, schedule, scheduled_at)` of every cron job kept.
    ticks: BTreeSet<(AppId, String, DateTime<Utc>)>,
    schedules: BTreeMap<(AppId, String), Schedule>,
    subscriptions: BTreeMap<(AppId, String), Subscription>,
    /// Per app: its held jobs (queued, running, dead) and their bytes.
    held: HashMap<AppId, QueueUsage>,
}

fn now() -> DateTime<Utc> {
    picloud_core::clock::now()
}

fn ms(ms: u32) -> chrono::TimeDelta {
    chrono::TimeDelta::milliseconds(i64::from(ms))
}

impl Events {
    /// Stores `job` as it is (queued, running or finished), with its indexes.
    fn insert(&mut self, job: Job) {
        self.index(&job);
        self.jobs.insert(job.id, job);
    }

    fn index(&mut self, job: &Job) {
        self.count(job, true);
        match job.status {
            JobStatus::Queued => {
                self.queued
                    .entry(job.app_id)
                    .or_default()
                    .insert((job.run_at, job.id));
            }
            JobStatus::Running => {
                if let Some(until) = job.lease_until {
                    self.running.insert((until, job.id));
                }
            }
            _ => {}
        }
    }

    fn unindex(&mut self, job: &Job) {
        self.count(job, false);
        match job.status {
            JobStatus::Queued => {
                if let Some(q) = self.queued.get_mut(&job.app_id) {
                    q.remove(&(job.run_at, job.id));
                    if q.is_empty() {
                        self.queued.remove(&job.app_id);
                    }
                }
            }
            JobStatus::Running => {
                if let Some(until) = job.lease_until {
                    self.running.remove(&(until, job.id));
                }
            }
            _ => {}
        }
    }

    /// Changes the job `id` with `change`, keeping the indexes right.
    fn update<T>(&mut self, id: JobId, change: impl FnOnce(&mut Job) -> T) -> Option<T> {
        let mut job = self.jobs.remove(&id)?;
        self.unindex(&job);
        let out = change(&mut job);
        self.index(&job);
        self.jobs.insert(id, job);
        Some(out)
    }

    fn remove(&mut self, id: JobId) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        self.unindex(&job);
        self.forget_keys(&job);
        Some(job)
    }

    fn forget_keys(&mut self, job: &Job) {
        if let Some(key) = &job.dedupe_key {
            let k = (job.app_id, job.script.as_str().to_owned(), key.clone());
            if self.dedupe.get(&k) == Some(&job.id) {
                self.dedupe.remove(&k);
            }
        }
        if let JobSource::Cron {
            schedule,
            scheduled_at,
            ..
        } = &job.source
        {
            self.ticks
                .remove(&(job.app_id, schedule.as_str().to_owned(), *scheduled_at));
        }
    }

    /// Adds (or takes away) `job` to its app's held counts.
    fn count(&mut self, job: &Job, add: bool) {
        if !job.status.is_held() {
            return;
        }
        let u = self.held.entry(job.app_id).or_default();
        let step = |n: &mut u64, by: u64| {
            *n = if add { *n + by } else { n.saturating_sub(by) };
        };
        match job.status {
            JobStatus::Queued => step(&mut u.queued, 1),
            JobStatus::Running => step(&mut u.running, 1),
            _ => step(&mut u.dead, 1),
        }
        step(&mut u.bytes, job.source.size_bytes());
        if *u == QueueUsage::default() {
            self.held.remove(&job.app_id);
        }
    }

    fn usage(&self, app: AppId) -> QueueUsage {
        self.held.get(&app).copied().unwrap_or_default()
    }

    /// Drops every job, schedule and subscription of `app` (its deletion).
    pub(crate) fn drop_app(&mut self, app: AppId) {
        let ids: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.app_id == app)
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.remove(id);
        }
        self.schedules.retain(|(a, _), _| *a != app);
        self.subscriptions.retain(|(a, _), _| *a != app);
    }

    /// Drops what belongs to the script `name` of `app` (its deletion).
    pub(crate) fn drop_script(&mut self, app: AppId, name: &str) {
        let ids: Vec<JobId> = self
            .jobs
            .values()
            .filter(|j| j.app_id == app && j.script.as_str() == name)
            .map(|j| j.id)
            .collect();
        for id in ids {
            self.remove(id);
        }
        self.schedules
            .retain(|(a, _), s| !(*a == app && s.script.as_str() == name));
        self.subscriptions
            .retain(|(a, _), s| !(*a == app && s.script.as_str() == name));
    }

    /// A job of each subscription of each event, within `cap` (when given).
    fn fan_out(
        &mut self,
        app: AppId,
        events: Vec<Event>,
        lease_ms: u32,
        cap: Option<QueueCap>,
        at: DateTime<Utc>,
    ) -> u64 {
        let mut usage = cap.map(|_| self.usage(app));
        let mut stored = 0;
        for event in events {
            let subs: Vec<Subscription> = self
                .subscriptions
                .range((app, String::new())..)
                .take_while(|((a, _), _)| *a == app)
                .filter(|(_, s)| s.topic == event.topic)
                .map(|(_, s)| s.clone())
                .collect();
            for sub in subs {
                let source = JobSource::Event {
                    topic: event.topic.clone(),
                    event_id: event.id,
                    payload: event.payload.clone(),
                };
                if let (Some(cap), Some(u)) = (cap, usage.as_mut()) {
                    let size = source.size_bytes();
                    if !u.admits(cap, size) {
                        return stored;
                    }
                    u.queued += 1;
                    u.bytes += size;
                }
                let job = NewJob {
                    id: JobId::new(),
                    app_id: app,
                    script: sub.script.clone(),
                    source,
                    max_attempts: sub.max_attempts,
                    lease_ms,
                    dedupe_key: None,
                };
                self.insert(queued(job, at));
                stored += 1;
            }
        }
        stored
    }
}

/// A new job as stored: queued, due at `at`.
fn queued(job: NewJob, at: DateTime<Utc>) -> Job {
    Job {
        id: job.id,
        app_id: job.app_id,
        script: job.script,
        source: job.source,
        status: JobStatus::Queued,
        attempt: 0,
        last_attempt: job.max_attempts,
        max_attempts: job.max_attempts,
        lease_ms: job.lease_ms,
        run_at: at,
        lease_until: None,
        dedupe_key: job.dedupe_key,
        attempts: Vec::new(),
        result: None,
        created_at: at,
        updated_at: at,
    }
}

fn push_attempt(job: &mut Job, mut record: Attempt) {
    record.fit();
    job.attempts.push(record);
    let extra = job.attempts.len().saturating_sub(ATTEMPTS_KEPT);
    job.attempts.drain(..extra);
}

impl State {
    fn script_exists(&self, app: AppId, script: &ScriptName) -> bool {
        self.scripts
            .contains_key(&(app, script.as_str().to_owned()))
    }
}

#[async_trait]
impl JobQueue for MemoryStore {
    async fn enqueue(&self, job: NewJob, cap: QueueCap) -> Result<Enqueued, JobQueueError> {
        let mut s = self.write();
        if !s.script_exists(job.app_id, &job.script) {
            return Err(JobQueueError::NotFound);
        }
        let at = now();
        let ev = &mut s.events;
        if let Some(key) = &job.dedupe_key {
            let k = (job.app_id, job.script.as_str().to_owned(), key.clone());
            if let Some(id) = ev.dedupe.get(&k).copied() {
                match ev.jobs.get(&id) {
                    Some(j) if at - j.created_at < DEDUPE_WINDOW => {
                        return Ok(Enqueued::Existing(id));
                    }
                    Some(_) => {
                        ev.dedupe.remove(&k);
                        ev.update(id, |j| j.dedupe_key = None);
                    }
                    None => {
                        ev.dedupe.remove(&k);
                    }
                }
            }
        }
        if let JobSource::Cron {
            schedule,
            scheduled_at,
            ..
        } = &job.source
            && ev
                .ticks
                .contains(&(job.app_id, schedule.as_str().to_owned(), *scheduled_at))
        {
            return Err(JobQueueError::Conflict(JobStatus::Queued));
        }
        let usage = ev.usage(job.app_id);
        if !usage.admits(cap, job.source.size_bytes()) {
            return Err(JobQueueError::QueueFull(usage));
        }
        let stored = queued(job, at);
        if let Some(key) = &stored.dedupe_key {
            ev.dedupe.insert(
                (
                    stored.app_id,
                    stored.script.as_str().to_owned(),
                    key.clone(),
                ),
                stored.id,
            );
        }
        if let JobSource::Cron {
            schedule,
            scheduled_at,
            ..
        } = &stored.source
        {
            ev.ticks
                .insert((stored.app_id, schedule.as_str().to_owned(), *scheduled_at));
        }
        ev.insert(stored.clone());
        Ok(Enqueued::Created(stored))
    }

    async fn publish(
        &self,
        app: AppId,
        events: Vec<Event>,
        lease_ms: u32,
        cap: QueueCap,
    ) -> Result<u64, JobQueueError> {
        let mut s = self.write();
        if !s.apps.contains_key(&app) {
            return Err(JobQueueError::NotFound);
        }
        Ok(s.events.fan_out(app, events, lease_ms, Some(cap), now()))
    }

    async fn claim(&self, limit: usize, per_app: usize) -> Result<Vec<Job>, JobQueueError> {
        let mut s = self.write();
        let at = now();
        let ev = &mut s.events;
        // Apps with a due job, by their earliest due job.
        let mut apps: Vec<(DateTime<Utc>, AppId)> = ev
            .queued
            .iter()
            .filter_map(|(app, q)| q.first().filter(|(t, _)| *t <= at).map(|(t, _)| (*t, *app)))
            .collect();
        apps.sort();
        let mut picked: Vec<(DateTime<Utc>, JobId)> = Vec::new();
        for (_, app) in apps {
            let q = &ev.queued[&app];
            picked.extend(
                q.iter()
                    .take_while(|(t, _)| *t <= at)
                    .take(per_app.max(1))
                    .copied(),
            );
        }
        picked.sort();
        picked.truncate(limit);
        let mut claimed = Vec::with_capacity(picked.len());
        for (_, id) in picked {
            if let Some(job) = ev.update(id, |j| {
                j.status = JobStatus::Running;
                j.attempt += 1;
                j.lease_until = Some(at + ms(j.lease_ms));
                j.updated_at = at;
                j.clone()
            }) {
                claimed.push(job);
            }
        }
        Ok(claimed)
    }

    async fn complete(&self, batch: Vec<Completion>) -> Result<Vec<bool>, JobQueueError> {
        let mut s = self.write();
        let at = now();
        let ev = &mut s.events;
        let mut held = Vec::with_capacity(batch.len());
        for c in batch {
            let holds = ev
                .jobs
                .get(&c.job)
                .is_some_and(|j| j.status == JobStatus::Running && j.attempt == c.attempt);
            held.push(holds);
            if !holds {
                continue;
            }
            let succeeded = c.record.succeeded;
            let app = ev.update(c.job, |j| {
                push_attempt(j, c.record);
                j.result = c.result;
                j.lease_until = None;
                j.updated_at = at;
                if succeeded {
                    j.status = JobStatus::Succeeded;
                } else if j.attempt < j.last_attempt {
                    j.status = JobStatus::Queued;
                    j.run_at = at
                        + chrono::TimeDelta::from_std(c.retry_in).unwrap_or(chrono::TimeDelta::MAX);
                } else {
                    j.status = JobStatus::Dead;
                }
                j.app_id
            });
            if succeeded && let Some(app) = app {
                ev.fan_out(app, c.events, c.events_lease_ms, Some(c.events_cap), at);
            }
        }
        Ok(held)
    }

    async fn reclaim_expired(&self) -> Result<u64, JobQueueError> {
        let mut s = self.write();
        let at = now();
        let ev = &mut s.events;
        let expired: Vec<JobId> = ev
            .running
            .iter()
            .take_while(|(until, _)| *until < at)
            .map(|(_, id)| *id)
            .collect();
        for id in &expired {
            ev.update(*id, |j| {
                let record = Attempt {
                    attempt: j.attempt,
                    version: 0,
                    succeeded: false,
                    http_status: 504,
                    duration_us: 0,
                    logs: Vec::new(),
                    error: Some("lease expired: the worker holding the attempt stopped".into()),
                    at,
                };
                push_attempt(j, record);
                j.lease_until = None;
                j.updated_at = at;
                if j.attempt < j.last_attempt {
                    j.status = JobStatus::Queued;
                    j.run_at = at;
                } else {
                    j.status = JobStatus::Dead;
                }
            });
        }
        Ok(expired.len() as u64)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, JobQueueError> {
        let s = self.read();
        let queued = s
            .events
            .queued
            .values()
            .filter_map(|q| q.first())
            .map(|(t, _)| *t);
        let running = s.events.running.first().map(|(t, _)| *t);
        Ok(queued.chain(running).min())
    }

    async fn get(&self, app: AppId, id: JobId) -> Result<Option<Job>, JobQueueError> {
        Ok(self
            .read()
            .events
            .jobs
            .get(&id)
            .filter(|j| j.app_id == app)
            .cloned())
    }

    async fn list(&self, app: AppId, filter: JobFilter) -> Result<Vec<Job>, JobQueueError> {
        let s = self.read();
        let limit = match filter.limit {
            0 => 100,
            n => n.min(1000),
        };
        let mut jobs: Vec<&Job> = s
            .events
            .jobs
            .values()
            .filter(|j| j.app_id == app)
            .filter(|j| filter.status.is_none_or(|st| j.status == st))
            .filter(|j| filter.script.as_ref().is_none_or(|sc| &j.script == sc))
            .collect();
        jobs.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        Ok(jobs
            .into_iter()
            .take(limit)
            .map(|j| {
                let mut j = j.clone();
                for a in &mut j.attempts {
                    a.logs = Vec::new();
                }
                j
            })
            .collect())
    }

    async fn retry(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError> {
        let mut s = self.write();
        let at = now();
        let ev = &mut s.events;
        match ev.jobs.get(&id).filter(|j| j.app_id == app) {
            None => return Err(JobQueueError::NotFound),
            Some(j) if !j.status.is_finished() => return Err(JobQueueError::Conflict(j.status)),
            Some(_) => {}
        }
        Ok(ev
            .update(id, |j| {
                j.status = JobStatus::Queued;
                j.run_at = at;
                j.lease_until = None;
                j.last_attempt = j.attempt + j.max_attempts;
                j.updated_at = at;
                j.clone()
            })
            .expect("checked above"))
    }

    async fn cancel(&self, app: AppId, id: JobId) -> Result<Job, JobQueueError> {
        let mut s = self.write();
        let at = now();
        let ev = &mut s.events;
        match ev.jobs.get(&id).filter(|j| j.app_id == app) {
            None => return Err(JobQueueError::NotFound),
            Some(j) if j.status != JobStatus::Queued => {
                return Err(JobQueueError::Conflict(j.status));
            }
            Some(_) => {}
        }
        Ok(ev
            .update(id, |j| {
                j.status = JobStatus::Cancelled;
                j.updated_at = at;
                j.clone()
            })
            .expect("checked above"))
    }

    async fn delete(&self, app: AppId, id: JobId) -> Result<bool, JobQueueError> {
        let mut s = self.write();
        let ev = &mut s.events;
        match ev.jobs.get(&id).filter(|j| j.app_id == app) {
            None => Ok(false),
            Some(j) if !j.status.is_finished() => Err(JobQueueError::Conflict(j.status)),
            Some(_) => Ok(ev.remove(id).is_some()),
        }
    }

    async fn usage(&self, app: AppId) -> Result<QueueUsage, JobQueueError> {
        Ok(self.read().events.usage(app))
    }

    async fn totals(&self) -> Result<QueueUsage, JobQueueError> {
        Ok(self
            .read()
            .events
            .held
            .values()
            .fold(QueueUsage::default(), |t, u| QueueUsage {
                queued: t.queued + u.queued,
                running: t.running + u.running,
                dead: t.dead + u.dead,
                bytes: t.bytes + u.bytes,
            }))
    }

    async fn prune(&self) -> Result<u64, JobQueueError> {
        let mut s = self.write();
        let at = now();
        let ev = &mut s.events;
        let mut finished: HashMap<AppId, Vec<(DateTime<Utc>, JobId, u64)>> = HashMap::new();
        for j in ev.jobs.values() {
            if matches!(j.status, JobStatus::Succeeded | JobStatus::Cancelled) {
                finished.entry(j.app_id).or_default().push((
                    j.updated_at,
                    j.id,
                    j.source.size_bytes(),
                ));
            }
        }
        let mut gone = Vec::new();
        for (_, mut list) in finished {
            list.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
            let mut bytes = 0;
            for (i, (updated, id, size)) in list.into_iter().enumerate() {
                bytes += size;
                if i >= FINISHED_KEPT_PER_APP
                    || bytes > FINISHED_BYTES_PER_APP
                    || at - updated > FINISHED_KEPT_FOR
                {
                    gone.push(id);
                }
            }
        }
        for id in &gone {
            ev.remove(*id);
        }
        Ok(gone.len() as u64)
    }
}

#[async_trait]
impl ScheduleRepository for MemoryStore {
    async fn now(&self) -> Result<DateTime<Utc>, ScheduleRepoError> {
        Ok(now())
    }

    async fn put(
        &self,
        app: AppId,
        spec: ScheduleSpec,
    ) -> Result<(Schedule, bool), ScheduleRepoError> {
        let mut s = self.write();
        if !s.script_exists(app, &spec.script) {
            return Err(ScheduleRepoError::NotFound);
        }
        let at = now();
        let key = (app, spec.name.as_str().to_owned());
        let old = s.events.schedules.get(&key);
        let created = old.is_none();
        let schedule = Schedule {
            app_id: app,
            name: spec.name,
            script: spec.script,
            cron: spec.cron,
            timezone: spec.timezone,
            payload: spec.payload,
            enabled: spec.enabled,
            max_attempts: spec.max_attempts,
            next_run_at: spec.next_run_at,
            last_run_at: old.and_then(|o| o.last_run_at),
            last_job: old.and_then(|o| o.last_job),
            created_at: old.map_or(at, |o| o.created_at),
            updated_at: at,
        };
        s.events.schedules.insert(key, schedule.clone());
        Ok((schedule, created))
    }

    async fn get(
        &self,
        app: AppId,
        name: &ScheduleName,
    ) -> Result<Option<Schedule>, ScheduleRepoError> {
        Ok(self
            .read()
            .events
            .schedules
            .get(&(app, name.as_str().to_owned()))
            .cloned())
    }

    async fn list(&self, app: AppId) -> Result<Vec<Schedule>, ScheduleRepoError> {
        Ok(self
            .read()
            .events
            .schedules
            .range((app, String::new())..)
            .take_while(|((a, _), _)| *a == app)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn delete(&self, app: AppId, name: &ScheduleName) -> Result<bool, ScheduleRepoError> {
        Ok(self
            .write()
            .events
            .schedules
            .remove(&(app, name.as_str().to_owned()))
            .is_some())
    }

    async fn due(&self, limit: usize) -> Result<Vec<Schedule>, ScheduleRepoError> {
        let at = now();
        let s = self.read();
        let mut due: Vec<&Schedule> = s
            .events
            .schedules
            .values()
            .filter(|sc| sc.enabled && sc.next_run_at.is_some_and(|t| t <= at))
            .collect();
        due.sort_by_key(|sc| sc.next_run_at);
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, ScheduleRepoError> {
        Ok(self
            .read()
            .events
            .schedules
            .values()
            .filter(|sc| sc.enabled)
            .filter_map(|sc| sc.next_run_at)
            .min())
    }

    async fn fire(&self, tick: Tick) -> Result<bool, ScheduleRepoError> {
        let mut s = self.write();
        let at = now();
        let key = (tick.app_id, tick.name.as_str().to_owned());
        let scheduled_at = match &tick.job.source {
            JobSource::Cron { scheduled_at, .. } => *scheduled_at,
            _ => {
                return Err(ScheduleRepoError::Backend(
                    "a tick's job must be a cron job".into(),
                ));
            }
        };
        let script_exists = s.script_exists(tick.app_id, &tick.job.script);
        let ev = &mut s.events;
        let Some(schedule) = ev.schedules.get_mut(&key) else {
            return Ok(false);
        };
        if schedule.next_run_at != Some(tick.due) {
            return Ok(false);
        }
        schedule.next_run_at = tick.next;
        schedule.last_run_at = Some(scheduled_at);
        schedule.last_job = Some(tick.job.id);
        schedule.updated_at = at;
        let unique = (tick.app_id, tick.name.as_str().to_owned(), scheduled_at);
        if script_exists && !ev.ticks.contains(&unique) {
            ev.ticks.insert(unique);
            ev.insert(queued(tick.job, at));
        }
        Ok(true)
    }
}

#[async_trait]
impl SubscriptionRepository for MemoryStore {
    async fn put_subscription(
        &self,
        app: AppId,
        name: &ScheduleName,
        topic: &Topic,
        script: &ScriptName,
        max_attempts: u32,
    ) -> Result<(Subscription, bool), SubscriptionRepoError> {
        let mut s = self.write();
        if !s.script_exists(app, script) {
            return Err(SubscriptionRepoError::NotFound);
        }
        let at = now();
        let key = (app, name.as_str().to_owned());
        let old = s.events.subscriptions.get(&key);
        let created = old.is_none();
        let sub = Subscription {
            app_id: app,
            name: name.clone(),
            topic: topic.clone(),
            script: script.clone(),
            max_attempts,
            created_at: old.map_or(at, |o| o.created_at),
            updated_at: at,
        };
        s.events.subscriptions.insert(key, sub.clone());
        Ok((sub, created))
    }

    async fn list_subscriptions(
        &self,
        app: AppId,
    ) -> Result<Vec<Subscription>, SubscriptionRepoError> {
        Ok(self
            .read()
            .events
            .subscriptions
            .range((app, String::new())..)
            .take_while(|((a, _), _)| *a == app)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn delete_subscription(
        &self,
        app: AppId,
        name: &ScheduleName,
    ) -> Result<bool, SubscriptionRepoError> {
        Ok(self
            .write()
            .events
            .subscriptions
            .remove(&(app, name.as_str().to_owned()))
            .is_some())
    }
}
