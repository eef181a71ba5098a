//! What every Kafka client inferwatch makes shares: brokers, SASL/TLS, librdkafka's
//! own spelling of settings; and the producer that writes the alerts and dead-letter
//! topics ([`producer`]). The consumer is the Kafka source (`crate::source::kafka`).

use std::path::{Path, PathBuf};

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

/// `tls:` of a Kafka client (Vector's keys): TLS on the connection, with or without
/// SASL. Files are PEM.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// TLS on (the default when the block is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// CA certificate(s) to verify the brokers with, instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for brokers that authenticate clients by certificate (with
    /// `key_file`).
    #[serde(default)]
    pub crt_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Passphrase of an encrypted `key_file`; never printed (use `${ENV}`).
    #[serde(default)]
    pub key_pass: Option<Secret>,
    /// Verify the brokers' certificates (default true; false only for a test cluster).
    #[serde(default = "yes")]
    pub verify_certificate: bool,
    /// Check that a broker's certificate names the host connected to (default true).
    #[serde(default = "yes")]
    pub verify_hostname: bool,
}

fn yes() -> bool {
    true
}

impl TlsConfig {
    /// Files exist and come in pairs; said before any connection is tried.
    pub fn validate(&self, at: &str) -> Result<(), String> {
        if self.crt_file.is_some() != self.key_file.is_some() {
            return Err(format!(
                "{at}.tls: crt_file and key_file go together (a client certificate and its key)"
            ));
        }
        for (key, f) in [
            ("ca_file", &self.ca_file),
            ("crt_file", &self.crt_file),
            ("key_file", &self.key_file),
        ] {
            if let Some(f) = f
                && let Err(e) = std::fs::File::open(f)
            {
                return Err(format!("{at}.tls.{key}: cannot read {}: {e}", f.display()));
            }
        }
        Ok(())
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.ca_file, &mut self.crt_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
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

/// Brokers, SASL and TLS: what every client inferwatch makes shares. Callers add their
/// own settings, then the user's `librdkafka_options` (which win).
pub fn client_config(
    brokers: &str,
    sasl: Option<&SaslConfig>,
    tls: Option<&TlsConfig>,
) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    let tls_on = tls.is_some_and(|t| t.enabled) || sasl.is_some_and(|s| s.tls);
    let protocol = match (sasl.is_some(), tls_on) {
        (true, true) => "SASL_SSL",
        (true, false) => "SASL_PLAINTEXT",
        (false, true) => "SSL",
        (false, false) => "PLAINTEXT",
    };
    cfg.set("security.protocol", protocol);
    if let Some(s) = sasl {
        cfg.set("sasl.mechanism", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", s.password.expose());
    }
    if let Some(t) = tls.filter(|t| t.enabled) {
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(p) = &t.ca_file {
            cfg.set("ssl.ca.location", path(p));
        }
        if let Some(p) = &t.crt_file {
            cfg.set("ssl.certificate.location", path(p));
        }
        if let Some(p) = &t.key_file {
            cfg.set("ssl.key.location", path(p));
        }
        if let Some(k) = &t.key_pass {
            cfg.set("ssl.key.password", k.expose());
        }
        cfg.set(
            "enable.ssl.certificate.verification",
            if t.verify_certificate {
                "true"
            } else {
                "false"
            },
        )
        .set(
            "ssl.endpoint.identification.algorithm",
            if t.verify_hostname { "https" } else { "none" },
        );
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(yaml: &str) -> TlsConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_tls_block_maps_to_librdkafkas_settings() {
        let sasl: SaslConfig =
            serde_yaml::from_str("{mechanism: SCRAM-SHA-512, username: u, password: p}").unwrap();
        let get = |c: &ClientConfig, k: &str| c.get(k).map(str::to_owned);
        let plain = client_config("b:9092", None, None);
        assert_eq!(
            get(&plain, "security.protocol").as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(get(&plain, "ssl.ca.location"), None);
        let t = tls("{ca_file: /ca.pem, crt_file: /c.pem, key_file: /k.pem, key_pass: s}");
        let c = client_config("b:9092", None, Some(&t));
        assert_eq!(get(&c, "security.protocol").as_deref(), Some("SSL"));
        assert_eq!(get(&c, "ssl.ca.location").as_deref(), Some("/ca.pem"));
        assert_eq!(
            get(&c, "ssl.certificate.location").as_deref(),
            Some("/c.pem")
        );
        assert_eq!(get(&c, "ssl.key.location").as_deref(), Some("/k.pem"));
        assert_eq!(get(&c, "ssl.key.password").as_deref(), Some("s"));
        assert_eq!(
            get(&c, "enable.ssl.certificate.verification").as_deref(),
            Some("true")
        );
        assert_eq!(
            get(&c, "ssl.endpoint.identification.algorithm").as_deref(),
            Some("https")
        );
        let c = client_config("b:9092", Some(&sasl), Some(&t));
        assert_eq!(get(&c, "security.protocol").as_deref(), Some("SASL_SSL"));
        let c = client_config("b:9092", Some(&sasl), None);
        assert_eq!(
            get(&c, "security.protocol").as_deref(),
            Some("SASL_PLAINTEXT")
        );
        let lax = tls("{verify_certificate: false, verify_hostname: false}");
        let c = client_config("b:9092", None, Some(&lax));
        assert_eq!(
            get(&c, "enable.ssl.certificate.verification").as_deref(),
            Some("false")
        );
        assert_eq!(
            get(&c, "ssl.endpoint.identification.algorithm").as_deref(),
            Some("none")
        );
        let off = tls("{enabled: false, ca_file: /ca.pem}");
        let c = client_config("b:9092", None, Some(&off));
        assert_eq!(get(&c, "security.protocol").as_deref(), Some("PLAINTEXT"));
        assert_eq!(get(&c, "ssl.ca.location"), None);
        // The key's passphrase is never in Debug output.
        assert!(!format!("{t:?}").contains("key_pass: Some(\"s\")"));
    }

    #[test]
    fn tls_files_are_checked_before_connecting() {
        let e = tls("{crt_file: /c.pem}").validate("source").unwrap_err();
        assert!(e.contains("go together"), "{e}");
        let e = tls("{ca_file: /nonexistent/ca.pem}")
            .validate("source")
            .unwrap_err();
        assert!(
            e.contains("source.tls.ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
