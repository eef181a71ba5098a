//! The one list of metric names, kinds and help texts. The Prometheus endpoint
//! (`http::metrics`) and the OTLP metrics exporter (`otlp`) both take their families
//! from here, so a name is written once and docs/operations.md's list is checked against it.
//!
//! `name` is the Prometheus family as the exposition writes it less its type suffix:
//! counters get `_total`, info families `_info` (as `prometheus-client` encodes them).
//! `otel` is the OpenTelemetry instrument that exports the same count, where there is one.

/// How a family's values behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (from the start of the process, or across restarts where said).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Constant 1; the labels carry the value.
    Info,
}

/// A metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// The labels its samples carry, in order.
    pub labels: &'static [&'static str],
    /// The OTLP instrument for it, when exported there too.
    pub otel: Option<&'static str>,
}

impl Family {
    /// The name of its samples in the Prometheus text.
    pub fn sample_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            Kind::Info => format!("{}_info", self.name),
            Kind::Gauge => self.name.to_owned(),
        }
    }
}

macro_rules! families {
    ($($id:ident: $kind:ident $name:literal [$($label:literal),*] $otel:expr, $help:literal;)*) => {
        $(
            pub const $id: Family = Family {
                name: $name,
                kind: Kind::$kind,
                help: $help,
                labels: &[$($label),*],
                otel: $otel,
            };
        )*
        /// Every family, in the order the exposition writes them.
        pub const ALL: &[Family] = &[$($id),*];
    };
}

families! {
    RECORDS: Counter "inferwatch_records" ["outcome"] Some("inferwatch.records"),
        "Records read, by outcome.";
    RECORDS_TIME_REFUSED: Counter "inferwatch_records_time_refused" ["reason"] None,
        "Records the event-time guard refused (counted in bad too), by reason.";
    INPUT_BYTES: Counter "inferwatch_input_bytes" [] None,
        "Bytes of records read.";
    WINDOWS_CLOSED: Counter "inferwatch_windows_closed" [] Some("inferwatch.windows.closed"),
        "Windows closed and evaluated.";
    WATERMARK: Gauge "inferwatch_watermark_timestamp_seconds" [] None,
        "The event-time watermark (Unix seconds); absent until every active partition sent a record.";
    WATERMARK_LAG: Gauge "inferwatch_watermark_lag_seconds" [] None,
        "Wall clock minus the event-time watermark: how far event time trails now.";
    RESCORE_RECORDS: Counter "inferwatch_rescore_records" ["reason"] Some("inferwatch.rescore.records"),
        "Records re-scored by an embedded model, by why (flagged by a rule, or sampled).";
    RESCORE_DROPPED: Counter "inferwatch_rescore_dropped" [] None,
        "Records that were to be re-scored but did not fit the budget per second.";
    RESCORE_UNSCORABLE: Counter "inferwatch_rescore_unscorable" [] None,
        "Records to re-score with a feature missing or not a finite 32-bit float.";
    RESCORE_MISMATCHES: Counter "inferwatch_rescore_mismatches" [] None,
        "Re-scored records whose logged prediction differs from the embedded model's.";
    RESCORE_ADVERSARIAL: Counter "inferwatch_rescore_adversarial" [] None,
        "Re-scored records whose squeezing score is over the threshold.";
    RESCORE_OUTCOMES: Counter "inferwatch_rescore_outcomes" ["outcome"] Some("inferwatch.rescore.outcomes"),
        "Re-scoring findings and what the budget left out, by outcome.";
    LABELS: Counter "inferwatch_labels" ["outcome"] Some("inferwatch.labels"),
        "Delayed label records read, by outcome: joined, or the reason of their dead letter.";
    LABEL_PREDICTIONS: Counter "inferwatch_label_predictions" ["outcome"] None,
        "Predictions registered to wait for a label, those that stopped waiting unlabelled (expired past labels.horizon, evicted over labels.max_pending, a repeated request id), and those whose probs were not probabilities (probs_out_of_range).";
    LABELS_PENDING: Gauge "inferwatch_labels_pending" ["what"] None,
        "Predictions waiting for a label, and labels read ahead of the predictions.";
    RULE_EVALUATIONS: Counter "inferwatch_rule_evaluations" ["rule"] Some("inferwatch.rule.evaluations"),
        "Rule evaluations, per rule.";
    RULE_ERRORS: Counter "inferwatch_rule_errors" ["rule"] Some("inferwatch.rule.errors"),
        "Rule evaluations that failed, per rule.";
    RULE_SECONDS: Counter "inferwatch_rule_evaluation_seconds" ["rule"] None,
        "Time spent evaluating each rule.";
    RULE_LAST_EVALUATION: Gauge "inferwatch_rule_last_evaluation_timestamp_seconds" ["rule"] None,
        "When each rule last ran (wall clock, Unix seconds); absent until it ran.";
    RULE_HEALTHY: Gauge "inferwatch_rule_healthy" ["rule"] None,
        "1 when the rule's last evaluation succeeded (or it has not run), 0 when it failed.";
    ALERT_CHANGES: Counter "inferwatch_alert_changes" ["state"] Some("inferwatch.alerts"),
        "Alert state changes, by state.";
    ALERTS: Gauge "inferwatch_alerts" ["rule", "state"] None,
        "Alerts now pending or firing, per rule.";
    ALERTS_ACTIVE: Gauge "inferwatch_alerts_active" [] Some("inferwatch.alerts.active"),
        "Alerts pending or firing after the last evaluation.";
    RECEIVER_DELIVERED: Counter "inferwatch_receiver_delivered" ["receiver"] None,
        "Messages (email) or records (OTLP) a receiver's server accepted.";
    RECEIVER_CHANGES_DELIVERED: Counter "inferwatch_receiver_changes_delivered" ["receiver"] None,
        "Alert state changes a receiver delivered.";
    RECEIVER_FAILURES: Counter "inferwatch_receiver_failures" ["receiver"] None,
        "Failed delivery attempts (retried with backoff).";
    RECEIVER_QUEUE: Gauge "inferwatch_receiver_queue" ["receiver"] None,
        "Messages or groups (email) or records (OTLP) waiting in the outbox.";
    RECEIVER_ERRORS: Counter "inferwatch_receiver_errors" [] Some("inferwatch.receiver.errors"),
        "Receiver failures.";
    KAFKA_TRUNCATED: Counter "inferwatch_kafka_messages_truncated" [] None,
        "Messages sent truncated to an output topic (over message.max.bytes).";
    KAFKA_LAG: Gauge "inferwatch_kafka_lag_records" ["partition"] Some("inferwatch.kafka.lag"),
        "Records behind the end of each assigned Kafka partition.";
    DRIFT_MODELS_REFUSED: Counter "inferwatch_drift_models_refused" [] None,
        "Models refused a rolling reference over reference.max_models.";
    CLIENT_PROFILES: Gauge "inferwatch_client_profiles" [] None,
        "Client profiles held.";
    CLIENT_PROFILE_BYTES: Gauge "inferwatch_client_profile_bytes" [] None,
        "Estimated memory of the client profiles.";
    CLIENT_PROFILE_COPY_BYTES: Gauge "inferwatch_client_profile_checkpoint_copy_bytes" [] None,
        "Estimated memory of earlier copies of client profiles kept until a checkpoint is written.";
    CLIENT_EVICTIONS: Counter "inferwatch_client_evictions" ["reason"] None,
        "Client profiles evicted, by reason.";
    SILENCES: Gauge "inferwatch_silences" ["status"] None,
        "Silences (config and API), by status.";
    FEATURE_DRIFT_STATISTIC: Gauge "inferwatch_feature_drift_statistic" ["model", "feature", "test"] None,
        "The last window's drift statistic per model and feature (its test in `test`).";
    FEATURE_PSI: Gauge "inferwatch_feature_psi" ["model", "feature"] None,
        "The last window's PSI per model and feature.";
    FEATURE_DRIFTED: Gauge "inferwatch_feature_drifted" ["model", "feature"] None,
        "1 when the last window's default test says the feature drifted.";
    CLIENT_STAT: Gauge "inferwatch_client_stat" ["model", "client_id", "stat"] None,
        "The last window's client statistics, top clients per statistic.";
    BUILD: Info "inferwatch_build" ["version"] None,
        "The running build: its version.";
    UP: Gauge "inferwatch_up" [] None,
        "1 while the process runs.";
    PROCESS_CPU: Counter "process_cpu_seconds" [] None,
        "User and system CPU time spent, in seconds.";
    PROCESS_RESIDENT: Gauge "process_resident_memory_bytes" [] None,
        "Resident memory size in bytes.";
    PROCESS_VIRTUAL: Gauge "process_virtual_memory_bytes" [] None,
        "Virtual memory size in bytes.";
    PROCESS_OPEN_FDS: Gauge "process_open_fds" [] None,
        "Open file descriptors.";
    PROCESS_MAX_FDS: Gauge "process_max_fds" [] None,
        "The limit of open file descriptors.";
    PROCESS_START: Gauge "process_start_time_seconds" [] None,
        "Start time of the process since the Unix epoch, in seconds.";
    PROCESS_THREADS: Gauge "process_threads" [] None,
        "Threads of the process.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_valid_and_labels_are_valid() {
        let valid = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let mut seen = std::collections::BTreeSet::new();
        for f in ALL {
            assert!(valid(f.name), "{}", f.name);
            assert!(seen.insert(f.sample_name()), "{} twice", f.name);
            assert!(
                !f.name.ends_with("_total"),
                "{}: the encoder adds _total",
                f.name
            );
            assert!(f.help.ends_with('.'), "{}", f.name);
            for l in f.labels {
                assert!(valid(l) && !l.starts_with("__"), "{}: {l}", f.name);
            }
        }
    }
}
