//! The dead-letter sink: every record that could not become a row (undecodable, too
//! big, no event time or client id) or came too late, with the reason, where it came
//! from and its raw bytes, as one JSON object per line. Nothing is dropped silently.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::decode::DeadRecord;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeadKind {
    /// Could not be decoded.
    Bad,
    /// Event time behind the watermark on arrival.
    Late,
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
}

impl DeadLetters {
    /// Appends to `path`; with None, dead letters are only counted.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
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
        Ok(Self { out })
    }

    pub fn write(&mut self, kind: DeadKind, source: &str, rec: &DeadRecord) -> std::io::Result<()> {
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
        serde_json::to_writer(&mut *out, &entry)?;
        out.write_all(b"\n")
    }

    /// Length of the file (for checkpoints); None without a file.
    pub fn cursor(&mut self) -> std::io::Result<Option<u64>> {
        match self.out.as_mut() {
            Some((_, out)) => {
                out.flush()?;
                Ok(Some(out.get_ref().metadata()?.len()))
            }
            None => Ok(None),
        }
    }

    /// Drops what was written after `cursor` (a restart writes it again).
    pub fn rewind(&mut self, cursor: u64) -> std::io::Result<()> {
        if let Some((_, out)) = self.out.as_mut() {
            out.flush()?;
            out.get_ref().set_len(cursor)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some((path, out)) => {
                out.flush()?;
                out.get_ref()
                    .sync_data()
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
            }
            None => Ok(()),
        }
    }
}
