//! The faults the chaos run inflicts, one per phase, and how each is done and lifted. Every one is
//! on the run's own processes and services: the private broker and database, the workers it
//! started, the sandbox provider.

use std::time::Duration;

use comms_sandbox::FaultSpec;
use serde_json::json;

use crate::fleet::Fleet;

/// How long a killed worker stays down, a service stays stopped, a provider keeps failing.
const DOWN: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    SenderKill,
    StatusKill,
    RepliesKill,
    GatewayKill,
    BrokerRestart,
    BrokerCut,
    PostgresRestart,
    PostgresCut,
    Provider500,
    Provider429,
    ProviderTimeout,
    ProviderHang,
    /// Not a fault: on-call pauses email in the middle of the traffic, then resumes.
    Pause,
}

pub const ALL: &[Fault] = &[
    Fault::SenderKill,
    Fault::StatusKill,
    Fault::RepliesKill,
    Fault::GatewayKill,
    Fault::Pause,
    Fault::BrokerRestart,
    Fault::BrokerCut,
    Fault::PostgresRestart,
    Fault::PostgresCut,
    Fault::Provider500,
    Fault::Provider429,
    Fault::ProviderTimeout,
    Fault::ProviderHang,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Self::SenderKill => "sender-kill",
            Self::StatusKill => "status-kill",
            Self::RepliesKill => "replies-kill",
            Self::GatewayKill => "gateway-kill",
            Self::BrokerRestart => "broker-restart",
            Self::BrokerCut => "broker-cut",
            Self::PostgresRestart => "postgres-restart",
            Self::PostgresCut => "postgres-cut",
            Self::Provider500 => "provider-500",
            Self::Provider429 => "provider-429",
            Self::ProviderTimeout => "provider-timeout",
            Self::ProviderHang => "provider-hang",
            Self::Pause => "pause",
        }
    }

    /// What is done, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SenderKill => "SIGKILL of sender-1, restarted 4 s later",
            Self::StatusKill => "SIGKILL of the status worker, restarted 4 s later",
            Self::RepliesKill => {
                "SIGKILL of the replies worker (replies arriving), restarted 4 s later"
            }
            Self::GatewayKill => {
                "SIGKILL of the gateway with enqueues and callbacks in flight, restarted 4 s later"
            }
            Self::BrokerRestart => "rabbitmqctl stop_app, 4 s, start_app (private node)",
            Self::BrokerCut => "every fleet connection to RabbitMQ cut, refused for 4 s",
            Self::PostgresRestart => "pg_ctl stop -m fast, 4 s, start (private cluster)",
            Self::PostgresCut => "pg_terminate_backend of every fleet connection, twice 2 s apart",
            Self::Provider500 => "every provider call answered 500 for 4 s",
            Self::Provider429 => "every provider call answered 429 Retry-After: 2 for 4 s",
            Self::ProviderTimeout => {
                "provider answers after 3 s (client timeout 2 s) for 4 s; the first 20 were accepted"
            }
            Self::ProviderHang => "provider calls hang for 60 s, for 4 s",
            Self::Pause => "not a fault: on-call pauses email for 4 s, then resumes",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        ALL.iter().copied().find(|f| f.name() == name.trim())
    }

    /// Inflicts the fault and lifts it; returns when it is lifted (a restarted worker ready).
    pub async fn inflict(self, fleet: &mut Fleet) {
        match self {
            Self::SenderKill => fleet.kill_and_restart("sender-1", DOWN).await,
            Self::StatusKill => fleet.kill_and_restart("status", DOWN).await,
            Self::RepliesKill => fleet.kill_and_restart("replies", DOWN).await,
            Self::GatewayKill => fleet.kill_and_restart("gateway", DOWN).await,
            Self::BrokerRestart => {
                tokio::task::block_in_place(|| fleet.broker.stop_app());
                tokio::time::sleep(DOWN).await;
                tokio::task::block_in_place(|| fleet.broker.start_app());
            }
            Self::BrokerCut => {
                fleet.proxy.cut();
                tokio::time::sleep(DOWN).await;
                fleet.proxy.restore();
            }
            Self::PostgresRestart => {
                tokio::task::block_in_place(|| fleet.postgres.stop_server());
                tokio::time::sleep(DOWN).await;
                tokio::task::block_in_place(|| fleet.postgres.start_server());
            }
            Self::PostgresCut => {
                fleet.cut_database_connections().await;
                tokio::time::sleep(DOWN / 2).await;
                fleet.cut_database_connections().await;
            }
            Self::Provider500 => provider(fleet, &[spec(Some(500), None, false, None)]).await,
            Self::Provider429 => {
                let mut limited = spec(Some(429), None, false, None);
                limited.retry_after = Some(2);
                provider(fleet, &[limited]).await;
            }
            Self::ProviderTimeout => {
                provider(
                    fleet,
                    &[
                        spec(None, Some(3_000), true, Some(20)),
                        spec(Some(503), Some(3_000), false, None),
                    ],
                )
                .await;
            }
            Self::ProviderHang => provider(fleet, &[spec(None, Some(60_000), false, None)]).await,
            Self::Pause => pause(fleet).await,
        }
    }
}

fn spec(
    status: Option<u16>,
    timeout_ms: Option<u64>,
    accept: bool,
    times: Option<u32>,
) -> FaultSpec {
    FaultSpec {
        status,
        timeout_ms,
        accept,
        times,
        ..FaultSpec::default()
    }
}

/// Arms `faults` at the sandbox (both channels), waits [`DOWN`], disarms them.
async fn provider(fleet: &Fleet, faults: &[FaultSpec]) {
    for fault in faults {
        fleet.sandbox.add_fault(fault).await.expect("fault armed");
    }
    tokio::time::sleep(DOWN).await;
    fleet.sandbox.clear_faults().await.expect("faults cleared");
}

/// On-call pauses the email channel over the admin API, and resumes it [`DOWN`] later.
async fn pause(fleet: &Fleet) {
    let call = |path: &'static str, reason: &'static str| {
        fleet
            .http
            .post(format!("{}/v1/{path}", fleet.gateway_url))
            .bearer_auth(&fleet.keys.oncall)
            .json(&json!({ "scope": "channel", "value": "email", "reason": reason, "actor": "chaos" }))
            .send()
    };
    let paused = call("pause", "chaos: a pause in the middle").await;
    assert!(
        paused.is_ok_and(|r| r.status().is_success()),
        "the pause was not taken"
    );
    tokio::time::sleep(DOWN).await;
    let resumed = call("resume", "chaos: over").await;
    assert!(
        resumed.is_ok_and(|r| r.status().is_success()),
        "the resume was not taken"
    );
}
