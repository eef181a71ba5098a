//! The dead-letter sink: every record that could not become a row (undecodable, too
//! big, no event time or client id) or came too late, with the reason, where it came
//! from and its raw bytes. To a file (one JSON object per line) and/or a Kafka topic
//! (the raw bytes as the message, the rest as headers; one too big for the topic is
//! sent truncated, with the whole record's size and SHA-256 in headers). Nothing is
//! dropped silently.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;

use crate::decode::DeadRecord;
use crate::kafka::{KafkaOut, KafkaOutConfig};
use crate::telemetry::Counters;

/// Checkpoint cursor name of the dead-letter file; the topic's are `dead_letters_kafka/<p>`.
const FILE_CURSOR: &str = "dead_letters";
const TOPIC_CURSOR: &str = "dead_letters_kafka";

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeadKind {
    /// Could not be decoded.
    Bad,
    /// Event time behind the watermark on arrival.
    Late,
    /// A delayed label that cannot be joined (see `labels`).
    Label,
}

impl DeadKind {
    fn as_str(self) -> &'static str {
        match self {
            DeadKind::Bad => "bad",
            DeadKind::Late => "late",
            DeadKind::Label => "label",
        }
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    kind: DeadKind,
    reason: &'a str,
    source: &'a str,
    position: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    /// The raw bytes, when they are not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
}

pub struct DeadLetters {
    out: Option<(PathBuf, BufWriter<File>)>,
    /// Written to the file since its last sync.
    unsynced: bool,
    topic: Option<KafkaOut>,
}

impl DeadLetters {
    /// Appends to `path` and/or sends to a topic; with neither, dead letters are only
    /// counted. A dead letter too big for the topic is sent truncated (see `kafka::producer`),
    /// counted in `counters`.
    pub fn open(
        path: Option<&Path>,
        topic: Option<&KafkaOutConfig>,
        counters: Arc<Counters>,
    ) -> Result<Self, String> {
        let mut dead =
            Self::open_file(path).map_err(|e| format!("cannot open the dead-letter file: {e}"))?;
        if let Some(c) = topic {
            dead.topic =
                Some(KafkaOut::open(c, counters).map_err(|e| format!("dead-letter topic: {e}"))?);
        }
        Ok(dead)
    }

    fn open_file(path: Option<&Path>) -> std::io::Result<Self> {
        let out = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(p)?;
                Some((p.to_owned(), BufWriter::new(f)))
            }
            None => None,
        };
        Ok(Self {
            out,
            unsynced: false,
            topic: None,
        })
    }

    pub fn write(&mut self, kind: DeadKind, source: &str, rec: &DeadRecord) -> std::io::Result<()> {
        if let Some(topic) = self.topic.as_mut() {
            let position = rec.position.to_string();
            let key = format!("{source}@{position}:{}", kind.as_str());
            let mut headers = vec![
                ("kind", kind.as_str()),
                ("reason", rec.reason.as_str()),
                ("source", source),
                ("position", position.as_str()),
            ];
            // A Kafka source's partitions are named `topic/partition`.
            if let Some((t, p)) = source.rsplit_once('/')
                && p.parse::<i32>().is_ok()
            {
                headers.extend([
                    ("source_topic", t),
                    ("source_partition", p),
                    ("source_offset", position.as_str()),
                ]);
            }
            topic.send(None, &rec.raw, &key, &headers)?;
        }
        let Some((_, out)) = self.out.as_mut() else {
            return Ok(());
        };
        let text = std::str::from_utf8(&rec.raw).ok();
        let entry = Entry {
            kind,
            reason: &rec.reason,
            source,
            position: rec.position,
            raw: text,
            raw_base64: text
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&rec.raw)),
        };
        self.unsynced = true;
        serde_json::to_writer(&mut *out, &entry)?;
        out.write_all(b"\n")
    }

    /// Where the file and the topic end, for a checkpoint (flushes first).
    pub fn cursor(&mut self) -> std::io::Result<Vec<(String, u64)>> {
        let mut cursors = Vec::new();
        if let Some((_, out)) = self.out.as_mut() {
            out.flush()?;
            cursors.push((FILE_CURSOR.to_owned(), out.get_ref().metadata()?.len()));
        }
        if let Some(topic) = self.topic.as_mut() {
            cursors.extend(topic.named_cursor(TOPIC_CURSOR)?);
        }
        Ok(cursors)
    }

    /// The file behind the file cursor.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        self.out
            .iter()
            .map(|(p, _)| (FILE_CURSOR.to_owned(), p.clone()))
            .collect()
    }

    /// Goes back to a checkpoint: truncates the file, and learns which dead letters the
    /// topic already holds (a restart writes the same ones again).
    pub fn rewind(&mut self, cursors: &BTreeMap<String, u64>) -> std::io::Result<()> {
        if let Some((_, out)) = self.out.as_mut()
            && let Some(&cursor) = cursors.get(FILE_CURSOR)
        {
            out.flush()?;
            out.get_ref().set_len(cursor)?;
        }
        if let Some(topic) = self.topic.as_mut() {
            topic.rewind_named(TOPIC_CURSOR, cursors)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some(topic) = self.topic.as_mut() {
            topic.flush()?;
        }
        // Only what was written since the last sync goes to disk: a window without
        // dead letters costs no sync.
        match self.out.as_mut() {
            Some((path, out)) if self.unsynced => {
                out.flush()?;
                out.get_ref().sync_data().map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                self.unsynced = false;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
