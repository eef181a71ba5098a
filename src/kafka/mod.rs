//! What every Kafka client inferwatch makes shares: brokers, SASL/TLS, librdkafka's
//! own spelling of settings; and the producer that writes the alerts and dead-letter
//! topics ([`producer`]). The consumer is the Kafka source (`crate::source::kafka`).

use rdkafka::config::ClientConfig;
use serde::Deserialize;

use crate::secret::Secret;

pub mod producer;

pub use producer::{KafkaOut, KafkaOutConfig};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username: String,
    /// Never printed; use `${ENV}` in the config file.
    pub password: Secret,
    /// Use TLS on the connection (`SASL_SSL`) instead of `SASL_PLAINTEXT`.
    #[serde(default)]
    pub tls: bool,
}

/// A librdkafka boolean as librdkafka reads it (`true`, `t`, `1`, `false`, `f`, `0`,
/// case-insensitive); None for anything else, which librdkafka refuses.
pub fn librdkafka_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

/// Brokers and SASL: what every client inferwatch makes shares. Callers add their own
/// settings, then the user's `librdkafka_options` (which win).
pub fn client_config(brokers: &str, sasl: Option<&SaslConfig>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    if let Some(s) = sasl {
        cfg.set(
            "security.protocol",
            if s.tls { "SASL_SSL" } else { "SASL_PLAINTEXT" },
        )
        .set("sasl.mechanism", &s.mechanism)
        .set("sasl.username", &s.username)
        .set("sasl.password", s.password.expose());
    }
    cfg
}
