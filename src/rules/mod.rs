//! Detection rules: the `queries/*.yaml` format, loading and validation. Every error
//! names the file, the line and the rule id, so a user can go straight to the fix.
//!
//! Planning and running a rule's SQL is `engine`'s job; rule unit tests (promtool style)
//! are in `testing`.

pub mod engine;
pub mod functions;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::stable_hash::hex;
use crate::window::{WindowConfig, WindowSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One rule as written in a rule file.
///
/// Its JSON serialization is the rule's fingerprint: a field added later must be
/// `#[serde(default, skip_serializing_if = ...)]` at its default, so that the rules
/// that do not use it keep their fingerprint (and their alert state) across an upgrade.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Stable id; part of every alert's identity.
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub severity: Severity,
    pub window: WindowConfig,
    /// A read-only query over the window's tables; each row is an alert instance.
    pub sql: String,
    /// Result columns whose values identify an alert (with the rule id).
    #[serde(default)]
    pub labels_from: Vec<String>,
    /// How long the condition must hold (in event time) before the alert fires.
    #[serde(rename = "for", with = "humantime_serde", default)]
    pub for_: Option<Duration>,
    /// How long a firing alert stays firing after the condition clears.
    #[serde(with = "humantime_serde", default)]
    pub keep_firing_for: Option<Duration>,
    /// Templates over result columns: `{{ column }}`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Free-form classification, e.g. `{atlas: [AML.T0024.002], owasp_ml: [ML05]}`.
    #[serde(default)]
    pub tags: BTreeMap<String, Vec<String>>,
    /// Re-score the inputs of the clients this rule returns (a `client_id` column; without
    /// one, the whole window) with the embedded model, and theirs for `rescore.suspect_for`.
    #[serde(default)]
    pub rescore: bool,
    /// `notify.receivers` to send to, instead of what `notify.route` decides (empty: the
    /// routing tree decides). stdout, the JSONL file and the alerts topic get every alert.
    #[serde(default)]
    pub route: Vec<String>,
    /// Labels every alert of this rule carries, fixed (`team: ml`): routes, silences and
    /// inhibitions match on them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `false`: a recording rule. It is evaluated (its `rescore:` still flags clients,
    /// its errors still count) but raises no alert.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub alert: bool,
    /// A recording rule whose rows, every window, are the table of this name for the
    /// other rules of the same window (evaluated before them); it raises no alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl RuleDef {
    /// Whether the rule raises alerts (not a recording rule).
    pub fn alerts(&self) -> bool {
        self.alert && self.record.is_none()
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub def: RuleDef,
    pub spec: WindowSpec,
    pub file: PathBuf,
    /// Line of the rule's `id:` in its file (1-based).
    pub line: usize,
    /// Line where the SQL text starts.
    pub sql_line: usize,
    /// Hash of the rule's definition: alert state survives restarts only for rules whose
    /// hash is unchanged. SHA-256 of a version tag and the definition as JSON (fields in
    /// declaration order, maps sorted).
    pub fingerprint: String,
    /// The fingerprint releases before the JSON one computed (SHA-256 of the `Debug`
    /// text), accepted when a checkpoint is restored so that an upgrade keeps the
    /// alert state of unchanged rules.
    pub legacy_fingerprint: String,
}

impl Rule {
    /// Its status before it has run.
    pub fn status(&self) -> crate::telemetry::RuleStatus {
        crate::telemetry::RuleStatus {
            id: self.def.id.clone(),
            name: self.def.name.clone(),
            severity: self.def.severity.as_str().to_owned(),
            file: self.file.display().to_string(),
            window: format!("{:?}", self.spec),
            ..Default::default()
        }
    }

    pub fn id(&self) -> &str {
        &self.def.id
    }
    pub fn for_ms(&self) -> i64 {
        self.def.for_.map_or(0, |d| d.as_millis() as i64)
    }
    pub fn keep_firing_ms(&self) -> i64 {
        self.def.keep_firing_for.map_or(0, |d| d.as_millis() as i64)
    }
    /// `file:line: rule id` prefix for messages.
    pub fn at(&self) -> String {
        format!(
            "{}:{}: rule {}",
            self.file.display(),
            self.line,
            self.def.id
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read rules at {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no rule files (*.yaml, *.yml) found")]
    Empty { path: PathBuf },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Many(String),
}

impl RuleError {
    pub fn invalid(rule: &Rule, message: impl Into<String>) -> Self {
        RuleError::Invalid {
            file: rule.file.clone(),
            line: rule.line,
            message: format!("rule {}: {}", rule.def.id, message.into()),
        }
    }
}

/// Rule files under `paths` (files, or folders searched for `*.yaml`/`*.yml`), sorted.
pub fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RuleError> {
    let mut files = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if !path.exists() && text.contains(['*', '?', '[']) {
            let bad = |why: String| RuleError::Many(format!("rule_files: pattern {text:?}: {why}"));
            // The folders that exist as written (the config's own folder may hold a `[`)
            // are taken literally; the pattern is what follows them.
            let mut literal = PathBuf::new();
            let mut pattern = String::new();
            for c in path.components() {
                let next = literal.join(c);
                if pattern.is_empty() && next.is_dir() {
                    literal = next;
                } else {
                    if !pattern.is_empty() {
                        pattern.push('/');
                    }
                    pattern.push_str(&c.as_os_str().to_string_lossy());
                }
            }
            let full = format!(
                "{}/{pattern}",
                glob::Pattern::escape(&literal.to_string_lossy()).trim_end_matches('/')
            );
            let mut found: Vec<PathBuf> = glob::glob(&full)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            found.retain(|p| p.is_file());
            if found.is_empty() {
                return Err(bad("matches no file".into()));
            }
            found.sort();
            files.extend(found);
            continue;
        }
        let meta = std::fs::metadata(path).map_err(|source| RuleError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| RuleError::Read {
                path: path.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            if found.is_empty() {
                return Err(RuleError::Empty { path: path.clone() });
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads and checks the rules of every file (not their SQL: see `engine`). Collects all
/// problems before failing, so one run shows every mistake.
pub fn load_rules(paths: &[PathBuf]) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for file in rule_files(paths)? {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (mut good, mut bad) = parse_checked(&text, &file);
                rules.append(&mut good);
                problems.append(&mut bad);
            }
            Err(source) => problems.push(RuleError::Read { path: file, source }.to_string()),
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for r in &rules {
        if let Some(first) =
            seen.insert(r.def.id.clone(), format!("{}:{}", r.file.display(), r.line))
        {
            problems.push(format!(
                "{}: duplicate rule id (first defined at {first})",
                r.at()
            ));
        }
    }
    match problems.len() {
        0 => Ok(rules),
        _ => Err(RuleError::Many(problems.join("\n"))),
    }
}

/// Parses and checks the rules of one file's text (`file` is used in messages).
pub fn parse_rules(text: &str, file: &Path) -> Result<Vec<Rule>, RuleError> {
    match parse_checked(text, file) {
        (rules, problems) if problems.is_empty() => Ok(rules),
        (_, problems) => Err(RuleError::Many(problems.join("\n"))),
    }
}

/// The valid rules of a file's text, and a message for each invalid one.
fn parse_checked(text: &str, file: &Path) -> (Vec<Rule>, Vec<String>) {
    let defs: Vec<RuleDef> = match serde_yaml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let err = RuleError::Invalid {
                file: file.to_owned(),
                line: e.location().map_or(1, |l| l.line()),
                message: format!("{e} (a rule file is a YAML list of rules)"),
            };
            return (Vec::new(), vec![err.to_string()]);
        }
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    let mut from = 0;
    for def in defs {
        let line = find_line(&lines, from, "id", Some(&def.id)).unwrap_or(from) + 1;
        from = line;
        let sql_line = sql_start_line(&lines, line - 1);
        let rule = Rule {
            spec: WindowSpec {
                size_ms: 0,
                slide_ms: 0,
                grace_ms: 0,
            },
            fingerprint: fingerprint(&def),
            legacy_fingerprint: legacy_fingerprint(&def),
            def,
            file: file.to_owned(),
            line,
            sql_line,
        };
        match check(rule) {
            Ok(r) => rules.push(r),
            Err(e) => problems.push(e.to_string()),
        }
    }
    (rules, problems)
}

fn check(mut rule: Rule) -> Result<Rule, RuleError> {
    let id = &rule.def.id;
    let valid_id = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid_id {
        return Err(RuleError::invalid(
            &rule,
            "id must be non-empty and use only letters, digits, '.', '_' and '-'",
        ));
    }
    if id.starts_with("inferwatch.") {
        return Err(RuleError::invalid(
            &rule,
            "ids starting with 'inferwatch.' are reserved",
        ));
    }
    rule.spec = rule
        .def
        .window
        .spec()
        .map_err(|e| RuleError::invalid(&rule, format!("window: {e}")))?;
    if rule.def.sql.trim().is_empty() {
        return Err(RuleError::invalid(&rule, "sql is empty"));
    }
    let mut labels = rule.def.labels_from.clone();
    labels.sort();
    if labels.windows(2).any(|w| w[0] == w[1]) {
        return Err(RuleError::invalid(
            &rule,
            "labels_from names a column twice",
        ));
    }
    // Label and annotation names as Prometheus and Alertmanager take them: an
    // Alertmanager refuses a whole request over one bad name.
    let label_name = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
    };
    for (what, name) in rule
        .def
        .labels_from
        .iter()
        .map(|n| ("labels_from", n))
        .chain(rule.def.annotations.keys().map(|n| ("annotations", n)))
    {
        if !label_name(name) {
            return Err(RuleError::invalid(
                &rule,
                format!(
                    "{what}: {name:?} is not a label name (letters, digits and _, not starting with a digit)"
                ),
            ));
        }
    }
    for name in rule.def.labels.keys() {
        if rule.def.labels_from.contains(name) {
            return Err(RuleError::invalid(
                &rule,
                format!(
                    "label {name:?} is both in labels (fixed) and in labels_from (from the query)"
                ),
            ));
        }
        if ["alertname", "rule_id", "severity"].contains(&name.as_str()) {
            return Err(RuleError::invalid(
                &rule,
                format!("label {name:?} is set by inferwatch; choose another name"),
            ));
        }
        if !label_name(name) {
            return Err(RuleError::invalid(
                &rule,
                format!("label name {name:?}: letters, digits and _, not starting with a digit"),
            ));
        }
    }
    if let Some(name) = &rule.def.record {
        let ok = !name.is_empty()
            && name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_lowercase() || (i > 0 && c.is_ascii_digit()));
        if !ok {
            return Err(RuleError::invalid(
                &rule,
                format!(
                    "record: {name:?} is not a table name (lowercase letters, digits and _, not starting with a digit)"
                ),
            ));
        }
    }
    if !rule.def.alerts() && !rule.def.route.is_empty() {
        return Err(RuleError::invalid(
            &rule,
            "a recording rule (alert: false) raises no alert to route",
        ));
    }
    Ok(rule)
}

/// Index of the first line at or after `from` whose key is `key` (optionally with
/// `value`), in a block sequence item or a mapping.
fn find_line(lines: &[&str], from: usize, key: &str, value: Option<&str>) -> Option<usize> {
    (from..lines.len()).find(|&i| {
        let t = lines[i].trim_start();
        let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
        let Some(rest) = t.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            return false;
        };
        let v = rest.split(" #").next().unwrap_or("").trim();
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        value.is_none_or(|want| v == want)
    })
}

/// The file line where a rule's SQL text starts (the line after `sql: |`).
fn sql_start_line(lines: &[&str], rule_index: usize) -> usize {
    match find_line(lines, rule_index, "sql", None) {
        Some(i) => {
            let after = lines[i].split_once("sql:").map_or("", |(_, v)| v.trim());
            if after.starts_with('|') || after.starts_with('>') || after.is_empty() {
                i + 2
            } else {
                i + 1
            }
        }
        None => rule_index + 1,
    }
}

fn fingerprint(def: &RuleDef) -> String {
    let mut h = Sha256::new();
    h.update(b"rule/1\n");
    h.update(
        serde_json::to_vec(def)
            .expect("a rule serializes")
            .as_slice(),
    );
    hex(&h.finalize()[..16])
}

/// The fingerprint checkpoints of format 3 and before hold: the `Debug` text of the rule
/// as it was then, whose fields `legacy::RuleDef` keeps (keys added since, `labels` and
/// `alert`, are not in it; a rule that sets them did not exist then).
fn legacy_fingerprint(def: &RuleDef) -> String {
    let old = legacy::RuleDef {
        id: &def.id,
        name: &def.name,
        description: &def.description,
        severity: &def.severity,
        window: &def.window,
        sql: &def.sql,
        labels_from: &def.labels_from,
        for_: &def.for_,
        keep_firing_for: &def.keep_firing_for,
        annotations: &def.annotations,
        tags: &def.tags,
        rescore: &def.rescore,
        route: &def.route,
    };
    let mut h = Sha256::new();
    h.update(format!("{old:?}").as_bytes());
    hex(&h.finalize()[..16])
}

mod legacy {
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// The rule's fields of format 3, under the name their `Debug` text carries.
    #[derive(Debug)]
    #[allow(dead_code, reason = "read only through Debug, the fingerprint's text")]
    pub struct RuleDef<'a> {
        pub id: &'a String,
        pub name: &'a Option<String>,
        pub description: &'a Option<String>,
        pub severity: &'a super::Severity,
        pub window: &'a crate::window::WindowConfig,
        pub sql: &'a String,
        pub labels_from: &'a Vec<String>,
        pub for_: &'a Option<Duration>,
        pub keep_firing_for: &'a Option<Duration>,
        pub annotations: &'a BTreeMap<String, String>,
        pub tags: &'a BTreeMap<String, Vec<String>>,
        pub rescore: &'a bool,
        pub route: &'a Vec<String>,
    }
}

/// Rule file lines use a block sequence: `- id: ...`.
#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = "\
# comment
- id: a.one
  severity: high
  window: {size: 1m}
  sql: |
    SELECT client_id FROM events
  labels_from: [client_id]

- id: a.two
  severity: low
  window: {size: 10m, slide: 1m, grace: 30s}
  sql: SELECT 1 AS x
";

    #[test]
    fn loads_rules_with_lines_and_windows() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", GOOD);
        let rules = load_rules(&[dir.path().to_owned()]).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!((rules[0].line, rules[0].sql_line), (2, 6));
        assert_eq!((rules[1].line, rules[1].sql_line), (9, 12));
        assert_eq!(rules[1].spec.slide_ms, 60_000);
        assert_eq!(rules[1].spec.grace_ms, 30_000);
        assert_eq!(rules[0].spec.slide_ms, 60_000);
    }

    #[test]
    fn unknown_field_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "bad.yaml",
            "- id: x\n  severity: high\n  window: {size: 1m}\n  sql: SELECT 1\n  labls_from: [a]\n",
        );
        let err = load_rules(&[f]).unwrap_err().to_string();
        assert!(err.contains("bad.yaml:"), "{err}");
        assert!(err.contains("labls_from"), "{err}");
    }

    #[test]
    fn duplicate_ids_and_bad_windows_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", GOOD);
        write(
            dir.path(),
            "b.yaml",
            "- id: a.one\n  severity: high\n  window: {size: 1m}\n  sql: SELECT 1\n\
             - id: b.slide\n  severity: high\n  window: {size: 1m, slide: 2m}\n  sql: SELECT 1\n",
        );
        let err = load_rules(&[dir.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate rule id"), "{err}");
        assert!(err.contains("b.yaml:5: rule b.slide: window"), "{err}");
    }

    #[test]
    fn rule_file_patterns_expand_as_globs_and_one_matching_nothing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("teams/ml/deep")).unwrap();
        write(d, "a.yaml", GOOD);
        write(
            &d.join("teams/ml/deep"),
            "b.yaml",
            "- id: b.one\n  severity: low\n  window: {size: 1m}\n  sql: SELECT 1\n",
        );
        write(&d.join("teams"), "notes.txt", "not a rule file");
        let got = rule_files(&[d.join("*.yaml"), d.join("teams/**/*.yaml")]).unwrap();
        assert_eq!(got, [d.join("a.yaml"), d.join("teams/ml/deep/b.yaml")]);
        let ids: Vec<String> = load_rules(&[d.join("**/*.yaml")])
            .unwrap()
            .iter()
            .map(|r| r.def.id.clone())
            .collect();
        assert_eq!(ids, ["a.one", "a.two", "b.one"]);
        let err = rule_files(&[d.join("teams/*.yaml")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("matches no file"), "{err}");
        let err = rule_files(&[d.join("teams/[.yaml")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rule_files: pattern"), "{err}");
        // A folder whose name holds a glob character is a folder, not a pattern.
        let odd = d.join("x[prod]");
        std::fs::create_dir_all(odd.join("rules")).unwrap();
        write(&odd.join("rules"), "c.yaml", GOOD);
        assert_eq!(
            rule_files(&[odd.join("rules")]).unwrap(),
            [odd.join("rules/c.yaml")]
        );
        assert_eq!(
            rule_files(&[odd.join("rules/*.yaml")]).unwrap(),
            [odd.join("rules/c.yaml")]
        );
    }

    #[test]
    fn fixed_labels_and_recording_rules_are_checked() {
        let bad = |extra: &str| {
            let text = format!(
                "- id: x.one\n  severity: low\n  window: {{size: 1m}}\n  sql: SELECT 'c' AS client_id\n  labels_from: [client_id]\n{extra}"
            );
            parse_rules(&text, Path::new("x.yaml"))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(bad("  labels: {team: ml}\n"), None);
        assert_eq!(bad("  alert: false\n"), None);
        for (extra, says) in [
            ("  labels: {client_id: x}\n", "both in labels"),
            ("  labels: {severity: x}\n", "set by inferwatch"),
            ("  labels: {9lives: x}\n", "label name"),
            ("  annotations: {run-book: x}\n", "is not a label name"),
            ("  alert: false\n  route: [ops]\n", "recording rule"),
        ] {
            let e = bad(extra).unwrap_or_else(|| panic!("{extra} should be refused"));
            assert!(e.contains(says), "{e}");
        }
        // A rule without the new keys keeps its fingerprint (its alert state restores).
        let plain = "- id: x.one\n  severity: low\n  window: {size: 1m}\n  sql: SELECT 1\n";
        let with = format!("{plain}  alert: true\n  labels: {{}}\n");
        let fp = |t: &str| {
            parse_rules(t, Path::new("x.yaml")).unwrap()[0]
                .fingerprint
                .clone()
        };
        assert_eq!(fp(plain), fp(&with));
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let err = load_rules(&["/nonexistent/queries".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/queries"), "{err}");
    }
}
