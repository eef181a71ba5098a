//! Output files tied to the checkpoint that owns their cursor.
//!
//! A restart truncates each durable output file (alerts file, dead letters, the
//! notification outbox) back to the length a checkpoint recorded. That is only right
//! for the very file the checkpoint was written with: given another path, or a file
//! replaced meanwhile, truncating would cut (or NUL-pad) somebody else's data. So each
//! checkpoint records, per output, the file's path and a fingerprint of its bytes just
//! before the cursor, and a restart checks both before it touches the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes before the cursor that the fingerprint covers.
const TAIL: u64 = 4096;

/// Which file an output cursor belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    /// The file's path when the checkpoint was written (absolute when it could be made so).
    pub path: PathBuf,
    /// SHA-256 (hex) of the up to 4 KiB before the cursor.
    pub tail_sha256: String,
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

fn tail_hash(path: &Path, len: u64) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let from = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity((len - from) as usize);
    f.take(len - from).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len - from {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{} is shorter than {len} bytes", path.display()),
        ));
    }
    Ok(crate::stable_hash::hex(&Sha256::digest(&buf)))
}

/// The mark of `path` at cursor `len` (the file is flushed up to there).
pub fn mark(path: &Path, len: u64) -> std::io::Result<FileMark> {
    Ok(FileMark {
        path: absolute(path),
        tail_sha256: tail_hash(path, len)?,
    })
}

/// Checks that `path` is the file a checkpoint's cursor `cursor` (and `mark`, which
/// checkpoints before format 3 lack) belongs to; the reason when it is not.
pub fn check(what: &str, path: &Path, cursor: u64, mark: Option<&FileMark>) -> Result<(), String> {
    if let Some(m) = mark
        && absolute(path) != m.path
    {
        return Err(format!(
            "the checkpoint's {what} are in {}, but this run writes them to {}: give the same path again",
            m.path.display(),
            path.display()
        ));
    }
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if len < cursor {
        return Err(format!(
            "{} ({what}) holds {len} bytes, but the checkpoint wrote {cursor}: it was truncated or replaced; put the file back",
            path.display()
        ));
    }
    if let Some(m) = mark
        && cursor > 0
    {
        let now =
            tail_hash(path, cursor).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if now != m.tail_sha256 {
            return Err(format!(
                "{} ({what}) is not the file the checkpoint wrote (its bytes before offset {cursor} differ): put the file back",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_file_passes_and_others_are_refused_without_being_touched() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("alerts.jsonl");
        std::fs::write(&a, "one\ntwo\n").unwrap();
        let m = mark(&a, 4).unwrap();
        // Grown since: still the same file.
        std::fs::write(&a, "one\ntwo\nthree\n").unwrap();
        assert_eq!(check("alerts", &a, 4, Some(&m)), Ok(()));

        // Another path.
        let b = dir.path().join("other.jsonl");
        std::fs::write(&b, "one\ntwo\n").unwrap();
        let e = check("alerts", &b, 4, Some(&m)).unwrap_err();
        assert!(
            e.contains("alerts.jsonl") && e.contains("other.jsonl"),
            "{e}"
        );

        // Same path, other content.
        std::fs::write(&a, "ONE\ntwo\n").unwrap();
        let e = check("alerts", &a, 4, Some(&m)).unwrap_err();
        assert!(e.contains("not the file"), "{e}");

        // Shorter than the cursor (with or without a mark).
        std::fs::write(&a, "on").unwrap();
        assert!(
            check("alerts", &a, 4, Some(&m))
                .unwrap_err()
                .contains("holds 2 bytes")
        );
        assert!(
            check("alerts", &a, 4, None)
                .unwrap_err()
                .contains("holds 2 bytes")
        );
        assert_eq!(std::fs::read(&a).unwrap(), b"on", "a check never writes");
    }

    #[test]
    fn the_fingerprint_is_the_sha256_of_the_bytes_before_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("x");
        std::fs::write(&a, "abcdef").unwrap();
        // sha256("abc"), from coreutils' sha256sum.
        assert_eq!(
            mark(&a, 3).unwrap().tail_sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
