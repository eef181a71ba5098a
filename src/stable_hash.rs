//! A stable hash: the same value in every process, build, platform and release
//! (std's hashers are seeded per process, and `std::hash::Hash` does not promise its
//! byte stream). Reference samples (bottom-k by the hash of the request id) and
//! coverage cells depend on it, so that replay and Kafka, and a run before and after a
//! restart, pick the same records.

/// FNV-1a with a final mix (nearby inputs give unrelated values), over bytes this
/// module spells out: integers little-endian, text as its UTF-8 bytes then `0xff`.
/// (Not `std::hash::Hash`, whose byte stream Rust does not promise to keep: reference
/// samples and identities are persisted in checkpoints and compared across releases.)
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// FNV-1a that starts from a secret state: whoever does not know `key` cannot tell
    /// which inputs hash low (the reference samples keep the lowest).
    pub fn keyed(key: u64) -> Self {
        let mut h = Fnv::default();
        h.write(&key.to_le_bytes());
        h
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn write_u8(&mut self, v: u8) {
        self.write(&[v]);
    }

    pub fn write_u32(&mut self, v: u32) {
        self.write(&v.to_le_bytes());
    }

    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    pub fn write_i64(&mut self, v: i64) {
        self.write(&v.to_le_bytes());
    }

    /// Text: its bytes, then `0xff` (which UTF-8 never holds), so that `("ab", "c")`
    /// and `("a", "bc")` differ.
    pub fn write_str(&mut self, s: &str) {
        self.write(s.as_bytes());
        self.write_u8(0xff);
    }

    pub fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

/// A value with a fixed byte encoding for [`Fnv`]; tuples encode their fields in order.
pub trait StableBytes {
    fn put(&self, h: &mut Fnv);
}

impl StableBytes for str {
    fn put(&self, h: &mut Fnv) {
        h.write_str(self);
    }
}

impl StableBytes for String {
    fn put(&self, h: &mut Fnv) {
        h.write_str(self);
    }
}

impl StableBytes for u64 {
    fn put(&self, h: &mut Fnv) {
        h.write_u64(*self);
    }
}

impl StableBytes for i64 {
    fn put(&self, h: &mut Fnv) {
        h.write_i64(*self);
    }
}

/// As a `u64`, on every platform.
impl StableBytes for usize {
    fn put(&self, h: &mut Fnv) {
        h.write_u64(*self as u64);
    }
}

/// `None` as the number 0, `Some(v)` as 1 then `v`.
impl<T: StableBytes> StableBytes for Option<T> {
    fn put(&self, h: &mut Fnv) {
        match self {
            None => h.write_u64(0),
            Some(v) => {
                h.write_u64(1);
                v.put(h);
            }
        }
    }
}

impl<T: StableBytes + ?Sized> StableBytes for &T {
    fn put(&self, h: &mut Fnv) {
        (**self).put(h);
    }
}

macro_rules! tuple_bytes {
    ($($t:ident $i:tt),+) => {
        impl<$($t: StableBytes),+> StableBytes for ($($t,)+) {
            fn put(&self, h: &mut Fnv) {
                $(self.$i.put(h);)+
            }
        }
    };
}
tuple_bytes!(A 0, B 1);
tuple_bytes!(A 0, B 1, C 2);
tuple_bytes!(A 0, B 1, C 2, D 3);

/// Lower-case hexadecimal of `bytes` (digests and ids).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hash_of(v: impl StableBytes) -> u64 {
    let mut h = Fnv::default();
    v.put(&mut h);
    h.finish()
}

/// The keyed hash of `v` (see [`Fnv::keyed`]).
pub fn keyed_hash_of(key: u64, v: impl StableBytes) -> u64 {
    let mut h = Fnv::keyed(key);
    v.put(&mut h);
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

    /// The values come from this Python, which follows the encoding in the docs:
    /// ```python
    /// M = 2**64 - 1
    /// def fnv(b, h=0xcbf29ce484222325):
    ///     for x in b: h = ((h ^ x) * 0x100000001b3) & M
    ///     return h
    /// def mix(x):
    ///     x ^= x >> 33; x = (x * 0xff51afd7ed558ccd) & M; return x ^ (x >> 33)
    /// s = lambda t: t.encode() + b"\xff"
    /// u = lambda n: (n & M).to_bytes(8, "little")
    /// mix(fnv(s("r-1")))
    /// mix(fnv(s("r-1"), fnv(u(7))))            # keyed with 7
    /// mix(fnv(s("sample") + s("") + s("r-9")))
    /// mix(fnv(u(3) + s("amount")))             # (3usize, "amount")
    /// mix(fnv(u(-5) + s("c") + u(2) + s("m")))  # (-5i64, "c", 2usize, "m")
    /// mix(fnv(u(1) + s("r") + u(5) + u(0)))     # (Some("r"), 5i64, None)
    /// ```
    #[test]
    fn hashes_follow_the_documented_bytes() {
        assert_eq!(hash_of("r-1"), 0x74bd_8b46_ab1b_d0cf);
        assert_eq!(keyed_hash_of(7, "r-1"), 0xb5e6_955a_4abc_ce20);
        assert_eq!(hash_of(("sample", "", "r-9")), 0x853b_1707_d17c_111e);
        assert_eq!(hash_of((3usize, "amount")), 0x7aab_c6df_31e1_1df2);
        assert_eq!(hash_of((-5i64, "c", 2usize, "m")), 0x0fec_8f51_7a13_8a17);
        assert_eq!(
            hash_of((Some("r"), 5i64, None::<&str>)),
            0x6100_c654_21d4_51a2
        );
        // `String` and `&str` are the same text.
        assert_eq!(hash_of("r-1".to_owned()), hash_of("r-1"));
    }

    #[test]
    fn the_keyed_hash_depends_on_the_key() {
        assert_ne!(keyed_hash_of(1, "r-1"), keyed_hash_of(2, "r-1"));
        assert_eq!(keyed_hash_of(1, "r-1"), keyed_hash_of(1, "r-1"));
    }
}
