//! JSONL files (plain or gzip), one record per line, several files read side by side as
//! partitions so that each keeps its own watermark. With `follow`, a file at its end is
//! idle rather than done, and new lines are picked up as they are appended.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;
use serde::Deserialize;

use super::{Poll, Source, SourceError};
use crate::decode::{Oversized, PartitionId, RawBatch};

/// `source: {type: file, ...}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// JSONL files; a name ending in `.gz` is decompressed.
    pub paths: Vec<PathBuf>,
    /// Keep reading as lines are appended (like `tail -f`).
    #[serde(default)]
    pub follow: bool,
    /// Records per batch handed to the decoder.
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
}

fn default_batch_records() -> usize {
    8192
}

impl FileSourceConfig {
    pub fn replay(paths: Vec<PathBuf>) -> Self {
        Self {
            paths,
            follow: false,
            batch_records: default_batch_records(),
        }
    }
}

/// Bytes of an oversized record kept for its dead letter.
const OVERSIZED_HEAD: usize = 256;

struct LineReader {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    /// Position (in decompressed bytes) of the next unread byte.
    position: u64,
    /// A line cut by end of file in follow mode, completed on the next read.
    pending: Vec<u8>,
    pending_start: u64,
    pending_len: usize,
    done: bool,
    /// Bytes and records of the last batch read (the next one's capacity).
    last_batch: (usize, usize),
}

impl LineReader {
    fn open(path: &PathBuf) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Open {
            path: path.clone(),
            source,
        })?;
        let inner: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        };
        Ok(Self {
            path: path.clone(),
            reader: BufReader::with_capacity(1 << 18, inner),
            position: 0,
            pending: Vec::new(),
            pending_start: 0,
            pending_len: 0,
            done: false,
            last_batch: (0, 0),
        })
    }

    /// Reads up to `max_records` lines into `batch`. Returns true at end of file.
    /// Lines longer than `max_bytes` are never buffered whole: they become [`Oversized`].
    fn read_into(
        &mut self,
        batch: &mut RawBatch,
        max_records: usize,
        max_bytes: usize,
        follow: bool,
    ) -> Result<bool, SourceError> {
        while batch.records_read() < max_records {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(SourceError::Read {
                        path: self.path.clone(),
                        position: self.position,
                        source,
                    });
                }
            };
            if available.is_empty() {
                if !follow && self.pending_len > 0 {
                    self.finish_line(batch, max_bytes);
                }
                return Ok(true);
            }
            let (chunk, newline) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            if self.pending_len == 0 {
                self.pending_start = self.position;
            }
            let room = (max_bytes + 1).saturating_sub(self.pending.len());
            self.pending
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.pending_len += chunk.len();
            let used = chunk.len() + usize::from(newline);
            self.reader.consume(used);
            self.position += used as u64;
            if newline {
                self.finish_line(batch, max_bytes);
            }
        }
        Ok(false)
    }

    /// The position of the first byte not yet handed out in a record.
    fn resume_at(&self) -> u64 {
        if self.pending_len > 0 {
            self.pending_start
        } else {
            self.position
        }
    }

    /// Skips to `position` (a line start recorded by a checkpoint).
    fn skip_to(&mut self, position: u64) -> Result<(), SourceError> {
        let want = position.saturating_sub(self.position);
        let skipped = std::io::copy(&mut (&mut self.reader).take(want), &mut std::io::sink())
            .map_err(|source| SourceError::Read {
                path: self.path.clone(),
                position: self.position,
                source,
            })?;
        self.position += skipped;
        if skipped < want {
            return Err(SourceError::Resume(format!(
                "{} is shorter ({} bytes) than the checkpoint's position {position}: was it replaced?",
                self.path.display(),
                self.position
            )));
        }
        Ok(())
    }

    fn finish_line(&mut self, batch: &mut RawBatch, max_bytes: usize) {
        let mut line = &self.pending[..];
        if line.last() == Some(&b'\r') && self.pending_len <= max_bytes + 1 {
            line = &line[..line.len() - 1];
        }
        if self.pending_len > max_bytes && line.len() > max_bytes {
            batch.oversized.push(Oversized {
                position: self.pending_start,
                len: self.pending_len,
                head: line[..line.len().min(OVERSIZED_HEAD)].to_vec(),
            });
        } else if !line.iter().all(u8::is_ascii_whitespace) {
            batch.push(line, self.pending_start);
        }
        self.pending.clear();
        self.pending_len = 0;
    }
}

/// Reads several JSONL files round-robin, one batch of each in turn.
pub struct FileSource {
    readers: Vec<LineReader>,
    next: usize,
    follow: bool,
    batch_records: usize,
    max_record_bytes: usize,
    total_bytes: Option<u64>,
}

impl FileSource {
    pub fn open(config: &FileSourceConfig, max_record_bytes: usize) -> Result<Self, SourceError> {
        let readers = config
            .paths
            .iter()
            .map(LineReader::open)
            .collect::<Result<Vec<_>, _>>()?;
        let total_bytes = config
            .paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let any_gz = config
            .paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "gz"));
        Ok(Self {
            readers,
            next: 0,
            follow: config.follow,
            batch_records: config.batch_records.max(1),
            max_record_bytes,
            total_bytes: (!any_gz).then_some(total_bytes),
        })
    }
}

impl Source for FileSource {
    fn partitions(&self) -> Vec<String> {
        self.readers
            .iter()
            .map(|r| r.path.display().to_string())
            .collect()
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        let n = self.readers.len();
        for _ in 0..n {
            let pid: PartitionId = self.next;
            self.next = (self.next + 1) % n;
            let reader = &mut self.readers[pid];
            if reader.done {
                continue;
            }
            // Sized like the partition's previous batch and an eighth more: a batch a
            // little longer than the last does not regrow (copy) its buffers.
            let (bytes, records) = reader.last_batch;
            let mut batch =
                RawBatch::with_capacity(pid, (bytes + bytes / 8 + 4096, records + records / 8));
            let eof = reader.read_into(
                &mut batch,
                self.batch_records,
                self.max_record_bytes,
                self.follow,
            )?;
            batch.resume_at = reader.resume_at();
            reader.last_batch = (batch.buf.len(), batch.ends.len());
            if !batch.is_empty() {
                return Ok(Poll::Batch(batch));
            }
            if eof && !self.follow {
                reader.done = true;
                return Ok(Poll::PartitionDone(pid));
            }
        }
        if self.readers.iter().all(|r| r.done) {
            Ok(Poll::End)
        } else {
            Ok(Poll::Idle)
        }
    }

    fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }

    fn bytes_read(&self) -> u64 {
        self.readers.iter().map(|r| r.position).sum()
    }

    fn resume(
        &mut self,
        positions: &std::collections::BTreeMap<String, u64>,
    ) -> Result<(), SourceError> {
        for r in &mut self.readers {
            if let Some(&p) = positions.get(&r.path.display().to_string()) {
                r.skip_to(p)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &std::path::Path, max: usize) -> Vec<RawBatch> {
        let cfg = FileSourceConfig {
            paths: vec![path.to_owned()],
            follow: false,
            batch_records: 2,
        };
        let mut src = FileSource::open(&cfg, max).unwrap();
        let mut out = Vec::new();
        loop {
            match src.poll().unwrap() {
                Poll::Batch(b) => out.push(b),
                Poll::End => return out,
                _ => {}
            }
        }
    }

    #[test]
    fn lines_positions_blank_lines_and_oversized_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let long = "x".repeat(100);
        std::fs::write(&path, format!("{{\"a\":1}}\r\n\n  \n{long}\n{{\"b\":2}}")).unwrap();
        let batches = read_all(&path, 50);
        let records: Vec<(Vec<u8>, u64)> = batches
            .iter()
            .flat_map(|b| (0..b.len()).map(move |i| (b.record(i).to_vec(), b.positions[i])))
            .collect();
        assert_eq!(
            records,
            vec![(b"{\"a\":1}".to_vec(), 0), (b"{\"b\":2}".to_vec(), 114)]
        );
        let over: Vec<_> = batches.iter().flat_map(|b| b.oversized.clone()).collect();
        assert_eq!(over.len(), 1);
        assert_eq!((over[0].position, over[0].len), (13, 100));
    }

    #[test]
    fn gzip_files_are_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n").unwrap();
        enc.finish().unwrap();
        let n: usize = read_all(&path, 1000).iter().map(RawBatch::len).sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn follow_mode_picks_up_appended_lines_and_completes_cut_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("live.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":").unwrap();
        let cfg = FileSourceConfig {
            paths: vec![path.clone()],
            follow: true,
            batch_records: 100,
        };
        let mut src = FileSource::open(&cfg, 1000).unwrap();
        let Poll::Batch(b) = src.poll().unwrap() else {
            panic!("expected a batch")
        };
        assert_eq!(b.len(), 1, "the cut line waits for its end");
        assert!(matches!(src.poll().unwrap(), Poll::Idle));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"2}\n{\"a\":3}\n").unwrap();
        let Poll::Batch(b) = src.poll().unwrap() else {
            panic!("expected a batch")
        };
        assert_eq!((b.record(0), b.positions[0]), (&b"{\"a\":2}"[..], 8));
        assert_eq!(b.record(1), b"{\"a\":3}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let cfg = FileSourceConfig::replay(vec!["/nonexistent/x.jsonl".into()]);
        let err = FileSource::open(&cfg, 10).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/x.jsonl"));
        assert!(err.is_usage());
    }
}
