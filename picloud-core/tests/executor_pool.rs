//! The worker pool: scripts run off the async runtime, one tenant cannot
//! starve another, a full queue answers `Overloaded` at once, and the
//! transport can hold the executor as `Arc<dyn Executor>` (or a mock).
//!
//! The tests that spin workers or measure time take [`SERIAL`]: on a 2-core
//! machine, another test's infinite loops would otherwise steal the CPU that
//! a timing bound assumes. State is awaited through
//! [`RhaiExecutor::stats`], never through a fixed sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::executor::{
    ExecError, ExecErrorKind, Executor, ExecutorConfig, ExecutorStats, Invocation, Limits,
    MockExecutor, RhaiExecutor, ScriptRequest, ScriptResponse, compile,
};

/// Held by every test that keeps workers busy or measures elapsed time.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_infinite_loops_do_not_starve_another_tenant() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap());
    assert_eq!(ex.config().per_tenant_max_in_flight, 1);
    let limits = Limits::default();
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

    // App B's trivial script still gets a worker, well within A's wall
    // clock (1 s): B never waits for one of A's loops to end.
    let started = Instant::now();
    let inv = ex
        .execute("app-b", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(inv.outcome.is_ok());
    assert!(
        waited < Duration::from_millis(800),
        "app B waited {waited:?}"
    );

    // A's loops all end on a time limit (the wall clock, or the operation
    // count on a fast machine), one worker at a time.
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
    let ex = Arc::new(RhaiExecutor::new(ExecutorConfig::with_workers(4)).unwrap());
    assert_eq!(ex.config().per_tenant_max_in_flight, 2);
    let looping = spin_forever();
    let short = Limits {
        wall_clock: Duration::from_millis(600),
        ..Limits::default()
    };
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
        assert!(
            waited < Duration::from_millis(400),
            "round {round}: the victim waited {waited:?} for a worker"
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
    // "At once": far less than the wall clock it would wait for a worker.
    assert!(waited < Duration::from_millis(500), "{waited:?}");
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
        ..ExecutorConfig::with_workers(2)
    };
    let ex = Arc::new(RhaiExecutor::new(config).unwrap());
    let limits = Limits {
        wall_clock: Duration::from_millis(200),
        ..Limits::default()
    };
    let looping = spin_forever();
    let flood: Vec<_> = (0..10)
        .map(|_| {
            let (ex, looping) = (Arc::clone(&ex), looping.clone());
            tokio::spawn(async move {
                ex.execute("greedy", &looping, ScriptRequest::default(), &limits)
                    .await
            })
        })
        .collect();
    let mut overloaded = 0;
    for handle in flood {
        match handle.await.unwrap() {
            Err(ExecError::Overloaded) => overloaded += 1,
            Ok(inv) => assert!(inv.outcome.is_err()),
            Err(other) => panic!("{other:?}"),
        }
    }
    // 1 running + 3 queued were accepted at most; the rest refused.
    assert!(overloaded >= 6, "{overloaded}");
    let inv = ex
        .execute("modest", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    assert!(inv.outcome.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_off_the_runtime_threads() {
    let _serial = SERIAL.lock().await;
    let ex = RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap();
    let limits = Limits {
        wall_clock: Duration::from_millis(300),
        ..Limits::default()
    };
    // While a script spins on a worker, the runtime keeps serving tasks.
    let looping = spin_forever();
    let run = ex.execute("a", &looping, ScriptRequest::default(), &limits);
    let tick = async {
        let started = Instant::now();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    };
    let (inv, ticked) = tokio::join!(run, tick);
    assert!(inv.unwrap().outcome.is_err());
    assert!(ticked < Duration::from_millis(250), "{ticked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_all_get_answers() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap());
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_block_the_pool() {
    let _serial = SERIAL.lock().await;
    let ex = Arc::new(RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap());
    let limits = Limits {
        wall_clock: Duration::from_millis(200),
        ..Limits::default()
    };
    let looping = spin_forever();
    // Queue many loops for one tenant, then drop the callers.
    for _ in 0..20 {
        let fut = ex.execute("impatient", &looping, ScriptRequest::default(), &limits);
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
    }
    // The abandoned jobs are discarded unrun: this answers within a couple
    // of wall clocks, not twenty.
    let started = Instant::now();
    let inv = ex
        .execute("impatient", &trivial(), ScriptRequest::default(), &limits)
        .await
        .unwrap();
    assert!(inv.outcome.is_ok());
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mock_executor_stands_in_for_the_transport() {
    let mut mock = MockExecutor::new();
    mock.expect_execute()
        .withf(|tenant, _, request, _| tenant == "shop" && request.path == "/cart")
        .returning(|_, _, _, _| {
            Ok(Invocation {
                outcome: Ok(ScriptResponse {
                    status: 200,
                    content_type: Some("text/plain; charset=utf-8".into()),
                    headers: vec![],
                    body: b"mocked".to_vec(),
                }),
                logs: vec![],
                truncated_logs: false,
                duration: Duration::ZERO,
            })
        });
    let ex: Arc<dyn Executor> = Arc::new(mock);
    let request = ScriptRequest {
        path: "/cart".into(),
        ..ScriptRequest::default()
    };
    let inv = ex
        .execute("shop", &trivial(), request, &Limits::default())
        .await
        .unwrap();
    assert_eq!(inv.outcome.unwrap().body, b"mocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_executor_stops_its_workers() {
    let ex = RhaiExecutor::new(ExecutorConfig::with_workers(2)).unwrap();
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
    drop(ex);
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
