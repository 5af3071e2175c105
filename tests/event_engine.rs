//! The event engine's guarantees under failure and contention, on the real
//! binary and on real PostgreSQL:
//!
//! - **no acknowledged job is lost**: `/async` jobs acknowledged (202)
//!   before a SIGKILL all succeed after a restart on the same database,
//!   the ones that were running reclaimed when their leases expire, and
//!   none completes twice (one succeeded attempt each);
//! - **each tick fires exactly once**: three nodes (three schedulers, three
//!   runners, three connection pools) on one database turn a per-second
//!   schedule into one job per tick, each run once;
//! - **an idle server burns no CPU**, with a schedule due only next year
//!   (memory and PostgreSQL);
//! - **SIGTERM drains**: the process exits 0 within seconds, after its
//!   running attempts finished and their completions were written (checked
//!   in the database on PostgreSQL; on memory, queued jobs are lost with
//!   the process, as documented).
//!
//! PostgreSQL cases need `DATABASE_URL` (they say loudly that they were
//! skipped without it; with `CI=true` a missing database is a failure).

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use picloud::Principal;
use picloud::http::ApiState;
use picloud::server::open_store;
use picloud_core::domain::{Job, JobSource, JobStatus};
use picloud_core::events::{JobRunner, RunnerConfig, ScheduleInput, Scheduler};
use picloud_core::ports::JobFilter;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `picloud` process started by a test.
struct Proc {
    child: Child,
    base: String,
    /// Every line of its standard output (the log), still growing.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Starts the binary on `database_url` (or memory) with the bootstrap
/// token `token` and a 50 ms retry base, and waits for its ready line.
async fn spawn(database_url: Option<&str>, token: &str) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picloud"));
    cmd.env("PICLOUD_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("PICLOUD_BOOTSTRAP_TOKEN", token)
        .env("PICLOUD_RETRY_BASE_MS", "50")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let base = loop {
        let line = tokio::time::timeout_at(deadline, reader.next_line())
            .await
            .expect("the server became ready in time")
            .expect("stdout readable")
            .unwrap_or_else(|| panic!("the server exited before it was ready:\n{lines:#?}"));
        let line = support::strip_ansi(&line);
        let found = line
            .split("picloud ready on ")
            .nth(1)
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned());
        lines.push(line);
        if let Some(base) = found {
            break base;
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    let lines = Arc::new(Mutex::new(lines));
    let more = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            more.lock().unwrap().push(support::strip_ansi(&line));
        }
    });
    Proc { child, base, lines }
}

/// Sends SIGTERM (the binary's graceful shutdown) and waits up to `within`
/// for the exit; returns how long it took.
async fn sigterm(p: &mut Proc, within: Duration) -> Duration {
    let pid = p.pid();
    let started = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(within, p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within {within:?} of SIGTERM; log:\n{}", p.log()))
        .expect("wait for the child");
    assert!(exit.success(), "exit status {exit}; log:\n{}", p.log());
    started.elapsed()
}

/// The owner's admin API over HTTP.
struct Admin {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn new(p: &Proc, token: &str) -> Self {
        Self {
            client: {
                picloud_core::egress::install_crypto_provider();
                reqwest::Client::new()
            },
            base: p.base.clone(),
            token: token.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn create_app(&self, slug: &str) {
        let resp = self
            .client
            .post(self.url("/api/v1/admin/apps"))
            .bearer_auth(&self.token)
            .json(&json!({ "slug": slug, "name": slug }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert_eq!(
            status,
            201,
            "create app {slug}: {}",
            resp.text().await.unwrap()
        );
    }

    async fn deploy(&self, app: &str, name: &str, source: &str) {
        let resp = self
            .client
            .put(self.url(&format!("/api/v1/admin/apps/{app}/scripts/{name}")))
            .bearer_auth(&self.token)
            .header("content-type", "text/plain")
            .body(source.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "deploy {app}/{name}: {status} {}",
            resp.text().await.unwrap()
        );
    }

    async fn put_schedule(&self, app: &str, name: &str, body: Value) {
        let resp = self
            .client
            .put(self.url(&format!("/api/v1/admin/apps/{app}/schedules/{name}")))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "put schedule {app}/{name}: {status} {}",
            resp.text().await.unwrap()
        );
    }

    /// `POST /async/{app}/{script}` with a JSON body and at most
    /// `max_attempts` attempts; the job's id if it was acknowledged (202).
    async fn enqueue(&self, app: &str, script: &str, body: &Value, max_attempts: u32) -> String {
        let resp = self
            .client
            .post(self.url(&format!("/async/{app}/{script}")))
            .header("picloud-max-attempts", max_attempts.to_string())
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "/async/{app}/{script}: {answer}");
        assert_eq!(answer["status"], "queued", "{answer}");
        answer["job_id"].as_str().expect("a job id").to_owned()
    }

    /// The app's jobs (up to 1000), newest first.
    async fn jobs(&self, app: &str) -> Vec<Value> {
        let resp = self
            .client
            .get(self.url(&format!("/api/v1/admin/apps/{app}/jobs?limit=1000")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// `POST /run/{app}/{script}` with a JSON body: its status and how long
    /// it took.
    async fn run(&self, app: &str, script: &str, body: &Value) -> (u16, Duration) {
        let started = Instant::now();
        let resp = self
            .client
            .post(self.url(&format!("/run/{app}/{script}")))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        (status, started.elapsed())
    }

    /// The loop count that makes [`BUSY`] take about `target` here, now
    /// (the best of three runs, scaled), kept far inside the 1 s wall clock.
    async fn calibrate(&self, app: &str, target: Duration) -> u64 {
        let probe = 100_000u64;
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let (status, took) = self
                .run(app, "busy", &json!({ "n": -1, "loops": probe }))
                .await;
            assert_eq!(status, 200, "the busy script runs");
            best = best.min(took);
        }
        let per_loop = best.as_secs_f64() / probe as f64;
        let loops = (target.as_secs_f64() / per_loop) as u64;
        eprintln!("calibrated: {probe} loops in {best:?}; {loops} loops for {target:?}");
        loops.clamp(1_000, 20_000_000)
    }
}

/// A script that loops `request.json.loops` times, then answers
/// `#{n: request.json.n}`.
const BUSY: &str = r#"
let x = 0;
for i in 0..request.json.loops { x += i; }
#{ n: request.json.n }
"#;

/// The attempts of a job (in the API's shape) that succeeded.
fn succeeded_attempts(job: &Value) -> usize {
    job["attempts"].as_array().map_or(0, |a| {
        a.iter().filter(|x| x["status"] == "succeeded").count()
    })
}

fn status_counts(jobs: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for j in jobs {
        *counts
            .entry(j["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}

// ---------------------------------------------------------------------------
// 1. No acknowledged job is lost, through a SIGKILL.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_job_is_lost_when_the_process_is_killed() {
    const JOBS: usize = 40;
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let token = support::random_token();
    let mut first = spawn(Some(&url), &token).await;
    let admin = Admin::new(&first, &token);
    admin.create_app("crash").await;
    admin.deploy("crash", "busy", BUSY).await;
    let loops = admin.calibrate("crash", Duration::from_millis(200)).await;

    // Every acknowledged job, with the body it was given. A generous
    // budget: on a loaded machine an attempt may wait in the pool past its
    // lease and be reclaimed, and each such attempt counts.
    let mut acknowledged: HashMap<String, i64> = HashMap::new();
    for n in 0..JOBS as i64 {
        let id = admin
            .enqueue("crash", "busy", &json!({ "n": n, "loops": loops }), 10)
            .await;
        assert!(acknowledged.insert(id, n).is_none(), "a job id came twice");
    }

    // Kill it once the first job has succeeded: the rest are queued or
    // running (claimed, with a lease).
    let deadline = Instant::now() + Duration::from_secs(20);
    let before_kill = loop {
        let jobs = admin.jobs("crash").await;
        let done = jobs.iter().filter(|j| j["status"] == "succeeded").count();
        if done > 0 {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "no job succeeded within 20 s: {:?}",
            status_counts(&jobs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.child.start_kill().expect("SIGKILL sent");
    let exit = first.child.wait().await.unwrap();
    assert!(!exit.success(), "killed, not exited: {exit}");
    let counts = status_counts(&before_kill);
    eprintln!("at the SIGKILL: {counts:?}");
    let unfinished = JOBS - counts.get("succeeded").copied().unwrap_or(0);
    assert!(
        unfinished > 0,
        "every job finished before the kill: the test proves nothing ({counts:?})"
    );
    drop(admin);

    // Restart on the same database: the jobs still queued run, and the
    // running ones are reclaimed once their lease (wall clock 1 s + 5 s of
    // grace) has expired.
    let mut second = spawn(Some(&url), &token).await;
    let admin = Admin::new(&second, &token);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    let jobs = loop {
        let jobs = admin.jobs("crash").await;
        let all_done = acknowledged.keys().all(|id| {
            jobs.iter()
                .any(|j| j["id"] == id.as_str() && j["status"] == "succeeded")
        });
        if all_done {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "not every acknowledged job succeeded within 90 s of the restart: {:?}\n{jobs:#?}",
            status_counts(&jobs)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "every acknowledged job succeeded {:?} after the restart",
        started.elapsed()
    );

    assert_eq!(
        jobs.len(),
        JOBS,
        "exactly the acknowledged jobs exist: {jobs:#?}"
    );
    let mut reclaimed = 0;
    for (id, n) in &acknowledged {
        let job = jobs
            .iter()
            .find(|j| j["id"] == id.as_str())
            .unwrap_or_else(|| panic!("acknowledged job {id} is gone"));
        assert_eq!(job["status"], "succeeded", "{job:#}");
        assert_eq!(
            succeeded_attempts(job),
            1,
            "job {id} completed exactly once: {job:#}"
        );
        let attempts = job["attempts"].as_array().unwrap();
        assert_eq!(
            attempts.last().unwrap()["status"],
            "succeeded",
            "the succeeded attempt is the last: {job:#}"
        );
        assert_eq!(
            job["attempt"].as_u64(),
            attempts.last().unwrap()["attempt"].as_u64(),
            "{job:#}"
        );
        if attempts.len() > 1 {
            reclaimed += 1;
        }
        let body: Value = serde_json::from_str(job["result"]["body"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("job {id}'s result is JSON ({e}): {job:#}"));
        assert_eq!(body, json!({ "n": n }), "job {id} ran its own request");
    }
    eprintln!("{reclaimed} of {JOBS} jobs had a lost attempt before the one that succeeded");
    drop(admin);
    sigterm(&mut second, Duration::from_secs(15)).await;
}

// ---------------------------------------------------------------------------
// 2. Exactly one job per tick, with three nodes racing.
// ---------------------------------------------------------------------------

/// How often each node re-checks the database for work the others added.
const NODE_BACKSTOP: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_tick_becomes_exactly_one_job_across_three_nodes() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    let setup = open_store(Some(&url)).await.expect("the store opens");
    let state = ApiState::new(setup.stores.clone());
    state
        .auth
        .bootstrap(Some(&support::random_token()))
        .await
        .expect("bootstrap");
    let owner = setup
        .stores
        .users
        .find_by_username("admin")
        .await
        .unwrap()
        .expect("the bootstrap owner");
    let owner = Principal::of(&owner);
    state.apps.create(&owner, "ticks", "Ticks").await.unwrap();
    state
        .scripts
        .deploy(
            &owner,
            "ticks",
            "beat",
            "request.event.scheduled_at".to_owned(),
        )
        .await
        .expect("deploy");
    let app = setup
        .stores
        .apps
        .find_by_slug("ticks")
        .await
        .unwrap()
        .unwrap();

    // Three nodes: each its own pool of connections, services, executor,
    // scheduler and runner. They learn of each other's work only through
    // the database (and the backstop).
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let opened = open_store(Some(&url)).await.expect("the store opens");
        let node = ApiState::new(opened.stores);
        let scheduler = Scheduler::start(node.events.clone(), Some(NODE_BACKSTOP));
        let runner = JobRunner::start(
            node.events.clone(),
            RunnerConfig {
                backstop: Some(NODE_BACKSTOP),
                retry_base: Duration::from_millis(50),
                ..RunnerConfig::default()
            },
        );
        nodes.push((node, scheduler, runner));
    }
    let (view, created) = state
        .events
        .put_schedule(
            &owner,
            "ticks",
            "every-second",
            ScheduleInput {
                script: "beat".into(),
                cron: "* * * * * *".into(),
                ..ScheduleInput::default()
            },
        )
        .await
        .expect("put the schedule");
    assert!(created);
    assert!(view.schedule.next_run_at.is_some(), "{view:?}");

    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut runners = Vec::new();
    for (node, scheduler, runner) in nodes {
        scheduler.stop().await;
        runners.push((node, runner));
    }
    // No tick fires any more: let the runners finish what was fired.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = setup
            .stores
            .jobs
            .list(
                app.id,
                JobFilter {
                    limit: 1000,
                    ..JobFilter::default()
                },
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|j| matches!(j.status, JobStatus::Queued | JobStatus::Running))
            .count();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} tick jobs still queued or running 20 s after the schedulers stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_node, runner) in runners {
        runner.drain().await;
    }

    let jobs: Vec<Job> = setup
        .stores
        .jobs
        .list(
            app.id,
            JobFilter {
                limit: 1000,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    let mut ticks = Vec::new();
    for job in &jobs {
        let JobSource::Cron {
            schedule,
            scheduled_at,
            ..
        } = &job.source
        else {
            panic!("only tick jobs exist: {job:?}");
        };
        assert_eq!(schedule.as_str(), "every-second");
        assert_eq!(job.status, JobStatus::Succeeded, "{job:?}");
        assert_eq!(job.attempt, 1, "run once, on its first attempt: {job:?}");
        assert_eq!(job.attempts.len(), 1, "one attempt: {job:?}");
        assert!(job.attempts[0].succeeded, "{job:?}");
        let seen = job.result.as_ref().map(|r| r.body.as_str());
        let nominal = scheduled_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        assert_eq!(
            seen,
            Some(nominal.as_str()),
            "the run saw its own tick: {job:?}"
        );
        ticks.push(*scheduled_at);
    }
    ticks.sort();
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "a tick became more than one job: {ticks:?}"
    );
    assert!(
        ticks.len() >= 3,
        "at least 3 ticks in 4 s, got {}: {ticks:?}",
        ticks.len()
    );
    for t in &ticks {
        assert_eq!(
            t.timestamp_subsec_nanos(),
            0,
            "ticks are on the second: {t}"
        );
    }

    // The same, straight from the database.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let duplicated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT scheduled_at FROM jobs WHERE kind = 'cron' \
         GROUP BY app_id, schedule, scheduled_at HAVING count(*) > 1) AS d",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(duplicated, 0, "no tick has two jobs in the database");
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE kind = 'cron' AND status = 'succeeded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        usize::try_from(rows).unwrap(),
        ticks.len(),
        "the store's listing is the table"
    );
    pool.close().await;
    let gaps: Vec<i64> = ticks
        .windows(2)
        .map(|w| (w[1] - w[0]).num_seconds())
        .collect();
    eprintln!(
        "{} ticks, one job each; gaps in seconds: {gaps:?}",
        ticks.len()
    );
}

// ---------------------------------------------------------------------------
// 3. Idle burns no CPU.
// ---------------------------------------------------------------------------

/// CPU ticks (user + system, of 10 ms) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name (which may hold spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| -> u64 { fields[i].parse().expect("a number") };
    field(11) + field(12) // utime and stime, fields 14 and 15 of stat
}

/// An idle server with a schedule due next year, after it ran a job, uses
/// no CPU for 5 s. The goal is 0 ticks; the slack of 2 covers one backstop
/// re-check (PostgreSQL, every 30 s, so at most one falls in the window)
/// or one log flush. A polling loop of any period under a second would
/// show up as many more.
async fn idle_burns_no_cpu(database_url: Option<String>) {
    let token = support::random_token();
    let mut p = spawn(database_url.as_deref(), &token).await;
    let admin = Admin::new(&p, &token);
    admin.create_app("idle").await;
    admin.deploy("idle", "ok", r#""ok""#).await;
    admin
        .put_schedule(
            "idle",
            "new-year",
            json!({ "script": "ok", "cron": "0 0 1 1 *" }),
        )
        .await;
    // Let the engine do some work first: one run, one job.
    let (status, _) = admin.run("idle", "ok", &json!({})).await;
    assert_eq!(status, 200);
    let id = admin.enqueue("idle", "ok", &json!({}), 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = admin.jobs("idle").await;
        if jobs
            .iter()
            .any(|j| j["id"] == id.as_str() && j["status"] == "succeeded")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not run: {jobs:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(admin); // and its keep-alive connections

    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = p.pid();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_ticks(pid) - before;
    eprintln!(
        "idle ({}): {used} CPU ticks of 10 ms in 5 s",
        if database_url.is_some() {
            "postgres"
        } else {
            "memory"
        }
    );
    assert!(
        used <= 2,
        "an idle server used {used} ticks (10 ms each) of CPU in 5 s; the goal is 0. Log:\n{}",
        p.log()
    );
    sigterm(&mut p, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_burns_no_cpu_on_memory() {
    idle_burns_no_cpu(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_server_burns_no_cpu_on_postgres() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    idle_burns_no_cpu(Some(url)).await;
}

// ---------------------------------------------------------------------------
// 4. SIGTERM drains.
// ---------------------------------------------------------------------------

/// With jobs of a ~300 ms script running, SIGTERM makes the process exit 0
/// within seconds: it stops claiming, lets the running attempts finish,
/// writes their completions, and leaves queued jobs queued. On memory those
/// are lost with the process (documented: nothing persists); on PostgreSQL
/// the database shows each job either succeeded on its first attempt or
/// still queued, never running and never with a lost attempt.
async fn sigterm_drains(database_url: Option<String>) {
    const JOBS: usize = 6;
    let token = support::random_token();
    let mut p = spawn(database_url.as_deref(), &token).await;
    let admin = Admin::new(&p, &token);
    admin.create_app("drain").await;
    admin.deploy("drain", "busy", BUSY).await;
    let loops = admin.calibrate("drain", Duration::from_millis(300)).await;
    let mut ids = Vec::new();
    for n in 0..JOBS as i64 {
        ids.push(
            admin
                .enqueue("drain", "busy", &json!({ "n": n, "loops": loops }), 3)
                .await,
        );
    }
    // Wait until attempts are under way.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = admin.jobs("drain").await;
        if jobs.iter().any(|j| j["status"] == "running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no job started: {:?}",
            status_counts(&jobs)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(admin);
    let took = sigterm(&mut p, Duration::from_secs(15)).await;
    eprintln!("SIGTERM with {JOBS} jobs of ~300 ms queued or running: exited 0 after {took:?}");
    assert!(
        p.log().contains("picloud ready on"),
        "the log is readable: {}",
        p.log()
    );

    let Some(url) = database_url else {
        return;
    };
    let opened = open_store(Some(&url)).await.expect("the store opens");
    let app = opened
        .stores
        .apps
        .find_by_slug("drain")
        .await
        .unwrap()
        .unwrap();
    let jobs = opened
        .stores
        .jobs
        .list(
            app.id,
            JobFilter {
                limit: 1000,
                ..JobFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), JOBS);
    let mut succeeded = 0;
    for job in &jobs {
        match job.status {
            JobStatus::Succeeded => {
                succeeded += 1;
                assert_eq!(job.attempt, 1, "finished on its first attempt: {job:?}");
                assert_eq!(job.attempts.len(), 1, "no lost attempt: {job:?}");
                assert!(job.attempts[0].succeeded, "{job:?}");
            }
            JobStatus::Queued => {
                assert_eq!(job.attempt, 0, "a queued job never started: {job:?}");
                assert!(job.attempts.is_empty(), "{job:?}");
            }
            other => panic!("after the drain a job is {other}: {job:?}"),
        }
    }
    assert!(
        succeeded > 0,
        "the attempts running at SIGTERM finished: {jobs:?}"
    );
    eprintln!(
        "after the drain: {succeeded} succeeded, {} still queued",
        JOBS - succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_attempts_on_memory() {
    sigterm_drains(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_running_attempts_on_postgres() {
    let Some(url) = picloud::store::postgres::testing::fresh_database_url().await else {
        return;
    };
    sigterm_drains(Some(url)).await;
}
