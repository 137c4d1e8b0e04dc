//! The admin side's wiring: what the adapters know for the admin API and `$SYS`
//! ([`AdapterSources`]), and the ticker that samples and publishes `$SYS`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_admin::{Admin, BrokerSources};
use ferry_core::monitor::SessionSummary;
use ferry_mqtt::MqttShared;
use ferry_stomp::StompShared;

/// The MQTT sessions and the adapters' counters.
pub(crate) struct AdapterSources {
    /// The MQTT adapter's shared state.
    pub mqtt: Arc<MqttShared>,
    /// The STOMP adapter's shared state.
    pub stomp: Arc<StompShared>,
}

impl BrokerSources for AdapterSources {
    fn sessions(&self) -> Vec<SessionSummary> {
        self.mqtt.sessions.summaries()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let m = &self.mqtt.stats;
        let s = &self.stomp.stats;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("mqtt/connect/received", get(&m.connects)),
            ("mqtt/publish/received", get(&m.publishes_in)),
            ("mqtt/publish/sent", get(&m.publishes_out)),
            ("mqtt/wills/published", get(&m.wills)),
            ("stomp/connect/received", get(&s.connects)),
            ("stomp/messages/received", get(&s.sends)),
            ("stomp/messages/sent", get(&s.messages_out)),
            ("stomp/messages/redelivered", get(&s.redelivered)),
        ]
    }
}

/// Re-reads the admin API keys on every SIGHUP (the old keys stay if the file is bad).
pub(crate) async fn reload_on_sighup(admin: Arc<Admin>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        match admin.reload_keys() {
            Ok(0) => {}
            Ok(n) => tracing::info!(keys = n, "admin API keys reloaded"),
            Err(e) => tracing::warn!(error = %e, "admin API keys not reloaded; the old ones stay"),
        }
    }
}

/// Samples the charts every `admin.sample_interval` and publishes `$SYS` every
/// `admin.sys_interval` (0: never).
pub(crate) async fn tick(admin: Arc<Admin>) {
    let settings = admin.settings().clone();
    let step = settings.sample_interval.max(Duration::from_millis(100));
    let mut every = tokio::time::interval(step);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_sys = Instant::now();
    loop {
        every.tick().await;
        let now = Instant::now();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        admin.sample(now, unix_ms);
        if !settings.sys_interval.is_zero() && now >= next_sys {
            admin.publish_sys(now);
            next_sys = now + settings.sys_interval;
        }
    }
}
