//! The Prometheus collectors the application state holds: updated by the proxy and the
//! request middleware as they go, rendered by `/hub/metrics` (`crate::metrics`).

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// The hub's metrics registry and the collectors it updates as it goes.
pub struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) request_duration: HistogramVec,
    pub(crate) total_users: IntGauge,
    pub(crate) running: IntGauge,
    pub(crate) pending: IntGauge,
    pub(crate) active_users: IntGaugeVec,
    pub(crate) renewals: IntCounter,
    pub(crate) renewal_failures: IntCounter,
    pub(crate) tickets: IntGaugeVec,
    pub(crate) min_expiry: IntGauge,
    pub(crate) spliced_bytes: IntCounter,
}

impl Metrics {
    /// A registry holding the hub's collectors and `spawn_duration` (owned by the server
    /// manager).
    pub fn new(spawn_duration: &HistogramVec, extra: Vec<Box<dyn prometheus::core::Collector>>) -> Self {
        let registry = Registry::new();
        let request_duration = HistogramVec::new(
            HistogramOpts::new("jupyterhub_request_duration_seconds", "Hub request duration")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "handler", "code"],
        )
        .expect("valid histogram");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
        let m = Self {
            request_duration,
            total_users: gauge("jupyterhub_total_users", "Users in the database"),
            running: gauge("jupyterhub_running_servers", "Single-user servers answering"),
            pending: gauge("jupyterhub_pending_servers", "Single-user servers starting or stopping"),
            active_users: IntGaugeVec::new(
                Opts::new("jupyterhub_active_users", "Users active within a period"),
                &["period"],
            )
            .expect("valid gauge"),
            renewals: IntCounter::new("hub_kerberos_renewals_total", "Ticket renewal attempts since the hub started")
                .expect("valid counter"),
            renewal_failures: IntCounter::new(
                "hub_kerberos_renewal_failures_total",
                "Failed ticket renewal attempts since the hub started",
            )
            .expect("valid counter"),
            tickets: IntGaugeVec::new(
                Opts::new("hub_kerberos_tickets", "Users' Kerberos tickets by state"),
                &["state"],
            )
            .expect("valid gauge"),
            min_expiry: gauge(
                "hub_kerberos_ticket_min_seconds_until_expiry",
                "Seconds until the soonest-expiring valid ticket expires (0 when there is none)",
            ),
            spliced_bytes: IntCounter::new(
                "hub_proxy_spliced_bytes_total",
                "Proxied response body bytes moved with splice(2) rather than copied",
            )
            .expect("valid counter"),
            registry,
        };
        let mut collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.request_duration.clone()),
            Box::new(spawn_duration.clone()),
            Box::new(m.total_users.clone()),
            Box::new(m.running.clone()),
            Box::new(m.pending.clone()),
            Box::new(m.active_users.clone()),
            Box::new(m.renewals.clone()),
            Box::new(m.renewal_failures.clone()),
            Box::new(m.tickets.clone()),
            Box::new(m.min_expiry.clone()),
            Box::new(m.spliced_bytes.clone()),
        ];
        collectors.extend(extra);
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    /// Counts `bytes` of a response body handed to splice(2) (`hub_proxy_spliced_bytes_total`).
    pub fn spliced(&self, bytes: u64) {
        self.spliced_bytes.inc_by(bytes);
    }

    /// Bytes counted by [`Self::spliced`] since the hub started.
    pub fn spliced_bytes(&self) -> u64 {
        self.spliced_bytes.get()
    }
}
