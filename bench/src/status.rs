//! Status ingestion: signed Twilio status callbacks posted to the gateway by a load generator on
//! loopback, through `comms.provider` and the status worker, until every message shows its final
//! state. Callbacks per second and callback-to-recorded latency.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::load::Bench;
use crate::procs::{self, Worker};
use crate::stats::percentile;

const TOKEN: &str = "bench-twilio-token";

/// The status worker's consumer settings in this scenario: those of its Kubernetes deployment
/// (deploy/kubernetes/status.yaml); the whole loop runs it with them too.
pub(crate) const STATUS_CONSUMER: &[(&str, &str)] = &[
    ("COMMS__CONSUMER__GROUP_MAX", "64"),
    ("COMMS__CONSUMER__CONCURRENCY", "128"),
    ("COMMS__CONSUMER__PREFETCH", "256"),
];

fn signature(url: &str, params: &[(&str, String)]) -> String {
    let mut sorted: Vec<_> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(TOKEN.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Returns (callbacks per second, p50 ms, p99 ms, peak RSS of gateway and status).
pub async fn ingestion(bench: &Bench, count: usize) -> anyhow::Result<(f64, f64, f64, String)> {
    ingestion_tagged(bench, count, "").await
}

/// [`ingestion`] with its messages' keys under `st<tag>-` and provider ids `SM<tag>…`, so one
/// bench can run it more than once.
pub async fn ingestion_tagged(
    bench: &Bench,
    count: usize,
    tag: &str,
) -> anyhow::Result<(f64, f64, f64, String)> {
    let prefix = format!("st{tag}-");
    let width = 32 - tag.len();
    let sid = |g: usize| format!("SM{tag}{g:0width$}");
    let since = bench.db_now().await?;
    let contact: uuid::Uuid =
        sqlx::query_scalar("INSERT INTO comms.contacts (name) VALUES ('bench') RETURNING id")
            .fetch_one(&bench.pool)
            .await?;
    sqlx::query(
        "INSERT INTO comms.messages (idempotency_key, channel, kind, contact_id, recipient_address, owner, source,
             trigger, record_type, record_id, template_name, request, delivery_state, provider, provider_message_id, dispatched_at)
         SELECT $4 || g, 'sms', 'transactional', $1, '+14155550000', 'bench', 'bench', 'bench', 'client', $2,
                'note', '{}'::jsonb, 'sent', 'twilio', 'SM' || $5 || lpad(g::text, $6, '0'), now()
         FROM generate_series(1, $3) g",
    )
    .bind(contact)
    .bind(bench.client_id)
    .bind(i64::try_from(count)?)
    .bind(&prefix)
    .bind(tag)
    .bind(i32::try_from(width)?)
    .execute(&bench.pool)
    .await?;

    let (gateway_port, health_gateway, health_status) = (
        procs::free_port()?,
        procs::free_port()?,
        procs::free_port()?,
    );
    let public = format!("http://127.0.0.1:{gateway_port}");
    let mut env = bench.sender_env(health_gateway);
    env.push((
        "COMMS__GATEWAY__LISTEN".into(),
        format!("127.0.0.1:{gateway_port}"),
    ));
    env.push(("COMMS__GATEWAY__PUBLIC_URL".into(), public.clone()));
    env.push(("COMMS__PROVIDERS__TWILIO__AUTH_TOKEN".into(), TOKEN.into()));
    let gateway = Worker::start("gateway", "comms-gateway", &[], &env)?;
    let mut status_env = bench.sender_env(health_status);
    status_env.push(("COMMS__PROVIDERS__TWILIO__AUTH_TOKEN".into(), TOKEN.into()));
    // The status worker's own consumer settings, unless the bench was run with them set: groups
    // of up to 64 callbacks per transaction, room for two groups at once (a group holds a permit
    // per delivery, so one commits while the next is built), and a prefetch of two rounds so
    // full groups are already waiting in the client.
    crate::load::tune_consumer(&mut status_env, STATUS_CONSUMER);
    let status = Worker::start("status", "comms-status", &[], &status_env)?;
    procs::wait_http(
        &format!("http://127.0.0.1:{health_status}/readyz"),
        Duration::from_secs(30),
    )
    .await?;
    procs::wait_http(
        &format!("http://127.0.0.1:{health_gateway}/healthz"),
        Duration::from_secs(30),
    )
    .await?;

    let url = format!("{public}/webhooks/twilio/status");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let sent_at: Vec<(String, DateTime<Utc>)> = futures_util::stream::iter(1..=count)
        .map(|g| {
            let (http, url, sid) = (http.clone(), url.clone(), sid(g));
            async move {
                let params = vec![
                    ("MessageSid", sid.clone()),
                    ("SmsSid", sid.clone()),
                    ("AccountSid", "ACbench".to_string()),
                    ("MessageStatus", "delivered".to_string()),
                    ("From", "+15005550006".to_string()),
                    ("To", "+14155550000".to_string()),
                    ("ApiVersion", "2010-04-01".to_string()),
                ];
                let signature = signature(&url, &params);
                let at = Utc::now();
                for _ in 0..5 {
                    let answer = http
                        .post(&url)
                        .header("x-twilio-signature", &signature)
                        .form(&params)
                        .send()
                        .await;
                    if answer.is_ok_and(|a| a.status().is_success()) {
                        break;
                    }
                }
                (sid, at)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(300);
    // Polled through the (state, created) index over this run's rows only: a large table
    // (BENCH_ONLY=size) holds millions of `delivered` messages and the `sent` ones earlier phases
    // left, which a poll by prefix or by state alone would read every 200 ms.
    loop {
        let waiting: i64 = sqlx::query_scalar(crate::load::SENT_SINCE)
            .bind(format!("{prefix}%"))
            .bind(since)
            .fetch_one(&bench.pool)
            .await?;
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rss = format!(
        "gateway {:.0}, status {:.0}",
        gateway.peak_rss_mib().unwrap_or(f64::NAN),
        status.peak_rss_mib().unwrap_or(f64::NAN)
    );
    gateway.stop().await;
    status.stop().await;
    let sids: Vec<&str> = sent_at.iter().map(|(sid, _)| sid.as_str()).collect();
    let recorded: HashMap<String, DateTime<Utc>> = sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT provider_message_id, updated_at FROM comms.messages
         WHERE provider = 'twilio' AND provider_message_id = ANY($1) AND delivery_state = 'delivered'",
    )
    .bind(&sids)
    .fetch_all(&bench.pool)
    .await?
    .into_iter()
    .collect();
    anyhow::ensure!(
        recorded.len() == count,
        "only {} of {count} callbacks were recorded",
        recorded.len()
    );
    let mut latencies: Vec<f64> = sent_at
        .iter()
        .filter_map(|(sid, at)| {
            recorded
                .get(sid)
                .map(|done| (*done - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    Ok((
        count as f64 / elapsed,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
        rss,
    ))
}
