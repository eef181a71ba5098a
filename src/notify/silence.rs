//! The one store of silences: label matchers with a start and an end (wall clock). It
//! holds the config's `notify.silences` (replaced on every reload, never written) and
//! the silences made through the API (kept in `<state_dir>/silences.json` so they
//! survive restarts). The dispatcher mutes what it matches; the HTTP API lists both kinds
//! and makes or expires the API's own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Matcher;

/// The body of `POST /api/v1/silences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Alertmanager matchers, e.g. `client_id="batch-7"`.
    pub matchers: Vec<String>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339, after `starts_at`.
    pub ends_at: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

/// A silence as stored and listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Silence {
    /// `config-<i>` for the i-th silence of the config; a hash for the API's.
    pub id: String,
    pub matchers: Vec<String>,
    pub starts_at: String,
    pub ends_at: String,
    pub comment: String,
    pub created_by: String,
    #[serde(skip)]
    parsed: Vec<Matcher>,
    #[serde(skip)]
    start_ms: i64,
    #[serde(skip)]
    end_ms: i64,
}

/// A silence with its status at the time of asking.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub silence: Silence,
    /// `pending` (not started), `active` or `expired`.
    pub status: &'static str,
    /// `config` (from `notify.silences`) or `api`.
    pub origin: &'static str,
}

/// What expiring a silence did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Now,
    NoSuchSilence,
    /// The silence comes from the config: it ends when the config says so.
    FromConfig,
}

#[derive(Debug, Default)]
pub struct Silences {
    path: Option<PathBuf>,
    /// The API's silences.
    list: RwLock<Vec<Silence>>,
    /// The config's silences, as of the last (re)load.
    config: RwLock<Vec<Silence>>,
}

/// The config's silences, checked (`notify.silences[i]: …` on an error). A silence
/// without `starts_at` holds from the start of time (listed as 1970-01-01).
pub fn from_config(config: &[super::Silence]) -> Result<Vec<Silence>, String> {
    const ALWAYS: &str = "1970-01-01T00:00:00.000Z";
    config
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.matchers.is_empty() {
                return Err(format!(
                    "notify.silences[{i}]: a silence needs at least one matcher"
                ));
            }
            prepare(Silence {
                id: format!("config-{i}"),
                matchers: s.matchers.clone(),
                starts_at: s.starts_at.clone().unwrap_or_else(|| ALWAYS.to_owned()),
                ends_at: s.ends_at.clone(),
                comment: s.comment.clone(),
                created_by: "config".into(),
                parsed: Vec::new(),
                start_ms: 0,
                end_ms: 0,
            })
            .map_err(|e| format!("notify.silences[{i}]: {e}"))
        })
        .collect()
}

fn prepare(mut s: Silence) -> Result<Silence, String> {
    s.parsed = super::route::parse_all(&s.matchers)?;
    s.start_ms = crate::time::parse_rfc3339("starts_at", &s.starts_at)?;
    s.end_ms = crate::time::parse_rfc3339("ends_at", &s.ends_at)?;
    Ok(s)
}

impl Silences {
    /// Loads `path` when it exists; new silences are written there.
    pub fn open(path: Option<PathBuf>) -> Result<Silences, String> {
        let mut list = Vec::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let saved: Vec<Silence> = serde_json::from_slice(&bytes).map_err(|e| {
                        format!(
                            "{} is damaged ({e}); move it away to start without API silences",
                            p.display()
                        )
                    })?;
                    for s in saved {
                        list.push(prepare(s).map_err(|e| format!("{}: {e}", p.display()))?);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
            }
        }
        Ok(Silences {
            path,
            list: RwLock::new(list),
            config: RwLock::new(Vec::new()),
        })
    }

    /// Puts the config's silences (from [`from_config`]) in place of the previous ones.
    pub fn replace_config(&self, silences: Vec<Silence>) {
        *self.config.write().expect("silences lock") = silences;
    }

    fn save(&self, list: &[Silence]) -> Result<(), String> {
        let Some(p) = &self.path else { return Ok(()) };
        let tmp = p.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            let f = std::fs::File::create(&tmp)?;
            serde_json::to_writer_pretty(&f, list)?;
            f.sync_all()?;
            std::fs::rename(&tmp, p)
        };
        write().map_err(|e| format!("cannot write {}: {e}", p.display()))
    }

    /// Adds a silence; returns its id.
    pub fn create(&self, req: NewSilence) -> Result<String, String> {
        if req.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        let now = chrono::Utc::now();
        let starts_at = req
            .starts_at
            .unwrap_or_else(|| now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let mut h = Sha256::new();
        for m in &req.matchers {
            h.update(m.as_bytes());
            h.update([0]);
        }
        h.update(starts_at.as_bytes());
        h.update(now.timestamp_nanos_opt().unwrap_or_default().to_be_bytes());
        let s = prepare(Silence {
            id: crate::stable_hash::hex(&h.finalize()[..8]),
            matchers: req.matchers,
            starts_at,
            ends_at: req.ends_at,
            comment: req.comment,
            created_by: req.created_by,
            parsed: Vec::new(),
            start_ms: 0,
            end_ms: 0,
        })?;
        if s.end_ms <= s.start_ms {
            return Err("ends_at must be after starts_at".into());
        }
        let id = s.id.clone();
        let mut list = self.list.write().expect("silences lock");
        list.push(s);
        self.save(&list)?;
        Ok(id)
    }

    /// Ends one of the API's silences now.
    pub fn expire(&self, id: &str) -> Result<Expired, String> {
        let mut list = self.list.write().expect("silences lock");
        let Some(s) = list.iter_mut().find(|s| s.id == id) else {
            let config = self.config.read().expect("silences lock");
            return Ok(if config.iter().any(|s| s.id == id) {
                Expired::FromConfig
            } else {
                Expired::NoSuchSilence
            });
        };
        let now = chrono::Utc::now();
        if s.end_ms > now.timestamp_millis() {
            s.end_ms = now.timestamp_millis();
            s.ends_at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            if s.start_ms > s.end_ms {
                s.start_ms = s.end_ms;
                s.starts_at = s.ends_at.clone();
            }
        }
        self.save(&list)?;
        Ok(Expired::Now)
    }

    /// Every silence, the config's first, with its status at `now`.
    pub fn list(&self, now: i64) -> Vec<Listed> {
        let config = self.config.read().expect("silences lock");
        let api = self.list.read().expect("silences lock");
        let listed = |origin: &'static str| {
            move |s: &Silence| Listed {
                status: if now < s.start_ms {
                    "pending"
                } else if now < s.end_ms {
                    "active"
                } else {
                    "expired"
                },
                origin,
                silence: s.clone(),
            }
        };
        config
            .iter()
            .map(listed("config"))
            .chain(api.iter().map(listed("api")))
            .collect()
    }

    /// Ids of the silences (config and API) active at `now` that match these labels.
    pub fn matching(&self, labels: &BTreeMap<String, String>, now: i64) -> Vec<String> {
        let config = self.config.read().expect("silences lock");
        let api = self.list.read().expect("silences lock");
        config
            .iter()
            .chain(api.iter())
            .filter(|s| {
                s.start_ms <= now && now < s.end_ms && s.parsed.iter().all(|m| m.matches(labels))
            })
            .map(|s| s.id.clone())
            .collect()
    }

    /// The config's silences now in force.
    pub fn config_silences(&self) -> Vec<Silence> {
        self.config.read().expect("silences lock").clone()
    }

    /// Whether a silence active at `now` matches these labels.
    pub fn silences(&self, labels: &BTreeMap<String, String>, now: i64) -> bool {
        !self.matching(labels, now).is_empty()
    }
}
