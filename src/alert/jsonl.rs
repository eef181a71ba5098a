//! Receiver that appends one JSON object per state change to a file, fsynced after each
//! window's notifications. The fields are part of the command contract (DESIGN.md).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Notification, Receiver};

pub struct JsonlReceiver {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlReceiver {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
        })
    }
}

impl Receiver for JsonlReceiver {
    fn name(&self) -> &str {
        "jsonl"
    }
    fn send(&mut self, n: &Notification) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, n)?;
        self.out.write_all(b"\n")
    }
    fn durable(&self) -> bool {
        true
    }
    fn cursor(&mut self) -> std::io::Result<Vec<(String, u64)>> {
        self.out.flush()?;
        Ok(vec![(
            self.name().to_owned(),
            self.out.get_ref().metadata()?.len(),
        )])
    }
    fn files(&self) -> Vec<(String, PathBuf)> {
        vec![(self.name().to_owned(), self.path.clone())]
    }
    fn rewind(&mut self, cursors: &BTreeMap<String, u64>) -> std::io::Result<()> {
        let Some(&cursor) = cursors.get(self.name()) else {
            return Ok(());
        };
        self.out.flush()?;
        self.out.get_ref().set_len(cursor)?;
        self.out.get_ref().sync_data()
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out
            .get_ref()
            .sync_data()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }
}
