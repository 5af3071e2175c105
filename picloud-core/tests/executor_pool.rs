//! The worker pool: scripts run off the async runtime, one tenant cannot
//! starve another, a full queue answers `Overloaded` at once, the
//! transport's [`ScriptService`] runs scripts on whatever executor it is
//! given (a mock here), and dropping the executor stops its threads.
//!
//! Most tests turn the inline fast path off (`inline: None`): a short
//! script would otherwise answer inline, on the calling task, and never
//! meet the queue these tests are about (the fast path has its own tests,
//! in `executor_inline.rs`).
//!
//! The tests that spin workers, start executors or measure time take
//! [`SERIAL`]: on a 2-core machine, another test's infinite loops would
//! otherwise steal the CPU a time bound assumes, and the drop test counts
//! the process's worker threads. State is awaited through
//! [`RhaiExecutor::stats`], never through a fixed sleep. Time bounds are
//! fractions or multiples of the scripts' own wall clocks: the failure they
//! catch (waiting for a loop to end, running abandoned loops) costs at
//! least one whole wall clock, while a pass takes milliseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::executor::{
    ExecError, ExecErrorKind, Executor, ExecutorConfig, ExecutorStats, Invocation, Limits,
    MockExecutor, RhaiExecutor, ScriptRequest, ScriptResponse, compile,
};
use picloud_core::scripts::{InvokeError, ScriptService, exec_status};
use picloud_core::{AppService, Principal, Stores};
use picloud_store_memory::MemoryStore;

/// Held by every test that keeps workers busy, starts an executor's
/// threads, or measures elapsed time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (up to 10 s) until the executor's load satisfies `ready`.
async fn wait_for(ex: &RhaiExecutor, ready: impl Fn(&ExecutorStats) -> bool) -> ExecutorStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = ex.stats();
        if ready(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "executor never reached the state: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `workers` threads, every run on the pool (no inline attempt).
fn pool_only(workers: usize) -> ExecutorConfig {
    ExecutorConfig {
        inline: None,
        ..ExecutorConfig::with_workers(workers)
    }
}

/// Limits under which a loop ends on its wall clock, never on its
/// operation count (which a fast machine could reach first).
fn wall_clock(wall_clock: Duration) -> Limits {
    Limits {
        wall_clock,
        max_operations: Limits::MAX_OPERATIONS,
        ..Limits::default()
    }
}

fn spin_forever() -> picloud_core::executor::CompiledScript {
    compile("loop {}", &Limits::default()).unwrap()
}

/// A script that always passes the inline budget (its operations).
fn over_budget() -> picloud_core::executor::CompiledScript {
    compile(
        "let n = 0; for i in 0..100000 { n += i } n",
        &Limits::default(),
    )
    .unwrap()
}

fn trivial() -> picloud_core::executor::CompiledScript {
    compile(r#"#{ ok: true }"#, &Limits::default()).unwrap()
}

fn get(path: &str) -> ScriptRequest {
    ScriptRequest {
        method: "GET".into(),
        path: path.into(),
        ..ScriptRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_infinite_loops_do_not_starve_another_tenant() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(pool_only(2)).unwrap());
    assert_eq!(ex.config().per_tenant_max_in_flight, 1);
    let limits = wall_clock(Limits::default().wall_clock);
    let looping = spin_forever();

    // App A floods the pool: more infinite loops than there are workers.
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let (ex, looping) = (Arc::clone(&ex), looping.clone());
            tokio::spawn(async move {
                ex.execute("app-a", &looping, ScriptRequest::default(), &limits)
                    .await
            })
        })
        .collect();
    wait_for(&ex, |s| s.running == 1 && s.queued >= 1).await;

    // App B's trivial script still gets a worker (the fast path is off)
    // while A's first loop has just started: had B waited for that loop to
    // end, it would have waited most of A's wall clock.
    let started = Instant::now();
    let inv = ex
        .execute("app-b", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(inv.outcome.is_ok());
    assert!(
        waited < limits.wall_clock / 2,
        "app B waited {waited:?}, against A's wall clock of {:?}",
        limits.wall_clock
    );
    // A's loops still wait (B's worker may not have counted B's run
    // finished yet: `running` is 1 or 2).
    let during = ex.stats();
    assert!(
        during.queued >= 1,
        "A's flood had drained before B was served: {during:?}"
    );

    // A's loops all end on their wall clock, one worker at a time.
    for handle in flood {
        let inv = handle.await.unwrap().unwrap();
        let err = inv.outcome.unwrap_err();
        assert_eq!(err.kind(), ExecErrorKind::Timeout, "{err}");
    }
}

/// The second attack found a lost wake-up: after a burst from one tenant,
/// the wake-up another tenant's job sent could be taken by a worker for the
/// burst's stale queue entry, and the job then waited for a busy worker
/// (6 to 9 s in 3 of 5 trials) while half the pool slept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_is_served_at_once_after_a_burst() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(pool_only(4)).unwrap());
    assert_eq!(ex.config().per_tenant_max_in_flight, 2);
    let looping = spin_forever();
    let short = wall_clock(Duration::from_millis(600));
    for round in 0..5 {
        let burst: Vec<_> = (0..6)
            .map(|_| {
                let (ex, looping) = (Arc::clone(&ex), looping.clone());
                tokio::spawn(async move {
                    ex.execute("burst", &looping, ScriptRequest::default(), &short)
                        .await
                })
            })
            .collect();
        wait_for(&ex, |s| s.running == 2 && s.queued == 4).await;
        let started = Instant::now();
        let inv = ex
            .execute(
                "victim",
                &trivial(),
                ScriptRequest::default(),
                &Limits::default(),
            )
            .await
            .unwrap();
        let waited = started.elapsed();
        assert!(inv.outcome.is_ok());
        // Waiting for a busy worker means waiting for a burst loop, which
        // had just started, to end: most of its wall clock.
        assert!(
            waited < short.wall_clock / 2,
            "round {round}: the victim waited {waited:?} for a worker, against the burst's wall clock of {:?}",
            short.wall_clock
        );
        for handle in burst {
            handle.await.unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_overloaded_at_once() {
    let _serial = SERIAL.lock().await;
    let config = ExecutorConfig {
        queue_capacity: 2,
        per_tenant_max_queued: 2,
        per_tenant_max_in_flight: 2,
        ..ExecutorConfig::with_workers(2)
    };
    let ex = Arc::new(RhaiExecutor::new(config).unwrap());
    // Long enough that the loops are surely still running when the late
    // request comes, however slow the machine.
    let limits = Limits {
        wall_clock: Duration::from_secs(2),
        max_operations: u64::MAX,
        ..Limits::default()
    };
    let looping = spin_forever();
    // Both workers are up and waiting (until then an idle worker does not
    // count towards the admission bound).
    wait_for(&ex, |s| s.idle == 2).await;
    // 2 running + 2 queued fill the executor.
    let busy: Vec<_> = (0..4)
        .map(|i| {
            let (ex, looping) = (Arc::clone(&ex), looping.clone());
            tokio::spawn(async move {
                ex.execute(
                    &format!("t{}", i % 2),
                    &looping,
                    ScriptRequest::default(),
                    &limits,
                )
                .await
            })
        })
        .collect();
    let full = wait_for(&ex, |s| s.running == 2 && s.queued == 2 && s.idle == 0).await;
    assert_eq!(full.workers, 2);
    assert_eq!(full.tenants, 2);

    // A run that needs the pool (past the inline budget) is refused.
    let started = Instant::now();
    let result = ex
        .execute("late", &over_budget(), ScriptRequest::default(), &limits)
        .await;
    let waited = started.elapsed();
    assert!(matches!(result, Err(ExecError::Overloaded)), "{result:?}");
    // "At once": a small fraction of the wall clock it would wait for a
    // worker.
    assert!(
        waited < limits.wall_clock / 4,
        "{waited:?}, against a wall clock of {:?}",
        limits.wall_clock
    );
    assert_eq!(ExecError::Overloaded.to_string(), "executor overloaded");
    // A short script does not need the pool: it still answers, inline.
    let inv = ex
        .execute("late", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    assert!(inv.outcome.is_ok());

    // Everything admitted ran to its limit.
    for handle in busy {
        let inv = handle.await.unwrap().unwrap();
        assert_eq!(inv.outcome.unwrap_err().kind(), ExecErrorKind::Timeout);
    }
    // Drained: accepted again, and the bookkeeping is back to zero.
    let inv = ex
        .execute("late", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    assert!(inv.outcome.is_ok());
    let idle = wait_for(&ex, |s| s.idle == 2).await;
    assert_eq!((idle.running, idle.queued, idle.tenants), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_fill_the_queue_for_others() {
    let _serial = SERIAL.lock().await;
    let config = ExecutorConfig {
        queue_capacity: 8,
        per_tenant_max_queued: 3,
        per_tenant_max_in_flight: 1,
        ..pool_only(2)
    };
    let ex = Arc::new(RhaiExecutor::new(config).unwrap());
    // Greedy's admitted loops run one at a time, a wall clock each: its
    // queue stays non-empty for three wall clocks after the first starts.
    let limits = wall_clock(Duration::from_secs(1));
    let looping = spin_forever();
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..10 {
        let (ex, looping, answered) = (Arc::clone(&ex), looping.clone(), answered.clone());
        tokio::spawn(async move {
            let result = ex
                .execute("greedy", &looping, ScriptRequest::default(), &limits)
                .await;
            let _ = answered.send(result);
        });
    }
    // Greedy holds its share: 1 running + 3 queued, with room in the
    // queue (8) for others.
    let full = wait_for(&ex, |s| s.running == 1 && s.queued == 3).await;
    assert_eq!(full.tenants, 1, "{full:?}");
    // The other 6 of its requests are refused at once, without waiting for
    // a worker (an admitted one answers only after a whole wall clock).
    for i in 0..6 {
        let answer = tokio::time::timeout(limits.wall_clock / 2, answers.recv())
            .await
            .unwrap_or_else(|_| panic!("greedy's extra request {i} was queued, not refused"))
            .unwrap();
        assert!(matches!(answer, Err(ExecError::Overloaded)), "{answer:?}");
    }

    // Meanwhile, another tenant's request is admitted to the same queue and
    // answered by the free worker.
    let inv = ex
        .execute("modest", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap_or_else(|e| panic!("modest was refused while greedy was queued: {e:?}"));
    assert!(inv.outcome.is_ok());
    // ...while greedy's flood is still queued, and its next request is
    // still refused.
    let during = ex.stats();
    assert!(
        during.running >= 1 && during.queued >= 1,
        "greedy's flood had drained before modest was served: {during:?}"
    );
    let extra = tokio::time::timeout(
        limits.wall_clock / 2,
        ex.execute("greedy", &looping, ScriptRequest::default(), &limits),
    )
    .await
    .expect("greedy's request was queued, not refused");
    assert!(matches!(extra, Err(ExecError::Overloaded)), "{extra:?}");

    // The 4 admitted loops all ran, each to its wall clock.
    drop(answered);
    let mut admitted = 0;
    while let Some(answer) = answers.recv().await {
        let inv = answer.unwrap_or_else(|e| panic!("only 6 were refused: {e:?}"));
        assert_eq!(inv.outcome.unwrap_err().kind(), ExecErrorKind::Timeout);
        admitted += 1;
    }
    assert_eq!(admitted, 4);
    let idle = wait_for(&ex, |s| s.idle == 2).await;
    assert_eq!((idle.running, idle.queued, idle.tenants), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_off_the_runtime_threads() {
    let _serial = SERIAL.lock().await;
    let ex = RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap();
    let limits = wall_clock(Duration::from_secs(1));
    // While a script spins on a worker, the runtime keeps serving tasks.
    let looping = spin_forever();
    let started = Instant::now();
    let run = ex.execute("a", &looping, ScriptRequest::default(), &limits);
    let tick = async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    };
    let (inv, ticked) = tokio::join!(run, tick);
    assert_eq!(
        inv.unwrap().outcome.unwrap_err().kind(),
        ExecErrorKind::Timeout
    );
    // 10 ticks of 10 ms. Had the loop run on this task's thread, it would
    // have held both futures (they share the task) for its whole wall clock.
    assert!(
        ticked < limits.wall_clock,
        "{ticked:?}, against the loop's wall clock of {:?}",
        limits.wall_clock
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_all_get_answers() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(pool_only(2)).unwrap());
    let script = compile("request.path", &Limits::default()).unwrap();
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let (ex, script) = (Arc::clone(&ex), script.clone());
            tokio::spawn(async move {
                let request = ScriptRequest {
                    path: format!("/{i}"),
                    ..ScriptRequest::default()
                };
                let inv = ex
                    .execute(
                        &format!("app-{}", i % 7),
                        &script,
                        request,
                        &Limits::default(),
                    )
                    .await
                    .unwrap();
                (i, inv.outcome.unwrap())
            })
        })
        .collect();
    for handle in handles {
        let (i, response) = handle.await.unwrap();
        assert_eq!(response.body_text(), Some(format!("/{i}").as_str()));
    }
    assert_eq!(
        ex.stats().pool_runs,
        100,
        "every one went through the queue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_block_the_pool() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(pool_only(2)).unwrap());
    let limits = wall_clock(Duration::from_millis(200));
    let looping = spin_forever();
    // Queue many loops for one tenant, then drop the callers.
    for _ in 0..20 {
        let fut = ex.execute("impatient", &looping, ScriptRequest::default(), &limits);
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
    }
    // The abandoned jobs are discarded unrun: the tenant's next request
    // waits at most for the one loop a worker had already started, not for
    // twenty wall clocks.
    let started = Instant::now();
    let inv = ex
        .execute("impatient", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(inv.outcome.is_ok());
    assert!(
        waited < limits.wall_clock * 5,
        "{waited:?}, against a wall clock of {:?}",
        limits.wall_clock
    );
    let runs = ex.stats().pool_runs;
    assert!(runs <= 2, "{runs} runs: abandoned loops ran");
}

/// A memory store with the app `shop`, its limits `limits`, and its script
/// `cart` (an infinite loop), served by a [`ScriptService`] on `executor`.
async fn shop_on(executor: Arc<dyn Executor>, limits: Limits) -> (ScriptService, Principal) {
    let stores: Stores = MemoryStore::new().into_stores();
    let owner = picloud_core::testkit::Fixture::new(stores.clone())
        .owner()
        .await;
    AppService::new(stores.clone())
        .create(&owner, "shop", "Shop")
        .await
        .unwrap();
    let svc = ScriptService::new(stores, executor);
    svc.set_limits(&owner, "shop", limits).await.unwrap();
    svc.deploy(&owner, "shop", "cart", "loop {}".to_owned())
        .await
        .unwrap();
    (svc, owner)
}

/// The transport runs scripts through [`ScriptService`], which holds the
/// executor as `Arc<dyn Executor>`: it must run them on the one it was
/// given, for the app's slug and with the app's limits, and pass its
/// answers and errors on as it does the real executor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_service_runs_scripts_on_the_executor_it_is_given() {
    let _serial = SERIAL.lock().await;
    let limits = wall_clock(Duration::from_millis(300));

    // On the real executor, `cart` ends on the app's wall clock: 504.
    let real = Arc::new(RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap());
    let (svc, owner) = shop_on(real, limits).await;
    let (_, timed_out) = svc.invoke("shop", "cart", get("/slow")).await.unwrap();
    let timeout = timed_out.outcome.clone().unwrap_err();
    assert_eq!(timeout.kind(), ExecErrorKind::Timeout, "{timeout}");
    svc.writer().flush().await;
    let real_record = svc.invocations(&owner, "shop", "cart", 1).await.unwrap();
    assert_eq!(real_record.len(), 1);
    assert_eq!(real_record[0].status, 504);
    drop(svc);

    // The mock answers in its own words, refuses, or times out as the real
    // executor did; it is called only for the app `shop` and its limits.
    let mut mock = MockExecutor::new();
    let timed_out = Invocation {
        logs: vec![],
        ..timed_out
    };
    mock.expect_execute_hosted()
        .withf(move |tenant, _, request, given, _host| {
            tenant == "shop"
                && *given == limits
                && ["/ok", "/busy", "/slow"].contains(&request.path.as_str())
        })
        .times(3)
        .returning(move |_, _, request, _, _| match request.path.as_str() {
            "/ok" => Ok(Invocation {
                outcome: Ok(ScriptResponse {
                    status: 200,
                    content_type: Some("text/plain; charset=utf-8".into()),
                    headers: vec![],
                    body: b"mocked".to_vec(),
                }),
                logs: vec!["from the mock".into()],
                truncated_logs: false,
                duration: Duration::from_millis(1),
                emitted: vec![],
            }),
            "/busy" => Err(ExecError::Overloaded),
            _ => Ok(timed_out.clone()),
        });
    let (svc, owner) = shop_on(Arc::new(mock), limits).await;

    // The mock's answer reaches the caller (the deployed loop never ran).
    let (live, inv) = svc.invoke("shop", "cart", get("/ok")).await.unwrap();
    assert_eq!(live.limits, limits);
    assert_eq!(inv.outcome.unwrap().body, b"mocked");
    // Its refusal is the caller's: a 503, nothing recorded.
    let err = svc.invoke("shop", "cart", get("/busy")).await.unwrap_err();
    let InvokeError::Exec(err) = err else {
        panic!("{err:?}")
    };
    assert_eq!(err, ExecError::Overloaded);
    assert_eq!(exec_status(&err), 503);
    // Its timeout is recorded exactly as the real executor's was.
    let (_, inv) = svc.invoke("shop", "cart", get("/slow")).await.unwrap();
    assert_eq!(inv.outcome.unwrap_err(), timeout);
    svc.writer().flush().await;
    let records = svc.invocations(&owner, "shop", "cart", 10).await.unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    let (slow, ok) = (&records[0], &records[1]);
    assert_eq!(
        (slow.status, &slow.error),
        (real_record[0].status, &real_record[0].error)
    );
    assert_eq!(slow.error.as_deref(), Some(timeout.to_string().as_str()));
    assert_eq!(
        (ok.status, &ok.logs, &ok.error),
        (200, &vec!["from the mock".to_owned()], &None)
    );
}

/// The ids of this process's threads named like a pool worker
/// (`picloud-script-N`, which Linux shows cut to 15 bytes).
#[cfg(target_os = "linux")]
fn script_threads() -> std::collections::BTreeSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc is mounted")
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if !name.starts_with("picloud-script") {
                return None;
            }
            task.file_name().to_str()?.parse().ok()
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_executor_stops_its_workers() {
    // No other test starts (or stops) an executor's threads meanwhile.
    let _serial = SERIAL.lock().await;
    let before = script_threads();
    let ex = RhaiExecutor::new(pool_only(2)).unwrap();
    // Both workers have started (and named themselves) and sleep.
    wait_for(&ex, |s| s.idle == 2).await;
    let workers: Vec<u32> = script_threads().difference(&before).copied().collect();
    assert_eq!(workers.len(), 2, "the executor's threads: {workers:?}");
    let inv = ex
        .execute(
            "a",
            &trivial(),
            ScriptRequest::default(),
            &Limits::default(),
        )
        .await
        .unwrap();
    assert!(inv.outcome.is_ok());
    assert_eq!(ex.stats().pool_runs, 1);
    drop(ex);
    // Idle workers wake up and end: their threads leave the process.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = script_threads();
        let still: Vec<_> = workers.iter().filter(|t| alive.contains(t)).collect();
        if still.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workers {still:?} still run 10 s after the executor was dropped"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[test]
fn default_config_fits_the_machine() {
    let config = ExecutorConfig::default();
    assert!(config.workers >= 2);
    assert!(config.per_tenant_max_in_flight >= 1);
    assert!(config.per_tenant_max_in_flight < config.workers);
    assert!(config.per_tenant_max_queued < config.queue_capacity);
    assert!(config.stack_size >= 16 * 1024 * 1024);
}
