//! A stable hash: the same value in every process, build and version (std's hashers
//! are seeded per process). Reference samples (bottom-k by the hash of the request id)
//! and input identities depend on it, so that replay and Kafka, and a run before and
//! after a restart, pick the same records.

use std::hash::{Hash, Hasher};

/// FNV-1a with a final mix (nearby inputs give unrelated values).
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // A final mix so that nearby inputs give unrelated values.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub fn hash_of(v: impl Hash) -> u64 {
    let mut h = Fnv::default();
    v.hash(&mut h);
    h.finish()
}
