//! Lists of earlier inputs kept in a profile (PRADA's points per class, the last
//! distinct inputs), stored flat: every point's standardized numeric features one after
//! another in one buffer, its categories in another. One allocation per list instead of
//! two per point, and a nearest-point scan reads memory in order.
//!
//! A checkpoint holds a list as it always did, a sequence of (features, categories)
//! pairs: the encoding is the same bytes as the `Vec<(Vec<f64>, Vec<u32>)>` it replaces.

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Points of one width (numeric features, categories), in the order they came.
#[derive(Default, Clone, Debug, PartialEq)]
pub(crate) struct Points {
    /// Numeric features and categories of every point.
    width: (u32, u32),
    z: Vec<f64>,
    cat: Vec<u32>,
    len: usize,
}

impl Points {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Point `i`: its standardized numeric features and its categories.
    pub(crate) fn get(&self, i: usize) -> (&[f64], &[u32]) {
        let (nz, nc) = self.width();
        (
            &self.z[i * nz..(i + 1) * nz],
            &self.cat[i * nc..(i + 1) * nc],
        )
    }

    /// Numeric features and categories of a point.
    pub(crate) fn width(&self) -> (usize, usize) {
        (self.width.0 as usize, self.width.1 as usize)
    }

    /// Every point's numeric features one after another, and their categories.
    pub(crate) fn flat(&self) -> (&[f64], &[u32]) {
        (&self.z, &self.cat)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[f64], &[u32])> + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    /// Appends a point. A point of another width than the list's (its features were
    /// declared otherwise) cannot be compared with them: the list starts again from it.
    pub(crate) fn push(&mut self, z: &[f64], cat: &[u32]) {
        if !self.fits(z, cat) {
            self.z.clear();
            self.cat.clear();
            self.len = 0;
            self.width = (z.len() as u32, cat.len() as u32);
        }
        self.z.extend_from_slice(z);
        self.cat.extend_from_slice(cat);
        self.len += 1;
    }

    fn fits(&self, z: &[f64], cat: &[u32]) -> bool {
        self.width == (z.len() as u32, cat.len() as u32)
    }

    /// Replaces point `i` by a point of the list's width.
    fn set(&mut self, i: usize, z: &[f64], cat: &[u32]) {
        let (nz, nc) = self.width();
        self.z[i * nz..(i + 1) * nz].copy_from_slice(z);
        self.cat[i * nc..(i + 1) * nc].copy_from_slice(cat);
    }

    /// Heap bytes held, with `alloc` bytes of allocator overhead per allocation.
    pub(crate) fn heap_bytes(&self, alloc: usize) -> usize {
        let buffer = |bytes: usize| if bytes == 0 { 0 } else { bytes + alloc };
        buffer(self.z.capacity() * 8) + buffer(self.cat.capacity() * 4)
    }
}

impl Serialize for Points {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len))?;
        for point in self.iter() {
            seq.serialize_element(&point)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Points {
    /// Points of another width than the first one's are left out (no checkpoint of ours
    /// mixes widths, and one of other features is refused for its events schema).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> Visitor<'de> for Seq {
            type Value = Points;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of (features, categories) points")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Points, A::Error> {
                let mut points = Points::default();
                while let Some((z, cat)) = seq.next_element::<(Vec<f64>, Vec<u32>)>()? {
                    if points.is_empty() || points.fits(&z, &cat) {
                        points.push(&z, &cat);
                    }
                }
                Ok(points)
            }
        }
        d.deserialize_seq(Seq)
    }
}

/// The last `cap` distinct inputs of a client: a ring over [`Points`] (no allocation
/// once full). Checkpoints hold them oldest first.
#[derive(Default, Clone, Debug, PartialEq)]
pub(crate) struct Recent {
    points: Points,
    /// Once full, the slot of the oldest point (overwritten next).
    oldest: usize,
}

impl Recent {
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The points, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[f64], &[u32])> + '_ {
        self.points.iter()
    }

    /// Keeps a point, forgetting the oldest when `cap` are kept.
    pub(crate) fn remember(&mut self, z: &[f64], cat: &[u32], cap: usize) {
        if self.points.len() < cap || !self.points.fits(z, cat) {
            // Filling up, or starting again at another width: the first is the oldest.
            self.oldest = 0;
            self.points.push(z, cat);
        } else {
            self.points.set(self.oldest, z, cat);
            self.oldest = (self.oldest + 1) % self.points.len();
        }
    }

    /// Oldest first.
    fn in_order(&self) -> impl Iterator<Item = (&[f64], &[u32])> + '_ {
        (self.oldest..self.len())
            .chain(0..self.oldest)
            .map(|i| self.points.get(i))
    }

    pub(crate) fn heap_bytes(&self, alloc: usize) -> usize {
        self.points.heap_bytes(alloc)
    }
}

impl Serialize for Recent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for point in self.in_order() {
            seq.serialize_element(&point)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Recent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Recent {
            points: Points::deserialize(d)?,
            oldest: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Point = (Vec<f64>, Vec<u32>);

    fn bytes_of<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_extend(v, Vec::new()).unwrap()
    }

    fn points(list: &[Point]) -> Points {
        let mut p = Points::default();
        for (z, c) in list {
            p.push(z, c);
        }
        p
    }

    #[test]
    fn a_checkpoint_holds_the_same_bytes_as_a_list_of_pairs() {
        let list: Vec<Point> = vec![
            (vec![0.5, -1.0, 2.25], vec![3]),
            (vec![1e300, 0.0, -0.0], vec![u32::MAX]),
            (vec![f64::MIN_POSITIVE, 7.0, 8.0], vec![0]),
        ];
        let flat = points(&list);
        let bytes = bytes_of(&flat);
        assert_eq!(bytes, bytes_of(&list));
        let back: Points = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, flat);
        let pairs: Vec<(Vec<f64>, Vec<u32>)> =
            back.iter().map(|(z, c)| (z.to_vec(), c.to_vec())).collect();
        assert_eq!(pairs, list);
        let empty = Points::default();
        assert_eq!(bytes_of(&empty), bytes_of(&Vec::<Point>::new()));
    }

    #[test]
    fn points_without_features_are_still_counted() {
        let list: Vec<Point> = vec![(vec![], vec![]); 3];
        let flat = points(&list);
        assert_eq!(flat.len(), 3);
        assert_eq!(flat.iter().count(), 3);
        assert_eq!(bytes_of(&flat), bytes_of(&list));
    }

    #[test]
    fn a_point_of_another_width_starts_the_list_again() {
        let mut p = points(&[(vec![1.0, 2.0], vec![]), (vec![3.0, 4.0], vec![])]);
        p.push(&[5.0], &[9]);
        assert_eq!(p.len(), 1);
        assert_eq!(p.get(0), (&[5.0][..], &[9][..]));
        // A checkpoint that mixes widths keeps those of the first point's width.
        let mixed: Vec<Point> = vec![
            (vec![1.0], vec![]),
            (vec![2.0, 3.0], vec![]),
            (vec![4.0], vec![]),
        ];
        let read: Points = postcard::from_bytes(&bytes_of(&mixed)).unwrap();
        assert_eq!(read, points(&[(vec![1.0], vec![]), (vec![4.0], vec![])]));
    }

    #[test]
    fn the_ring_keeps_the_last_points_and_writes_them_oldest_first() {
        let mut r = Recent::default();
        for i in 0..7 {
            r.remember(&[i as f64], &[i], 4);
        }
        let kept: Vec<Point> = (3..7).map(|i| (vec![i as f64], vec![i])).collect();
        let mut seen: Vec<Point> = r.iter().map(|(z, c)| (z.to_vec(), c.to_vec())).collect();
        seen.sort_by(|a, b| a.0[0].total_cmp(&b.0[0]));
        assert_eq!(seen, kept);
        let bytes = bytes_of(&r);
        assert_eq!(bytes, bytes_of(&kept));
        // Read back, it goes on forgetting the oldest.
        let mut back: Recent = postcard::from_bytes(&bytes).unwrap();
        back.remember(&[7.0], &[7], 4);
        let kept: Vec<Point> = (4..8).map(|i| (vec![i as f64], vec![i])).collect();
        assert_eq!(bytes_of(&back), bytes_of(&kept));
    }
}
