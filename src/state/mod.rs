//! Checkpoints: all state of a run in one file, so a restart loses and repeats nothing.
//!
//! A checkpoint holds the source positions and everything those records built: open
//! windows (their rows as Arrow IPC), alert states with their `for` and
//! `keep_firing_for` progress, the summary counts, and the length of each durable
//! output (alerts file, dead letters) at that moment, so that a restart truncates what
//! was written after it and writes it again, identically, instead of twice.
//!
//! File layout (version 2): `IWCKPT\r\n`, format version (u32 LE), metadata length
//! (u64 LE), metadata (JSON), rows length (u64 LE), rows (Arrow IPC stream of every open
//! pane's batches, in order), state length (u64 LE), the client profiles and the drift
//! reference (postcard: compact binary serde; 0 bytes when there is neither), SHA-256 of
//! everything before it. Written to a temporary file, fsynced, then renamed over
//! `checkpoint.bin`; the one it replaces is kept as
//! `checkpoint.prev.bin`, the fallback when the newest is truncated or corrupt.
//!
//! Version 7 adds a section after the client section: its length (u64 LE) and the
//! delayed labels' state (postcard; 0 bytes without labels).
//!
//! Version 3 adds, per output file, its path and a fingerprint (`output::FileMark`), and
//! the event-time guard's state per partition; versions 2 and 1 (client state inside the
//! JSON metadata, no binary section) are still read.
//!
//! A checkpoint also exists from the first record on: a run with a state directory and
//! no checkpoint writes one before it reads anything, so output written before the first
//! regular checkpoint is rewound like any other.
//! Client profiles are most of a checkpoint's size: as JSON, 75,000 of them took 49 MB
//! and 0.65 s to encode, and the copy-on-write profiles stayed shared for that long.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alert::RuleAlertsState;
use crate::telemetry::Summary;
use crate::window::WindowsState;

pub mod output;

const MAGIC: &[u8; 8] = b"IWCKPT\r\n";
/// Bumped whenever the layout or the meaning of a field changes. Format 4: one rolling
/// reference for the drift tables and the client statistics (before: one each).
/// Format 5: client profiles judge typicality and keep their recent inputs as points.
/// Format 6: client profiles count low-margin answers.
/// Format 7: a section for the delayed labels' state after the client section.
/// Format 8: client profiles hold input identities of a keyed hash (SipHash-1-3), and
/// a check of the key they were made with.
pub const FORMAT: u32 = 8;
const CURRENT: &str = "checkpoint.bin";
const PREVIOUS: &str = "checkpoint.prev.bin";
const TEMP: &str = "checkpoint.tmp";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: checkpoint is damaged: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("cannot encode a checkpoint: {0}")]
    Encode(String),
    #[error(
        "{path}: {why}; start with --reset-state to discard it (alert and window state is lost)"
    )]
    Incompatible { path: PathBuf, why: String },
}

/// Everything a restart needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub inferwatch: String,
    /// Wall-clock time of writing (for people; nothing depends on it).
    pub written_at: String,
    /// Fingerprint of the `events` schema the rows were decoded with.
    pub events_schema: String,
    /// Per source partition (by name), where to resume.
    pub positions: BTreeMap<String, u64>,
    pub windows: WindowsState,
    pub alerts: Vec<RuleAlertsState>,
    pub summary: Summary,
    /// Length of each durable output when the checkpoint was taken.
    pub cursors: BTreeMap<String, u64>,
    /// Per output file cursor, which file it belongs to (format 3).
    #[serde(default)]
    pub marks: BTreeMap<String, output::FileMark>,
    /// Per-client profiles (`client_stats`/`client_profile`), in the binary section.
    #[serde(skip)]
    pub clients: Option<crate::tables::clients::ClientsSnapshot>,
    /// Format 1 kept the client state (with its own reference) in the metadata.
    #[serde(default, skip_serializing, rename = "clients")]
    pub legacy_clients: Option<crate::tables::clients::LegacyClientsSnapshot>,
    /// What the re-scorer keeps: suspects and the results windows may still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescore: Option<crate::rescore::rescorer::RescoreState>,
    /// Delayed labels: predictions waiting, labels read ahead, the tallies (in the
    /// binary section, format 7).
    #[serde(skip)]
    pub labels: Option<Vec<u8>>,
    /// The rolling reference (in the binary section).
    #[serde(skip)]
    pub reference: Option<crate::tables::reference::ReferenceSnapshot>,
    #[serde(skip)]
    pub rows: Vec<RecordBatch>,
}

/// The fingerprint of the `events` schema a checkpoint's rows were decoded with: SHA-256
/// of an explicit, versioned text of the fields (name, type, nullability), so it stays
/// the same across Arrow releases. 16 hex digits.
pub fn schema_fingerprint(schema: &SchemaRef) -> String {
    let mut text = String::from("schema/1\n");
    for f in schema.fields() {
        field_text(f, &mut text);
        text.push('\n');
    }
    crate::stable_hash::hex(&Sha256::digest(text.as_bytes())[..8])
}

/// The fingerprint releases before `schema/1` wrote (Arrow's `Debug` of the fields); a
/// checkpoint carrying it is accepted when the schema is the same.
pub fn legacy_schema_fingerprint(schema: &SchemaRef) -> String {
    let mut h = Sha256::new();
    h.update(format!("{:?}", schema.fields()).as_bytes());
    crate::stable_hash::hex(&h.finalize()[..8])
}

fn field_text(f: &datafusion::arrow::datatypes::Field, out: &mut String) {
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use std::fmt::Write;
    let _ = write!(out, "{}:", f.name().escape_default());
    match f.data_type() {
        DataType::Utf8 => out.push_str("utf8"),
        DataType::LargeUtf8 => out.push_str("large_utf8"),
        DataType::Float64 => out.push_str("f64"),
        DataType::Float32 => out.push_str("f32"),
        DataType::Int64 => out.push_str("i64"),
        DataType::Int32 => out.push_str("i32"),
        DataType::UInt64 => out.push_str("u64"),
        DataType::Boolean => out.push_str("bool"),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            let _ = write!(out, "timestamp({unit},{})", tz.as_deref().unwrap_or(""));
        }
        DataType::List(item) => {
            out.push_str("list(");
            field_text(item, out);
            out.push(')');
        }
        DataType::Struct(fields) => {
            out.push_str("struct(");
            for (i, c) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                field_text(c, out);
            }
            out.push(')');
        }
        // Types the decoder does not make; Arrow's own name, which may change.
        other => {
            let _ = write!(out, "arrow:{other}");
        }
    }
    out.push_str(if f.is_nullable() { "?" } else { "!" });
}

/// Serializes a checkpoint (off the hot path: the rows are shared, not copied, until
/// here).
pub fn encode(cp: &Checkpoint, schema: &SchemaRef) -> Result<Vec<u8>, String> {
    let meta = serde_json::to_vec(cp).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut rows, schema).map_err(|e| e.to_string())?;
        for b in &cp.rows {
            w.write(b).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    let labels: &[u8] = cp.labels.as_deref().unwrap_or_default();
    let mut out = Vec::with_capacity(meta.len() + rows.len() + labels.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    out.extend_from_slice(&rows);
    drop(rows);
    // The client state is encoded in place (it is the largest part), its length
    // filled in after.
    let at = out.len();
    out.extend_from_slice(&0u64.to_le_bytes());
    if cp.clients.is_some() || cp.reference.is_some() {
        out = postcard::to_extend(&(&cp.clients, &cp.reference), out)
            .map_err(|e| format!("client state and reference: {e}"))?;
    }
    let clients_len = (out.len() - at - 8) as u64;
    out[at..at + 8].copy_from_slice(&clients_len.to_le_bytes());
    out.extend_from_slice(&(labels.len() as u64).to_le_bytes());
    out.extend_from_slice(labels);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Parses a checkpoint, checking its checksum and version.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Checkpoint, StateError> {
    let corrupt = |why: &str| StateError::Corrupt {
        path: path.to_owned(),
        why: why.to_owned(),
    };
    if bytes.len() < MAGIC.len() + 4 + 32 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not an inferwatch checkpoint, or truncated"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(corrupt("checksum mismatch (truncated or altered)"));
    }
    let mut at = MAGIC.len();
    let mut take = |n: usize| -> Result<&[u8], StateError> {
        let s = body
            .get(at..at + n)
            .ok_or_else(|| corrupt("shorter than its lengths say"))?;
        at += n;
        Ok(s)
    };
    let format = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
    if !(1..=FORMAT).contains(&format) {
        return Err(StateError::Incompatible {
            path: path.to_owned(),
            why: format!("checkpoint format {format}, this inferwatch reads formats 1 to {FORMAT}"),
        });
    }
    let meta_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
    let meta = take(meta_len)?;
    let mut cp: Checkpoint =
        serde_json::from_slice(meta).map_err(|e| corrupt(&format!("metadata: {e}")))?;
    let rows_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
    let rows = take(rows_len)?;
    let reader = StreamReader::try_new(Cursor::new(rows), None)
        .map_err(|e| corrupt(&format!("rows: {e}")))?;
    cp.rows = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(&format!("rows: {e}")))?;
    let mut legacy: (
        Option<crate::tables::clients::LegacyClientsSnapshot>,
        Option<crate::tables::reference::legacy::DriftSnapshot>,
    ) = (cp.legacy_clients.take(), None);
    if format >= 2 {
        let clients_len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let clients = take(clients_len)?;
        if !clients.is_empty() && format >= 4 {
            use crate::tables::clients::{
                ClientsSnapshot, ClientsSnapshotV4, ClientsSnapshotV5, ClientsSnapshotV7,
            };
            let section = match format {
                4 => clients_as::<ClientsSnapshotV4>(clients),
                5 => clients_as::<ClientsSnapshotV5>(clients),
                6 | 7 => clients_as::<ClientsSnapshotV7>(clients),
                _ => clients_as::<ClientsSnapshot>(clients),
            };
            (cp.clients, cp.reference) =
                section.map_err(|e| corrupt(&format!("client state and reference: {e}")))?;
        } else if !clients.is_empty() {
            legacy = postcard::from_bytes(clients)
                .map_err(|e| corrupt(&format!("client and drift state: {e}")))?;
        }
    }
    if format >= 7 {
        let len = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
        let labels = take(len)?;
        if !labels.is_empty() {
            crate::labels::Labels::decode(labels).map_err(|e| corrupt(&e))?;
            cp.labels = Some(labels.to_vec());
        }
    }
    // Before format 4 the client statistics and the drift tables each had a reference:
    // merged into the one of today.
    if format < 4 && (legacy.0.is_some() || legacy.1.is_some()) {
        let (clients, drift) = legacy;
        let (pooled, until) = match clients {
            Some(c) => {
                let (c, windows, until) = c.upgrade();
                cp.clients = Some(c);
                (windows, until)
            }
            None => (Vec::new(), i64::MIN),
        };
        cp.reference = Some(crate::tables::reference::legacy::merge(
            drift, pooled, until,
        ));
    }
    Ok(cp)
}

/// The client section of a checkpoint as format's snapshot type `S` holds it (from
/// format 4 on: client state, then the reference), upgraded to today's.
#[allow(clippy::type_complexity)]
fn clients_as<S>(
    bytes: &[u8],
) -> Result<
    (
        Option<crate::tables::clients::ClientsSnapshot>,
        Option<crate::tables::reference::ReferenceSnapshot>,
    ),
    postcard::Error,
>
where
    S: serde::de::DeserializeOwned + Into<crate::tables::clients::ClientsSnapshot>,
{
    let (clients, reference): (
        Option<S>,
        Option<crate::tables::reference::ReferenceSnapshot>,
    ) = postcard::from_bytes(bytes)?;
    Ok((clients.map(Into::into), reference))
}

/// File of the state directory holding the key of the reference samples' hash.
const SAMPLE_KEY: &str = "sample.key";

/// The secret key of the reference samples' hash: made once per state directory (from
/// the OS's random source), then read back, so that a deployment samples the same way
/// across restarts. Never printed.
pub fn sample_key(dir: &Path) -> Result<u64, StateError> {
    let path = dir.join(SAMPLE_KEY);
    let io = |source| StateError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(b) => {
            let bytes: [u8; 8] =
                b.get(..8)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| StateError::Corrupt {
                        path: path.clone(),
                        why: "shorter than 8 bytes".into(),
                    })?;
            Ok(u64::from_le_bytes(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            let key: u64 = rand::random();
            let temp = dir.join("sample.key.tmp");
            let mut f = {
                let mut o = OpenOptions::new();
                o.create(true).write(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                o.open(&temp).map_err(io)?
            };
            f.write_all(&key.to_le_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            std::fs::rename(&temp, &path).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes `bytes` as the newest checkpoint in `dir`, keeping the previous one.
pub fn write(dir: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let temp = dir.join(TEMP);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&temp)
        .map_err(io(&temp))?;
    f.write_all(bytes).map_err(io(&temp))?;
    f.sync_all().map_err(io(&temp))?;
    drop(f);
    let current = dir.join(CURRENT);
    if current.exists() {
        std::fs::rename(&current, dir.join(PREVIOUS)).map_err(io(&current))?;
    }
    std::fs::rename(&temp, &current).map_err(io(&temp))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The newest valid checkpoint in `dir`, with a warning when the newest file was
/// damaged and the previous one is used. None when there is none.
pub fn load(dir: &Path) -> Result<Option<(Checkpoint, PathBuf, Option<String>)>, StateError> {
    let mut warning = None;
    for name in [CURRENT, PREVIOUS] {
        let path = dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StateError::Io { path, source }),
        };
        match decode(&bytes, &path) {
            Ok(cp) => return Ok(Some((cp, path, warning))),
            Err(e @ StateError::Corrupt { .. }) => {
                warning = Some(format!("{e}; using the previous checkpoint"));
            }
            Err(e) => return Err(e),
        }
    }
    match warning {
        // Every checkpoint there is damaged: starting empty would repeat everything.
        Some(w) => Err(StateError::Incompatible {
            path: dir.to_owned(),
            why: w.replace(
                "; using the previous checkpoint",
                " and no usable previous checkpoint",
            ),
        }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Checkpoint, SchemaRef) {
        let decode = crate::decode::DecodeConfig::default();
        let schema = decode.events_schema();
        let windows = crate::window::Windows::new(&[], 1, std::time::Duration::ZERO, 1);
        let (state, rows) = windows.snapshot(&["a.jsonl".into()]);
        let cp = Checkpoint {
            inferwatch: "test".into(),
            written_at: "now".into(),
            events_schema: schema_fingerprint(&schema),
            positions: BTreeMap::from([("a.jsonl".into(), 42)]),
            windows: state,
            alerts: Vec::new(),
            summary: Summary::default(),
            cursors: BTreeMap::new(),
            marks: BTreeMap::new(),
            clients: None,
            legacy_clients: None,
            reference: None,
            rescore: None,
            labels: None,
            rows,
        };
        (cp, schema)
    }

    #[test]
    fn the_schema_fingerprint_is_sha256_of_a_documented_text() {
        use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("request_id", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new(
                "features",
                DataType::Struct(Fields::from(vec![
                    Field::new("f0", DataType::Float64, true),
                    Field::new(
                        "tags",
                        DataType::List(std::sync::Arc::new(Field::new(
                            "item",
                            DataType::Utf8,
                            true,
                        ))),
                        true,
                    ),
                ])),
                true,
            ),
        ]));
        // Python: hashlib.sha256(b"schema/1\nrequest_id:utf8!\nts:timestamp(ms,UTC)!\n
        // features:struct(f0:f64?,tags:list(item:utf8?)?)?\n").hexdigest()[:16]
        assert_eq!(schema_fingerprint(&schema), "070935013efd0305");
        assert_ne!(
            legacy_schema_fingerprint(&schema),
            schema_fingerprint(&schema)
        );
    }

    #[test]
    fn round_trip_and_fallback_to_the_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (mut cp, schema) = sample();
        write(dir.path(), &encode(&cp, &schema).unwrap()).unwrap();
        cp.positions.insert("a.jsonl".into(), 99);
        write(dir.path(), &encode(&cp, &schema).unwrap()).unwrap();
        let (got, _, warning) = load(dir.path()).unwrap().unwrap();
        assert_eq!(got.positions["a.jsonl"], 99);
        assert!(warning.is_none());

        // A flipped byte in the newest: the previous one is used, with a warning.
        let current = dir.path().join(CURRENT);
        let mut bytes = std::fs::read(&current).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&current, &bytes).unwrap();
        let (got, path, warning) = load(dir.path()).unwrap().unwrap();
        assert_eq!(got.positions["a.jsonl"], 42);
        assert!(path.ends_with(PREVIOUS));
        assert!(warning.unwrap().contains("checksum"));

        // Truncated as well: both damaged is an error, not a silent fresh start.
        std::fs::write(dir.path().join(PREVIOUS), &bytes[..20]).unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("--reset-state"), "{err}");
    }

    #[test]
    fn another_format_version_is_incompatible() {
        let (cp, schema) = sample();
        let mut bytes = encode(&cp, &schema).unwrap();
        bytes[MAGIC.len()] = FORMAT as u8 + 1;
        let body_len = bytes.len() - 32;
        let sum = Sha256::digest(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&sum);
        let err = decode(&bytes, Path::new("x")).unwrap_err();
        assert!(matches!(err, StateError::Incompatible { .. }), "{err}");
    }

    /// Format 1 kept the client state in the JSON metadata and had no client section.
    #[test]
    fn a_format_1_checkpoint_is_still_read_with_its_client_state() {
        let (cp, schema) = sample();
        let mut meta = serde_json::to_value(&cp).unwrap();
        // As format 1 wrote it: the client statistics' own reference in `windows`
        // (a sample's numbers as their bits: 1.5 and a missing value).
        meta["clients"] = serde_json::json!({
            "windows": [[{"key": 7, "num": [1.5f64.to_bits(), f64::NAN.to_bits()], "cat": ["x", ""]}]],
            "profiles": [],
            "consumed_until": 60_000,
            "usage": crate::telemetry::ClientsUsage::default(),
        });
        let meta = serde_json::to_vec(&meta).unwrap();
        let v2 = encode(&cp, &schema).unwrap();
        // The rows section of the format 2 encoding, unchanged in format 1.
        let at = MAGIC.len() + 4;
        let v2_meta = u64::from_le_bytes(v2[at..at + 8].try_into().unwrap()) as usize;
        let rows_at = at + 8 + v2_meta;
        let rows_len = u64::from_le_bytes(v2[rows_at..rows_at + 8].try_into().unwrap()) as usize;
        let rows = &v2[rows_at..rows_at + 8 + rows_len];
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        v1.extend_from_slice(&meta);
        v1.extend_from_slice(rows);
        let sum = Sha256::digest(&v1);
        v1.extend_from_slice(&sum);
        let got = decode(&v1, Path::new("x")).unwrap();
        assert_eq!(got.positions["a.jsonl"], 42);
        assert_eq!(got.clients.map(|c| c.clients()), Some(0));
        // Its reference is the one reference now, its sample read back value for value.
        let r = crate::tables::reference::Reference::new(
            &[],
            &Default::default(),
            0,
            std::iter::empty(),
        );
        r.restore(got.reference.unwrap());
        let w = r.before(i64::MAX);
        assert_eq!(w.len(), 1);
        let pooled = w[0].pooled(256);
        assert_eq!(pooled.len(), 1);
        assert_eq!(pooled[0].key, 7);
        assert_eq!(pooled[0].num, [Some(1.5), None]);
        assert_eq!(pooled[0].cat, [Some("x".to_owned()), None]);
        // And today's format carries no client section when there is no client state.
        assert!(decode(&v2, Path::new("x")).unwrap().clients.is_none());
    }

    /// Format 7 held input identities of an unkeyed hash: restored, they are
    /// forgotten, the profiles kept.
    #[test]
    fn a_format_7_checkpoint_forgets_its_input_identities() {
        use crate::decode::{FeatureDecl, FeatureKind};
        let features = vec![FeatureDecl {
            name: "x".into(),
            kind: FeatureKind::Numerical,
        }];
        let reference = crate::tables::reference::Reference::new(
            &features,
            &Default::default(),
            0,
            std::iter::empty(),
        );
        let config = crate::tables::clients::ClientsConfig::default();
        let clients = crate::tables::clients::Clients::new(&features, &config, &[], reference);
        let records: Vec<_> = (0..3)
            .map(|i| {
                serde_json::json!({"request_id": format!("r{i}"), "client_id": "q",
                    "model": "m", "features": {"x": i}, "prediction": {"label": "L"}})
            })
            .collect();
        let window = crate::tables::test_support::minute_window(0, features.clone(), &records);
        clients.computed(&window).unwrap();
        let (mut cp, schema) = sample();
        cp.clients = Some(clients.snapshot());
        let today = encode(&cp, &schema).unwrap();
        // As format 7 wrote it: the client section without the key check, which comes
        // last before the (absent: one 0 byte) reference.
        let read_len =
            |at: usize| u64::from_le_bytes(today[at..at + 8].try_into().unwrap()) as usize;
        let meta_at = MAGIC.len() + 4;
        let rows_at = meta_at + 8 + read_len(meta_at);
        let clients_at = rows_at + 8 + read_len(rows_at);
        let section = &today[clients_at + 8..clients_at + 8 + read_len(clients_at)];
        let check =
            postcard::to_extend(&cp.clients.as_ref().unwrap().key_check(), Vec::new()).unwrap();
        let (kept, tail) = section.split_at(section.len() - 1 - check.len());
        assert_eq!(tail, [&check[..], &[0]].concat());
        let mut old = today[..MAGIC.len()].to_vec();
        old.extend_from_slice(&7u32.to_le_bytes());
        old.extend_from_slice(&today[meta_at..clients_at]);
        old.extend_from_slice(&(kept.len() as u64 + 1).to_le_bytes());
        old.extend_from_slice(kept);
        old.push(0);
        // No labels.
        old.extend_from_slice(&0u64.to_le_bytes());
        let sum = Sha256::digest(&old);
        old.extend_from_slice(&sum);
        let restored = |bytes: &[u8]| {
            let reference = crate::tables::reference::Reference::new(
                &features,
                &Default::default(),
                0,
                std::iter::empty(),
            );
            let c = crate::tables::clients::Clients::new(&features, &config, &[], reference);
            c.restore(decode(bytes, Path::new("x")).unwrap().clients.unwrap());
            (c.usage().clients, c.input_identities())
        };
        assert_eq!(restored(&today), (1, 3));
        assert_eq!(restored(&old), (1, 0));
    }

    #[test]
    fn no_directory_means_no_checkpoint() {
        assert!(load(Path::new("/nonexistent/state")).unwrap().is_none());
    }
}
