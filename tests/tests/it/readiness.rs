//! `/readyz` never runs ahead of the broker: from the moment a worker starts, the first 200 it
//! answers comes when RabbitMQ itself already counts a consumer on every queue that worker runs.
//!
//! Each test starts a worker the way its binary does (health server and worker together), polls
//! `/readyz` as fast as a probe could, and at the first 200 asks the broker for each queue's
//! consumer count (a passive `queue.declare`, on a channel opened beforehand).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comms_runtime::clock::SystemClock;
use comms_runtime::settings::Settings;
use comms_runtime::shutdown::Shutdown;
use comms_tests::{TestEnv, free_address};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

/// Longer than any worker takes to attach on a loaded machine.
const LIMIT: Duration = Duration::from_secs(30);

/// The test's settings with health (and gateway) on free ports.
fn settings(env: &TestEnv) -> (Settings, SocketAddr) {
    let mut settings = (*env.settings).clone();
    settings.http.listen = free_address();
    settings.gateway.listen = free_address();
    settings.gateway.public_url = format!("http://{}", settings.gateway.listen);
    let http = settings.http.listen;
    (settings, http)
}

/// Polls `http`'s `/readyz` until the first 200 and returns how long that took; fails if the
/// worker ends first or nothing is ready within [`LIMIT`].
async fn first_ready(
    http: SocketAddr,
    worker: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> Duration {
    let client = reqwest::Client::new();
    let url = format!("http://{http}/readyz");
    let started = Instant::now();
    loop {
        assert!(
            !worker.is_finished(),
            "the worker ended before it was ready"
        );
        assert!(started.elapsed() < LIMIT, "never ready");
        if let Ok(answer) = client.get(&url).send().await
            && answer.status() == 200
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts `worker`, waits for its first 200 on `/readyz`, and asserts that every one of `queues`
/// then has a consumer in the broker's own count.
async fn assert_ready_only_when_attached<F, Fut>(env: &TestEnv, queues: &[String], start: F)
where
    F: FnOnce(Settings, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let channel = env.connection.create_channel().await.expect("channel");
    let (settings, http) = settings(env);
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(start(settings, shutdown.clone()));
    let after = first_ready(http, &worker).await;
    let mut counts = Vec::new();
    for queue in queues {
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists");
        counts.push((queue.clone(), declared.consumer_count()));
    }
    assert!(
        counts.iter().all(|(_, consumers)| *consumers >= 1),
        "ready after {after:?} while the broker counted {counts:?}"
    );
    shutdown.cancel();
    worker.await.expect("worker task").expect("worker stops");
    let _ = channel.close(200, "done".into()).await;
}

fn send_queues(env: &TestEnv) -> Vec<String> {
    comms_sender::CHANNELS
        .iter()
        .map(|channel| env.topology.send_queue(channel).name)
        .collect()
}

#[tokio::test]
async fn the_sender_is_ready_only_when_every_send_queue_has_its_consumer() {
    let env = TestEnv::new().await;
    let queues = send_queues(&env);
    assert_ready_only_when_attached(&env, &queues, |settings, shutdown| {
        comms_runtime::runtime::standalone(settings, shutdown, |runtime, shutdown| {
            comms_sender::run(runtime, Arc::new(SystemClock), shutdown)
        })
    })
    .await;
    env.teardown().await;
}

#[tokio::test]
async fn the_status_worker_is_ready_only_when_its_queue_has_its_consumer() {
    let env = TestEnv::new().await;
    let queues = [env.topology.status_queue().name];
    assert_ready_only_when_attached(&env, &queues, comms_status::run_standalone).await;
    env.teardown().await;
}

#[tokio::test]
async fn the_replies_worker_is_ready_only_when_its_queue_has_its_consumer() {
    let env = TestEnv::new().await;
    let queues = [env.topology.replies_queue().name];
    assert_ready_only_when_attached(&env, &queues, comms_replies::run_standalone).await;
    env.teardown().await;
}

#[tokio::test]
async fn the_fleet_is_ready_only_when_every_queue_it_consumes_has_its_consumer() {
    let env = TestEnv::new().await;
    let mut queues = send_queues(&env);
    queues.push(env.topology.status_queue().name);
    queues.push(env.topology.replies_queue().name);
    assert_ready_only_when_attached(&env, &queues, |settings, shutdown| {
        let options = comms_fleet::Options {
            with_sandbox: false,
            sandbox_listen: free_address(),
            worker: Default::default(),
        };
        comms_fleet::run(settings, options, shutdown)
    })
    .await;
    env.teardown().await;
}

#[tokio::test]
async fn the_gateway_is_ready_only_when_it_accepts_requests() {
    let env = TestEnv::new().await;
    let (settings, http) = settings(&env);
    let gateway = settings.gateway.listen;
    let shutdown = Shutdown::new();
    let worker = tokio::spawn(comms_gateway::run_standalone(settings, shutdown.clone()));
    let after = first_ready(http, &worker).await;
    let answer = reqwest::get(format!("http://{gateway}/healthz")).await;
    assert!(
        answer.is_ok_and(|a| a.status() == 200),
        "ready after {after:?}, so the gateway answers on {gateway}"
    );
    shutdown.cancel();
    worker.await.expect("gateway task").expect("gateway stops");
    env.teardown().await;
}
