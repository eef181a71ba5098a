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

/// Lower-case hexadecimal of `bytes` (digests and ids).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_of(v: impl Hash) -> u64 {
    let mut h = Fnv::default();
    v.hash(&mut h);
    h.finish()
}

impl Fnv {
    /// FNV-1a that starts from a secret state: whoever does not know `key` cannot tell
    /// which inputs hash low (the reference samples keep the lowest).
    pub fn keyed(key: u64) -> Self {
        let mut h = Fnv::default();
        h.write(&key.to_le_bytes());
        h
    }
}

/// The keyed hash of `v` (see [`Fnv::keyed`]).
pub fn keyed_hash_of(key: u64, v: impl Hash) -> u64 {
    let mut h = Fnv::keyed(key);
    v.hash(&mut h);
    h.finish()
}

/// Most records one client may put in a window's reference sample of `k`: an eighth,
/// so that no client (and no handful of clients) can fill the reference with its own.
pub fn per_client_share(k: usize) -> usize {
    (k / 8).max(1)
}

/// A bottom-k sample of `(key, client, item)` candidates, in key order: the smallest
/// keys, a repeated key (the same request id sent again) once, and at most
/// `per_client` items from one client, so that no client fills a reference with its
/// own records.
pub fn bottom_k<T>(c: Vec<(u64, u64, T)>, k: usize, per_client: usize) -> Vec<(u64, T)> {
    let mut idx: Vec<usize> = (0..c.len()).collect();
    let order = |i: &usize| (c[*i].0, c[*i].1);
    // Most windows need only a few more than k candidates: select those first, and
    // sort everything only when repeats and capped clients leave the sample short.
    let margin = k.saturating_mul(4).max(64);
    let chosen = if idx.len() > margin {
        idx.select_nth_unstable_by_key(margin, order);
        let mut head = idx[..margin].to_vec();
        head.sort_unstable_by_key(order);
        let got = pick(&c, &head, k, per_client);
        if got.len() >= k {
            got
        } else {
            idx.sort_unstable_by_key(order);
            pick(&c, &idx, k, per_client)
        }
    } else {
        idx.sort_unstable_by_key(order);
        pick(&c, &idx, k, per_client)
    };
    let mut slots: Vec<Option<(u64, u64, T)>> = c.into_iter().map(Some).collect();
    chosen
        .into_iter()
        .filter_map(|i| slots[i].take().map(|(key, _, item)| (key, item)))
        .collect()
}

/// The first `k` of `sorted` (indices into `c`) that are neither a repeated key nor
/// over their client's share.
fn pick<T>(c: &[(u64, u64, T)], sorted: &[usize], k: usize, per_client: usize) -> Vec<usize> {
    let mut per: std::collections::HashMap<u64, usize> = Default::default();
    let mut out: Vec<usize> = Vec::with_capacity(k);
    let mut last: Option<u64> = None;
    for &i in sorted {
        if out.len() >= k {
            break;
        }
        let (key, client, _) = &c[i];
        if last == Some(*key) {
            continue;
        }
        let n = per.entry(*client).or_default();
        if *n < per_client {
            *n += 1;
            last = Some(*key);
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottom_k_takes_the_smallest_keys_once_each_and_caps_every_client() {
        // Keys 0..100; client 7 holds the 40 smallest, key 41 is sent three times.
        let mut c: Vec<(u64, u64, u64)> = (0..100u64)
            .map(|k| (k, if k < 40 { 7 } else { k }, k))
            .collect();
        c.extend([(41, 41, 1000), (41, 41, 1001)]);
        let s = bottom_k(c.clone(), 20, 5);
        let keys: Vec<u64> = s.iter().map(|(k, _)| *k).collect();
        // 5 of client 7 (keys 0-4), then 40.. without repeating 41.
        let want: Vec<u64> = (0..5).chain(40..55).collect();
        assert_eq!(keys, want);
        // Past the selection margin, the same answer as sorting everything.
        let many: Vec<(u64, u64, u64)> = (0..10_000u64).rev().map(|k| (k, k % 3, k)).collect();
        let s = bottom_k(many, 30, 4);
        assert_eq!(
            s.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_keyed_hash_depends_on_the_key() {
        assert_ne!(keyed_hash_of(1, "r-1"), keyed_hash_of(2, "r-1"));
        assert_eq!(keyed_hash_of(1, "r-1"), keyed_hash_of(1, "r-1"));
    }
}
