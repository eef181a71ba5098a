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

/// The whole configuration of an inferwatch job.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// Rule files, folders or glob patterns (`rules/*.yaml`, `teams/**/*.yaml`), relative
    /// to the config file, as Prometheus's `rule_files`; when set, `queries` is not read.
    /// A pattern that matches no file is an error.
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    /// Where undecodable and late records go.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// Alert receivers.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Email receivers, routing, grouping, inhibition and silences.
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// The HTTP server: health, metrics, alerts, rules, silences, the report.
    #[serde(default)]
    pub http: crate::http::HttpConfig,
    /// OpenTelemetry export: alert state changes as log records, counters as metrics.
    #[serde(default)]
    pub otlp: Option<crate::otlp::OtlpConfig>,
    /// Limits for each rule's query.
    #[serde(default)]
    pub engine: EngineConfig,
    /// The HTML report (`replay --report`, `GET /report`): how much it holds.
    #[serde(default)]
    pub report: crate::report::ReportConfig,
    /// Per-client statistics (`client_stats`, `client_profile`).
    #[serde(default)]
    pub clients: crate::tables::clients::ClientsConfig,
    /// Data and prediction drift (`feature_drift`, `prediction_drift`).
    #[serde(default)]
    pub drift: crate::tables::drift::DriftConfig,
    /// The rolling reference the drift tables and client statistics measure against
    /// when a model has no baseline.
    #[serde(default)]
    pub reference: crate::tables::reference::ReferenceConfig,
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
    #[schemars(with = "String")]
    pub checkpoint_interval: Duration,
    /// Discard the state directory's checkpoint instead of resuming (`--reset-state`).
    #[serde(skip)]
    pub reset_state: bool,
    /// Reference profiles from `inferwatch baseline build`, one per model (also
    /// `--baseline`); relative to the config file.
    #[serde(default)]
    pub baselines: Vec<PathBuf>,
    /// Delayed ground truth: true labels joined to the predictions (`performance`,
    /// `class_performance`).
    #[serde(default)]
    pub labels: Option<crate::labels::LabelsConfig>,
    /// The file this config was read from (a reload reads it again).
    #[serde(skip)]
    pub path: Option<PathBuf>,
    /// The profiles of `baselines`, loaded and checked by [`Config::load_baselines`].
    #[serde(skip)]
    pub baseline_profiles: Vec<std::sync::Arc<crate::baseline::Baseline>>,
}

impl Config {
    /// Where the rules come from: `rule_files` when set, else the `queries` folder.
    pub fn rule_paths(&self) -> Vec<PathBuf> {
        if self.rule_files.is_empty() {
            vec![self.queries.clone()]
        } else {
            self.rule_files.clone()
        }
    }
}

/// The JSON Schema of [`Config`] (draft 2020-12), pretty-printed: what
/// `inferwatch config schema` prints and `docs/config.schema.json` holds.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Config);
    serde_json::to_string_pretty(&schema).expect("a schema serializes")
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_queries() -> PathBuf {
    PathBuf::from("queries")
}

/// Event time: the watermark trails the newest event time by `allowed_lateness`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// How far behind the newest event time a record may arrive and still count.
    #[serde(with = "humantime_serde", default = "default_lateness")]
    #[schemars(with = "String")]
    pub allowed_lateness: Duration,
    /// A partition (file or Kafka partition) with no records for this long (wall clock)
    /// stops holding the watermark back.
    #[serde(with = "humantime_serde", default = "default_idle")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// Runs of empty windows longer than this are skipped (a gap of days in the data
    /// would otherwise mean evaluating thousands of empty windows).
    #[serde(default = "default_max_empty")]
    pub max_empty_windows: u32,
    /// Event times before this (RFC 3339) are refused as implausible.
    #[serde(default = "default_min_event_time")]
    pub min_event_time: String,
    /// Event times at or after this (RFC 3339) are refused as implausible.
    #[serde(default = "default_max_event_time")]
    pub max_event_time: String,
    /// A record this far past its partition's clock is refused unless the stream confirms
    /// the jump (see `window::guard`).
    #[serde(with = "humantime_serde", default = "default_max_ahead")]
    #[schemars(with = "String")]
    pub max_ahead: Duration,
    /// Far-ahead records that confirm a jump of the whole stream (when they also
    /// outnumber the others since the first of them).
    #[serde(default = "default_jump_confirmations")]
    pub jump_confirmations: u32,
}

impl TimeConfig {
    /// The event-time guard these settings describe.
    pub fn guard(&self) -> Result<crate::window::guard::GuardConfig, String> {
        let at = |key: &str, v: &str| crate::time::parse_rfc3339(&format!("time.{key}"), v);
        crate::window::guard::GuardConfig::new(
            at("min_event_time", &self.min_event_time)?,
            at("max_event_time", &self.max_event_time)?,
            self.max_ahead,
            self.jump_confirmations,
        )
    }
}

fn default_min_event_time() -> String {
    "2000-01-01T00:00:00Z".into()
}
fn default_max_event_time() -> String {
    "2100-01-01T00:00:00Z".into()
}
fn default_max_ahead() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_jump_confirmations() -> u32 {
    100
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
            min_event_time: default_min_event_time(),
            max_event_time: default_max_event_time(),
            max_ahead: default_max_ahead(),
            jump_confirmations: default_jump_confirmations(),
        }
    }
}

/// Dead letters: records that could not be decoded, or came late.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSONL file, one object per dead record: reason, source, position, raw text.
    /// Without it dead letters are only counted and logged.
    pub path: Option<PathBuf>,
    /// Kafka topic for dead letters: the raw bytes as the message; kind, reason, source
    /// and position (and source_topic, source_partition, source_offset) as headers.
    #[serde(default)]
    pub kafka: Option<crate::kafka::KafkaOutConfig>,
}

impl Config {
    /// Reads, interpolates and parses a config file; relative paths in it are resolved
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with(path, |v| std::env::var(v).ok())
    }

    /// [`Config::load`] with the environment given by `lookup`. Errors never show a
    /// value that came from it (a password): each is replaced by its `${VAR}`.
    fn load_with(
        path: &Path,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut from_env = Vec::new();
        let text = interpolate_env_into(&text, lookup, &mut from_env).map_err(|var| {
            ConfigError::MissingEnv {
                path: path.to_owned(),
                var,
            }
        })?;
        let mut config = Self::parse(&text, path).map_err(|e| match e {
            ConfigError::Parse { path, message } => ConfigError::Parse {
                path,
                message: redact(&message, &from_env),
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.kafka_defaults();
        config
            .move_reference_settings()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message: redact(&message, &from_env),
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
        for p in &mut self.rule_files {
            fix(p);
        }
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
        if let Some(l) = &mut self.labels {
            l.source.resolve_paths(base);
        }
        self.notify.resolve_paths(base);
        for out in [self.alerts.kafka.as_mut(), self.dead_letter.kafka.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(t) = out.tls.as_mut() {
                t.resolve_paths(base);
            }
        }
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
        for (i, path) in self.baselines.iter().enumerate() {
            let b = crate::baseline::Baseline::load(path).map_err(|e| e.to_string())?;
            if let Some(j) = profiles.iter().position(|p| p.model == b.model) {
                return Err(format!(
                    "two baselines for model {:?}: {} and {} (each built from {} and {}); give one per model",
                    b.model,
                    self.baselines[j].display(),
                    self.baselines[i].display(),
                    profiles[j].source,
                    b.source
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
                out.tls = out.tls.take().or_else(|| k.tls.clone());
            }
        }
    }

    /// Settings of the rolling reference from where releases before `reference:` had
    /// them (`drift.reference_windows`, `drift.reference_sample`, `drift.max_models`,
    /// `clients.reference_windows`, `clients.reference_sample`): they still apply, with
    /// a warning; two that disagree, or one that disagrees with `reference:`, stop the
    /// start.
    pub(crate) fn move_reference_settings(&mut self) -> Result<(), String> {
        let defaults = crate::tables::reference::ReferenceConfig::default();
        let moved = [
            (
                "drift.reference_windows",
                "windows",
                self.drift.reference_windows.take(),
            ),
            (
                "clients.reference_windows",
                "windows",
                self.clients.reference_windows.take(),
            ),
            (
                "drift.reference_sample",
                "sample",
                self.drift.reference_sample.take(),
            ),
            (
                "clients.reference_sample",
                "sample",
                self.clients.reference_sample.take(),
            ),
            (
                "drift.max_models",
                "max_models",
                self.drift.max_models.take(),
            ),
        ];
        let mut set: std::collections::BTreeMap<&str, (&str, usize)> = Default::default();
        for (old, new, value) in moved {
            let Some(v) = value else { continue };
            let slot = match new {
                "windows" => (&mut self.reference.windows, defaults.windows),
                "sample" => (&mut self.reference.sample, defaults.sample),
                _ => (&mut self.reference.max_models, defaults.max_models),
            };
            if let Some((first, w)) = set.get(new) {
                if *w != v {
                    return Err(format!(
                        "{first}: {w} and {old}: {v} disagree; both are now reference.{new}                          (one sample serves drift and client statistics)"
                    ));
                }
                continue;
            }
            if *slot.0 != slot.1 && *slot.0 != v {
                return Err(format!(
                    "{old}: {v} and reference.{new}: {} disagree; {old} is now reference.{new}",
                    slot.0
                ));
            }
            tracing::warn!("{old} is now reference.{new}: using {v}; move it there");
            *slot.0 = v;
            set.insert(new, (old, v));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        self.decode.validate()?;
        self.engine.validate()?;
        self.time.guard()?;
        if let SourceConfig::Kafka(k) = &self.source {
            k.validate()?;
        }
        if let Some(k) = &self.alerts.kafka {
            k.validate("alerts.kafka")?;
        }
        if let Some(k) = &self.dead_letter.kafka {
            k.validate("dead_letter.kafka")?;
        }
        self.clients.validate()?;
        if let Some(l) = &self.labels {
            // The source may still come from the command line (replay --labels).
            l.validate_settings()?;
            if let SourceConfig::Kafka(k) = &l.source {
                k.validate()?;
            }
        }
        self.report.validate()?;
        self.rescore.validate()
    }
}

/// `message` with every value that came from the environment (`from_env`: name and
/// value) replaced by its `${VAR}`: the value as it is, as serde quotes it (escaped),
/// and each line of a multi-line value (an error quotes one line of the file). Longer
/// values go first, so a value inside another is not half-replaced. Locations (`line 3,
/// column 12`, a quoted line's number) are the parser's own words: kept, so that a
/// short value such as `1` cannot garble them.
fn redact(message: &str, from_env: &[(String, String)]) -> String {
    let mut secrets: Vec<(String, &str)> = Vec::new();
    for (name, value) in from_env {
        let quoted = format!("{value:?}");
        let escaped = &quoted[1..quoted.len() - 1];
        for form in [value.as_str(), escaped].into_iter().chain(value.lines()) {
            if !form.trim().is_empty() {
                secrets.push((form.to_owned(), name));
            }
        }
    }
    if secrets.is_empty() {
        return message.to_owned();
    }
    secrets.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
    secrets.dedup_by(|a, b| a.0 == b.0);
    // `line 3, column 12` (TOML), `line 3 column 12` (YAML), and TOML's `3 |` gutter.
    let location =
        regex::Regex::new(r"(?m)line \d+,? column \d+|^ *\d+ \|").expect("a valid pattern");
    let mut locations = location.find_iter(message).peekable();
    let mut out = String::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        while locations.next_if(|m| m.end() <= i).is_some() {}
        if let Some(m) = locations.peek().filter(|m| m.start() == i) {
            out.push_str(m.as_str());
            i = m.end();
            continue;
        }
        let rest = &message[i..];
        if let Some((secret, name)) = secrets.iter().find(|(s, _)| rest.starts_with(s.as_str())) {
            out.push_str(&format!("${{{name}}}"));
            i += secret.len();
            continue;
        }
        let c = rest.chars().next().expect("i is on a character boundary");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. Comments (`#` at the
/// start of a line or after a blank, outside quotes) are left as they are, so a
/// commented-out setting never needs its variables. Returns the name of the first
/// variable that is unset and has no default.
pub fn interpolate_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    interpolate_env_into(text, lookup, &mut Vec::new())
}

/// [`interpolate_env`], adding to `from_env` the name and value of every variable the
/// environment gave (defaults are not from it).
fn interpolate_env_into(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
    from_env: &mut Vec<(String, String)>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (code, comment) = line.split_at(comment_start(line).unwrap_or(line.len()));
        out.push_str(&interpolate_line(code, &lookup, from_env)?);
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
    from_env: &mut Vec<(String, String)>,
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
                (Some(v), _) => {
                    out.push_str(&v);
                    from_env.push((name.to_owned(), v));
                }
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

    /// Every key the config types accept, as dotted paths (`a.b`, lists `a[].b`), from
    /// their JSON Schema: the variants of a tagged enum share their parent's path.
    fn key_paths() -> std::collections::BTreeSet<String> {
        fn walk(
            v: &serde_json::Value,
            defs: &serde_json::Map<String, serde_json::Value>,
            prefix: &str,
            seen: &mut Vec<String>,
            out: &mut std::collections::BTreeSet<String>,
        ) {
            if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
                let name = r.trim_start_matches("#/$defs/").to_owned();
                if seen.contains(&name) {
                    return; // a recursive type (routes of routes): its keys are listed once
                }
                seen.push(name.clone());
                walk(&defs[&name], defs, prefix, seen, out);
                seen.pop();
            }
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, p) in props {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(path.clone());
                    walk(p, defs, &path, seen, out);
                }
            }
            if let Some(items) = v.get("items") {
                walk(items, defs, &format!("{prefix}[]"), seen, out);
            }
            for k in ["oneOf", "anyOf", "allOf"] {
                for sub in v.get(k).and_then(|s| s.as_array()).into_iter().flatten() {
                    walk(sub, defs, prefix, seen, out);
                }
            }
        }
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
        let mut out = std::collections::BTreeSet::new();
        walk(&schema, &defs, "", &mut Vec::new(), &mut out);
        out
    }

    #[test]
    fn the_configuration_reference_lists_every_key() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .unwrap();
        let paths = key_paths();
        // The walk itself must reach nested keys, lists and tagged variants.
        for p in [
            "time.allowed_lateness",
            "notify.receivers[].email.smarthost",
            "notify.route.routes",
            "source.paths",
            "source.topics",
            "labels.fields.label",
        ] {
            assert!(paths.contains(p), "the schema walk misses {p}");
        }
        let missing: Vec<&String> = paths
            .iter()
            .filter(|p| !doc.contains(&format!("`{p}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md does not describe: {missing:?}"
        );
    }

    #[test]
    fn the_published_json_schema_is_the_one_the_config_types_give() {
        let published = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/config.schema.json"
        ))
        .unwrap();
        assert!(
            published.trim_end() == schema_json(),
            "docs/config.schema.json is stale: `inferwatch config schema > docs/config.schema.json`"
        );
    }

    #[test]
    fn the_schema_accepts_what_the_loader_accepts_and_refuses_unknown_keys() {
        let schema: serde_json::Value = serde_json::from_str(&schema_json()).unwrap();
        assert_eq!(schema["additionalProperties"], serde_json::json!(false));
        let time = &schema["$defs"]["TimeConfig"];
        assert_eq!(time["additionalProperties"], serde_json::json!(false));
        assert_eq!(time["properties"]["allowed_lateness"]["default"], "5s");
        assert!(
            schema["required"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("source"))
        );
    }

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

    /// Writes `text` as `config.<ext>` in a fresh folder and loads it with `env`.
    fn load_text(ext: &str, text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("config.{ext}"));
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::load_with(&path, |var| {
            env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn reference_settings_from_before_the_shared_reference_still_apply_unless_they_disagree() {
        let base = "source: {type: file, paths: []}\n";
        let c = load_text(
            "yaml",
            &format!("{base}drift: {{reference_sample: 100, max_models: 5}}\nclients: {{reference_sample: 100, reference_windows: 7}}\n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.reference,
            crate::tables::reference::ReferenceConfig {
                windows: 7,
                sample: 100,
                max_models: 5
            }
        );
        let c = load_text("yaml", &format!("{base}reference: {{sample: 50}}\n"), &[]).unwrap();
        assert_eq!(c.reference.sample, 50);
        for bad in [
            "drift: {reference_sample: 100}\nclients: {reference_sample: 200}\n",
            "reference: {sample: 50}\ndrift: {reference_sample: 100}\n",
        ] {
            let e = load_text("yaml", &format!("{base}{bad}"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("disagree") && e.contains("reference.sample"),
                "{e}"
            );
        }
    }

    const SECRET: &str = "hunter2-Zq9/x-s3cret";

    #[test]
    fn a_toml_syntax_error_on_the_password_line_does_not_show_the_password() {
        let text = "[source]\ntype = \"kafka\"\nbootstrap_servers = \"127.0.0.1:9092\"\n\
                    topics = [\"logs\"]\ngroup_id = \"g\"\n[source.sasl]\n\
                    mechanism = \"SCRAM-SHA-256\"\nusername = \"svc\"\n\
                    password = \"${SECRET_VAR}\" oops\n";
        let err = load_text("toml", text, &[("SECRET_VAR", SECRET)])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        // Still says where and what: the line, with the variable in place of its value.
        assert!(err.contains("line 9"), "{err}");
        assert!(err.contains("password = \"${SECRET_VAR}\" oops"), "{err}");
    }

    #[test]
    fn a_yaml_type_error_quoting_a_value_from_the_environment_shows_its_name() {
        let text = "source:\n  type: kafka\n  bootstrap_servers: 127.0.0.1:9092\n  \
                    topics: [logs]\n  group_id: g\n  batch_records: \"${BATCH}\"\n";
        let err = load_text("yaml", text, &[("BATCH", SECRET)])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("${BATCH}"), "{err}");
    }

    #[test]
    fn a_short_value_does_not_garble_the_location() {
        let text = "checkpoint_interval = \"${ONE}s\" oops\n";
        let err = load_text("toml", text, &[("ONE", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1, column"), "{err}");
        assert!(
            err.contains("1 | checkpoint_interval = \"${ONE}s\" oops"),
            "{err}"
        );
    }

    fn kafka_source(options: &str) -> String {
        format!(
            "source:\n  type: kafka\n  bootstrap_servers: 127.0.0.1:9092\n  topics: [logs]\n  \
             group_id: g\n  librdkafka_options: {{{options}}}\n"
        )
    }

    #[test]
    fn consumer_options_that_commit_behind_the_checkpoint_are_refused() {
        for (option, value) in [
            ("enable.auto.commit", "true"),
            ("enable.auto.commit", "1"),
            ("enable.auto.offset.store", "TRUE"),
            ("enable.partition.eof", "t"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("group.protocol", "consumer"),
        ] {
            let text = kafka_source(&format!("{option}: \"{value}\""));
            match load_text("yaml", &text, &[]) {
                Err(ConfigError::Invalid { message, .. }) => {
                    assert!(message.contains(option), "{option}: {message}");
                    assert!(message.contains("remove it"), "{option}: {message}");
                }
                other => panic!("{option} = {value}: {other:?}"),
            }
        }
    }

    #[test]
    fn consumer_options_that_keep_the_guarantee_are_accepted() {
        let text = kafka_source(
            "enable.auto.commit: \"false\", enable.auto.offset.store: \"false\", \
             auto.commit.interval.ms: \"1000\", partition.assignment.strategy: range, \
             fetch.min.bytes: \"1\"",
        );
        if let Err(e) = load_text("yaml", &text, &[]) {
            panic!("{e}");
        }
    }

    #[test]
    fn an_output_producer_that_is_not_idempotent_is_refused() {
        for section in ["dead_letter", "alerts"] {
            let text = format!(
                "source: {{type: file, paths: []}}\n{section}:\n  kafka:\n    topic: t\n    \
                 bootstrap_servers: 127.0.0.1:9092\n    \
                 librdkafka_options: {{enable.idempotence: \"false\"}}\n"
            );
            match load_text("yaml", &text, &[]) {
                Err(ConfigError::Invalid { message, .. }) => {
                    assert!(message.contains(&format!("{section}.kafka")), "{message}");
                    assert!(message.contains("enable.idempotence"), "{message}");
                }
                other => panic!("{section}: {other:?}"),
            }
            let ok = text.replace("\"false\"", "\"true\"");
            if let Err(e) = load_text("yaml", &ok, &[]) {
                panic!("{section}: {e}");
            }
        }
    }

    #[test]
    fn unset_variable_without_default_is_named() {
        let err = interpolate_env("a: ${NOPE}", |_| None).unwrap_err();
        assert_eq!(err, "NOPE");
    }
}
