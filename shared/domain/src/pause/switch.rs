//! Each worker's view of the pause switch.
//!
//! The view is refreshed at once by `NOTIFY comms_pause` and re-read on a short poll and after
//! every listener reconnect (notifications sent while disconnected are lost, so a reconnect
//! always re-reads). It fails closed: if the stored switch could not be confirmed for longer
//! than the staleness bound — or was never loaded — every dispatch is refused as "blind", which
//! logs, metrics and readiness report separately from "paused by on-call".
//!
//! Dispatches hold a read guard of a gate across the provider call, and applying a change that
//! adds a pause takes the write side: once a worker has applied a pause, no dispatch that could
//! have missed it is still in flight. That is what "acknowledged by the workers" means. While the
//! change waits for the gate it is visible as *pending*, and dispatches past the gate check it
//! right before their provider call, so a pause stops them too instead of waiting for them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{OwnedRwLockReadGuard, RwLock as GateLock};
use uuid::Uuid;

use super::{ActivePause, NOTIFY_CHANNEL, store};
use comms_runtime::health::Health;
use comms_runtime::shutdown::Shutdown;

/// The decision for one dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No pause covers it and the view is fresh: dispatch.
    Clear,
    /// An on-call (or automatic) pause covers it.
    Paused(ActivePause),
    /// The switch could not be confirmed recently enough: behave as paused.
    Blind { stale_for: Option<Duration> },
}

#[derive(Clone)]
pub struct PauseSwitch {
    view: Arc<RwLock<View>>,
    gate: Arc<GateLock<()>>,
    max_staleness: Duration,
}

struct View {
    pauses: Vec<ActivePause>,
    /// A freshly read state waiting for in-flight dispatches before it is applied. Dispatches
    /// that passed the gate consult it right before their provider call, so a new pause stops
    /// them too instead of waiting for them.
    pending: Vec<ActivePause>,
    confirmed_at: Option<Instant>,
    generation: u64,
}

/// Held across one provider call; a new pause waits for it before it counts as applied.
pub struct DispatchGuard(#[allow(dead_code)] OwnedRwLockReadGuard<()>);

impl PauseSwitch {
    pub fn new(max_staleness: Duration) -> Self {
        Self {
            view: Arc::new(RwLock::new(View {
                pauses: Vec::new(),
                pending: Vec::new(),
                confirmed_at: None,
                generation: 0,
            })),
            gate: Arc::new(GateLock::new(())),
            max_staleness,
        }
    }

    fn read<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Enters a dispatch: the verdict, and a guard to hold until the provider call returned.
    pub async fn enter(
        &self,
        channel: &str,
        kind: &str,
        client: Option<Uuid>,
    ) -> (DispatchGuard, Verdict) {
        self.enter_except(channel, kind, client, None, None).await
    }

    /// [`Self::enter`] for a notice of incident `exempt`: the client pauses that incident caused
    /// do not hold it (every other pause does); `sequence`: the sequence the message is a step
    /// of, which a `sequence:<name>` pause holds.
    pub async fn enter_except(
        &self,
        channel: &str,
        kind: &str,
        client: Option<Uuid>,
        exempt: Option<Uuid>,
        sequence: Option<&str>,
    ) -> (DispatchGuard, Verdict) {
        let guard = DispatchGuard(self.gate.clone().read_owned().await);
        (
            guard,
            self.verdict_except(channel, kind, client, exempt, sequence),
        )
    }

    /// The verdict now, without entering a dispatch.
    pub fn verdict(&self, channel: &str, kind: &str, client: Option<Uuid>) -> Verdict {
        self.verdict_except(channel, kind, client, None, None)
    }

    /// The verdict now for a notice of incident `exempt` (see [`Self::enter_except`]).
    pub fn verdict_except(
        &self,
        channel: &str,
        kind: &str,
        client: Option<Uuid>,
        exempt: Option<Uuid>,
        sequence: Option<&str>,
    ) -> Verdict {
        self.read(|view| {
            let stale_for = view.confirmed_at.map(|at| at.elapsed());
            match stale_for {
                Some(age) if age <= self.max_staleness => {}
                _ => return Verdict::Blind { stale_for },
            }
            view.pauses
                .iter()
                .find(|p| {
                    p.scope.covers_step(channel, kind, client, sequence) && !p.exempts(exempt)
                })
                .map_or(Verdict::Clear, |p| Verdict::Paused(p.clone()))
        })
    }

    /// Installs a freshly read state. A change waits for in-flight dispatches to finish first.
    pub async fn apply(&self, pauses: Vec<ActivePause>) {
        let changed = self.read(|view| view.pauses != pauses);
        if changed {
            self.view.write().unwrap_or_else(|p| p.into_inner()).pending = pauses.clone();
            let _exclusive = self.gate.write().await;
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            view.pending.clear();
            view.pauses = pauses;
            view.confirmed_at = Some(Instant::now());
            view.generation += 1;
        } else {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            // Nothing changed: an announced pause that is not (or no longer) on is dropped.
            view.pending.clear();
            view.confirmed_at = Some(Instant::now());
        }
    }

    /// Takes an announced pause as pending until the next read applies it: dispatches already
    /// past the gate check pending pauses immediately before their provider call
    /// ([`Self::pending_cover`]), so they stop now rather than after the re-read.
    pub fn expect(&self, pause: ActivePause) {
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        let known = view.pauses.iter().chain(&view.pending).any(|p| p == &pause);
        if !known {
            view.pending.push(pause);
        }
    }

    /// A pause read but not yet applied that covers this message: checked by a dispatch that
    /// already passed the gate, immediately before its provider call.
    pub fn pending_cover(
        &self,
        channel: &str,
        kind: &str,
        client: Option<Uuid>,
    ) -> Option<ActivePause> {
        self.pending_cover_except(channel, kind, client, None, None)
    }

    /// [`Self::pending_cover`] for a notice of incident `exempt` (see [`Self::enter_except`]).
    pub fn pending_cover_except(
        &self,
        channel: &str,
        kind: &str,
        client: Option<Uuid>,
        exempt: Option<Uuid>,
        sequence: Option<&str>,
    ) -> Option<ActivePause> {
        self.read(|view| {
            view.pending
                .iter()
                .find(|p| {
                    p.scope.covers_step(channel, kind, client, sequence) && !p.exempts(exempt)
                })
                .cloned()
        })
    }

    /// Seconds since the switch was last confirmed (`None`: never).
    pub fn staleness(&self) -> Option<Duration> {
        self.read(|view| view.confirmed_at.map(|at| at.elapsed()))
    }

    pub fn is_blind(&self) -> bool {
        self.staleness().is_none_or(|age| age > self.max_staleness)
    }

    pub fn has_loaded(&self) -> bool {
        self.staleness().is_some()
    }

    /// The pauses as last confirmed.
    pub fn active(&self) -> Vec<ActivePause> {
        self.read(|view| view.pauses.clone())
    }

    /// Bumped every time the set of pauses changes.
    pub fn generation(&self) -> u64 {
        self.read(|view| view.generation)
    }
}

/// Keeps `switch` in step with the stored switch until `shutdown`.
pub async fn watch(
    pool: PgPool,
    switch: PauseSwitch,
    health: Health,
    poll: Duration,
    shutdown: Shutdown,
) {
    let metrics = super::metrics::metrics();
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            listener = connect_listener(&pool).await;
            // Notifications sent while we were not listening are lost: always re-read.
            reload(&mut listener, &pool, &switch).await;
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.try_recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            received = notified => match received {
                Ok(Some(notification)) => {
                    let announced = Announcement::parse(notification.payload());
                    // A new pause stops covered dispatches at once, before the re-read confirms it.
                    if let Some(pause) = announced.as_ref().and_then(|a| a.pause.clone()) {
                        switch.expect(pause);
                    }
                    reload(&mut listener, &pool, &switch).await;
                    if let Some(committed_ms) = announced.map(|a| a.at) {
                        let lag = chrono::Utc::now().timestamp_millis() - committed_ms;
                        metrics.apply_seconds.with_label_values::<&str>(&[]).observe(lag.max(0) as f64 / 1000.0);
                    }
                }
                Ok(None) => reload(&mut listener, &pool, &switch).await,
                Err(error) => {
                    tracing::warn!(%error, "pause listener lost; reconnecting");
                    listener = None;
                }
            },
            _ = ticker.tick() => reload(&mut listener, &pool, &switch).await,
        }
        report(&switch, &health);
    }
}

/// The payload of a `comms_pause` notification (see [`super::store`]).
#[derive(Debug, serde::Deserialize)]
struct Announcement {
    /// When the change was committed, in milliseconds since the epoch.
    at: i64,
    /// The pause itself, for a pause or an extension.
    pause: Option<ActivePause>,
}

impl Announcement {
    /// Reads a payload; a bare number (an older publisher) is just the commit time.
    fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok().or_else(|| {
            payload
                .parse::<i64>()
                .ok()
                .map(|at| Self { at, pause: None })
        })
    }
}

async fn connect_listener(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(NOTIFY_CHANNEL).await.ok()?;
    Some(listener)
}

/// Reads the active pauses and applies them. The read goes over the listener's own connection
/// when there is one, so a pool busy with dispatch work cannot delay a pause; if that connection
/// fails it is dropped (the loop reconnects) and the pool is used.
async fn reload(listener: &mut Option<PgListener>, pool: &PgPool, switch: &PauseSwitch) {
    let limit = Duration::from_secs(2);
    if let Some(own) = listener.as_mut() {
        match tokio::time::timeout(limit, store::active(&mut *own)).await {
            Ok(Ok(pauses)) => return switch.apply(pauses).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, "pause listener connection failed; reconnecting")
            }
            Err(_) => tracing::warn!("pause switch read on the listener timed out; reconnecting"),
        }
        *listener = None;
    }
    match tokio::time::timeout(limit, store::active(pool)).await {
        Ok(Ok(pauses)) => switch.apply(pauses).await,
        Ok(Err(error)) => tracing::warn!(%error, "pause switch could not be read"),
        Err(_) => tracing::warn!("pause switch read timed out"),
    }
}

/// Readiness, logs and metrics: "blind" is reported apart from "paused".
pub fn report(switch: &PauseSwitch, health: &Health) {
    let metrics = super::metrics::metrics();
    let staleness = switch.staleness();
    metrics
        .staleness_seconds
        .with_label_values::<&str>(&[])
        .set(staleness.map_or(f64::INFINITY, |d| d.as_secs_f64()));
    let blind = switch.is_blind();
    metrics
        .blind
        .with_label_values::<&str>(&[])
        .set(i64::from(blind));
    let active = switch.active();
    for scope in ["global", "channel", "kind", "client", "sequence"] {
        let on = active.iter().filter(|p| p.scope.name() == scope).count();
        metrics
            .active
            .with_label_values(&[scope])
            .set(i64::try_from(on).unwrap_or(i64::MAX));
    }
    if blind {
        let detail = match staleness {
            Some(age) => format!(
                "blind: pause switch unconfirmed for {:.1}s; not sending",
                age.as_secs_f64()
            ),
            None => "blind: pause switch never loaded; not sending".to_string(),
        };
        health.set("pause-switch", false, detail);
    } else if active.is_empty() {
        health.set("pause-switch", true, "confirmed: nothing paused");
    } else {
        let scopes: Vec<String> = active.iter().map(|p| p.scope.to_string()).collect();
        health.set(
            "pause-switch",
            true,
            format!("confirmed: paused by on-call at {}", scopes.join(", ")),
        );
    }
}

#[cfg(test)]
#[path = "switch_tests.rs"]
mod tests;
