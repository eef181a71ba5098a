//! What a source hands to the decoder: a partition's records, undecoded, each with its
//! position in the partition, so that decoding, dead letters, evidence and checkpoints
//! can all say where a record came from.

/// Index of a partition in the list a source reports (a replay file, a Kafka partition).
pub type PartitionId = usize;

/// Records of one partition, undecoded, in arrival order.
///
/// Record `i` is `buf[start(i)..ends[i]]`; records are separated by one `\n` so the whole
/// buffer can be handed to the JSON decoder at once.
#[derive(Debug, Default, Clone)]
pub struct RawBatch {
    pub partition: PartitionId,
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
    /// Position of each record in its partition (byte offset in a file, Kafka offset).
    pub positions: Vec<u64>,
    /// Records refused for their size before they were buffered.
    pub oversized: Vec<Oversized>,
    /// Where to resume this partition once the batch is processed (a checkpoint
    /// stores it).
    pub resume_at: u64,
}

/// A record longer than `max_record_bytes`: only its head is kept, for the dead letter.
#[derive(Debug, Clone)]
pub struct Oversized {
    pub position: u64,
    pub len: usize,
    pub head: Vec<u8>,
}

impl RawBatch {
    pub fn new(partition: PartitionId) -> Self {
        Self {
            partition,
            ..Default::default()
        }
    }

    /// An empty batch with room for `bytes` bytes in `records` records.
    pub fn with_capacity(partition: PartitionId, (bytes, records): (usize, usize)) -> Self {
        Self {
            partition,
            buf: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
            positions: Vec::with_capacity(records),
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty() && self.oversized.is_empty()
    }

    /// Number of records this batch accounts for, oversized ones included.
    pub fn records_read(&self) -> usize {
        self.ends.len() + self.oversized.len()
    }

    pub fn record(&self, i: usize) -> &[u8] {
        &self.buf[self.start(i)..self.ends[i]]
    }

    /// Offset in `buf` where record `i` starts.
    pub fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] + 1 }
    }

    /// Appends one record; `bytes` must not contain a newline.
    pub fn push(&mut self, bytes: &[u8], position: u64) {
        if !self.ends.is_empty() {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(bytes);
        self.ends.push(self.buf.len());
        self.positions.push(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_batch_records_round_trip() {
        let mut b = RawBatch::new(0);
        b.push(b"{\"a\":1}", 0);
        b.push(b"", 8);
        b.push(b"xyz", 9);
        assert_eq!(b.record(0), b"{\"a\":1}");
        assert_eq!(b.record(1), b"");
        assert_eq!(b.record(2), b"xyz");
        assert_eq!(b.buf, b"{\"a\":1}\n\nxyz");
    }
}
