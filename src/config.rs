//! The configuration file: one YAML or TOML document, `${ENV}` interpolated, every
//! section `deny_unknown_fields` so that a typo is an error that names the field.
//!
//! Each stage's own settings live next to its code (`source::SourceConfig`,
//! `decode::DecodeConfig`, ...); this module only assembles them and loads the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::alert::AlertsConfig;
use crate::decode::DecodeConfig;
use crate::rules::engine::EngineConfig;
use crate::source::SourceConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: environment variable ${{{var}}} is not set (set it, or write ${{{var}:-default}})"
    )]
    MissingEnv { path: PathBuf, var: String },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration of a driftwatch job.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where records come from.
    pub source: SourceConfig,
    /// How records map to the `events` table.
    #[serde(default)]
    pub decode: DecodeConfig,
    /// Event-time settings shared by every window.
    #[serde(default)]
    pub time: TimeConfig,
    /// Folder of rule files (`*.yaml`), relative to the config file. Default `queries`.
    #[serde(default = "default_queries")]
    pub queries: PathBuf,
    /// Where undecodable and late records go.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// Alert receivers.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Email receivers, routing, grouping, inhibition and silences.
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// The HTTP server: health, metrics, alerts, rules, silences.
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// OpenTelemetry export: alert state changes as log records, counters as metrics.
    #[serde(default)]
    pub otlp: Option<crate::otlp::OtlpConfig>,
    /// Limits for each rule's query.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Per-client statistics (`client_stats`, `client_profile`).
    #[serde(default)]
    pub clients: crate::clients::ClientsConfig,
    /// Data and prediction drift (`feature_drift`, `prediction_drift`).
    #[serde(default)]
    pub drift: crate::drift::DriftConfig,
    /// Embedded ONNX copies of the monitored models (the `rescored` table).
    #[serde(default)]
    pub models: Vec<crate::rescore::ModelConfig>,
    /// Which records are re-scored, within what budget.
    #[serde(default)]
    pub rescore: crate::rescore::rescorer::RescoreConfig,
    /// Keep checkpoints here and resume from the newest on start (`--state-dir`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How often (wall clock) a checkpoint is written; also at the end and on SIGTERM.
    #[serde(with = "humantime_serde", default = "default_checkpoint_interval")]
    pub checkpoint_interval: Duration,
    /// Discard the state directory's checkpoint instead of resuming (`--reset-state`).
    #[serde(skip)]
    pub reset_state: bool,
    /// Reference profiles from `driftwatch baseline build`, one per model (also
    /// `--baseline`); relative to the config file.
    #[serde(default)]
    pub baselines: Vec<PathBuf>,
    /// The file this config was read from (a reload reads it again).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The profiles of `baselines`, loaded and checked by [`Config::load_baselines`].
    #[serde(skip)]
    pub baseline_profiles: Vec<std::sync::Arc<crate::baseline::Baseline>>,
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_queries() -> PathBuf {
    PathBuf::from("queries")
}

/// Event time: the watermark trails the newest event time by `allowed_lateness`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// How far behind the newest event time a record may arrive and still count.
    #[serde(with = "humantime_serde", default = "default_lateness")]
    pub allowed_lateness: Duration,
    /// A partition (file or Kafka partition) with no records for this long (wall clock)
    /// stops holding the watermark back.
    #[serde(with = "humantime_serde", default = "default_idle")]
    pub idle_timeout: Duration,
    /// Runs of empty windows longer than this are skipped (a gap of days in the data
    /// would otherwise mean evaluating thousands of empty windows).
    #[serde(default = "default_max_empty")]
    pub max_empty_windows: u32,
}

fn default_lateness() -> Duration {
    Duration::from_secs(5)
}
fn default_idle() -> Duration {
    Duration::from_secs(30)
}
fn default_max_empty() -> u32 {
    60
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self {
            allowed_lateness: default_lateness(),
            idle_timeout: default_idle(),
            max_empty_windows: default_max_empty(),
        }
    }
}

/// Dead letters: records that could not be decoded, or came late.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSONL file, one object per dead record: reason, source, position, raw text.
    /// Without it dead letters are only counted and logged.
    pub path: Option<PathBuf>,
    /// Kafka topic for dead letters: the raw bytes as the message; kind, reason, source
    /// and position (and source_topic, source_partition, source_offset) as headers.
    #[serde(default)]
    pub kafka: Option<crate::kafka_out::KafkaOutConfig>,
}

impl Config {
    /// Reads, interpolates and parses a config file; relative paths in it are resolved
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let text = interpolate_env(&text, |v| std::env::var(v).ok()).map_err(|var| {
            ConfigError::MissingEnv {
                path: path.to_owned(),
                var,
            }
        })?;
        let mut config = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.kafka_defaults();
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        config.path = Some(path.to_owned());
        Ok(config)
    }

    fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let parsed = if is_toml {
            toml::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())
        };
        parsed.map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.queries);
        if let Some(p) = self.dead_letter.path.as_mut() {
            fix(p);
        }
        if let Some(p) = self.alerts.jsonl.as_mut() {
            fix(p);
        }
        if let Some(p) = self.state_dir.as_mut() {
            fix(p);
        }
        self.baselines.iter_mut().for_each(fix);
        self.models.iter_mut().for_each(|m| fix(&mut m.path));
        self.source.resolve_paths(base);
        self.notify.resolve_paths(base);
        if let Some(p) = self.http.token_file.as_mut()
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// Loads and checks every baseline (one per model). When the config declares no
    /// features, the baselines' features are the ones decoded.
    pub fn load_baselines(&mut self) -> Result<(), String> {
        let mut profiles: Vec<std::sync::Arc<crate::baseline::Baseline>> = Vec::new();
        for path in &self.baselines {
            let b = crate::baseline::Baseline::load(path).map_err(|e| e.to_string())?;
            if let Some(other) = profiles.iter().find(|p| p.model == b.model) {
                return Err(format!(
                    "two baselines for model {:?} ({} and {}): give one per model",
                    b.model, other.source, b.source
                ));
            }
            tracing::info!(model = %b.model, rows = b.rows, source = %b.source, "baseline loaded");
            profiles.push(std::sync::Arc::new(b));
        }
        if self.decode.features.is_empty() {
            for b in &profiles {
                for f in b.feature_decls() {
                    match self.decode.features.iter().find(|d| d.name == f.name) {
                        Some(d) if d.kind != f.kind => {
                            return Err(format!(
                                "feature {:?} is numerical in one baseline and categorical \
                                 in another: declare it in decode.features",
                                f.name
                            ));
                        }
                        Some(_) => {}
                        None => self.decode.features.push(f),
                    }
                }
            }
        }
        self.baseline_profiles = profiles;
        Ok(())
    }

    /// Output topics without their own brokers use the Kafka source's brokers and SASL.
    fn kafka_defaults(&mut self) {
        let SourceConfig::Kafka(k) = &self.source else {
            return;
        };
        for out in [self.alerts.kafka.as_mut(), self.dead_letter.kafka.as_mut()]
            .into_iter()
            .flatten()
        {
            if out.bootstrap_servers.is_none() {
                out.bootstrap_servers = Some(k.bootstrap_servers.clone());
                out.sasl = out.sasl.take().or_else(|| k.sasl.clone());
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.decode.validate()?;
        self.rescore.validate()
    }
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. Comments (`#` at the
/// start of a line or after a blank, outside quotes) are left as they are, so a
/// commented-out setting never needs its variables. Returns the name of the first
/// variable that is unset and has no default.
pub fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (code, comment) = line.split_at(comment_start(line).unwrap_or(line.len()));
        out.push_str(&interpolate_line(code, &lookup)?);
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte index of the `#` that starts a YAML/TOML comment in `line`, if any.
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return Some(i),
            None => {}
        }
        prev = c;
    }
    None
}

fn interpolate_line(
    text: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push('$');
                rest = after;
                continue;
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(name.to_owned()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_set_default_and_escaped_variables() {
        let env = |v: &str| (v == "BROKERS").then(|| "127.0.0.1:9092".to_owned());
        let got = interpolate_env("a: ${BROKERS}\nb: ${TOPIC:-logs}\nc: $$5 $x", env).unwrap();
        assert_eq!(got, "a: 127.0.0.1:9092\nb: logs\nc: $5 $x");
    }

    #[test]
    fn comments_are_not_interpolated() {
        let env = |v: &str| (v == "SET").then(|| "x".to_owned());
        let text = "# sasl: ${UNSET}\n  a: ${SET} # ${UNSET}\nb: \"#${SET}\" # ${UNSET}\n";
        let got = interpolate_env(text, env).unwrap();
        assert_eq!(
            got,
            "# sasl: ${UNSET}\n  a: x # ${UNSET}\nb: \"#x\" # ${UNSET}\n"
        );
    }

    #[test]
    fn unset_variable_without_default_is_named() {
        let err = interpolate_env("a: ${NOPE}", |_| None).unwrap_err();
        assert_eq!(err, "NOPE");
    }
}
