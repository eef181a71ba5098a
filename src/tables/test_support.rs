//! What the table tests share: a closed one-minute window decoded from JSON records.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::decode::{BatchDecoder, DecodeConfig, FeatureDecl, RawBatch};
use crate::window::{ClosedWindow, WindowSpec, WindowStats};

pub const MINUTE: i64 = 60_000;

/// Minute `minute`'s window holding `records`, decoded with `features`; record `i` gets
/// `ts` = the window's start + `i` ms. Every record must decode.
pub fn minute_window(minute: i64, features: Vec<FeatureDecl>, records: &[Value]) -> ClosedWindow {
    let config = DecodeConfig {
        features,
        ..DecodeConfig::default()
    };
    let decoder = BatchDecoder::new(&config).unwrap();
    let start = minute * MINUTE;
    let mut raw = RawBatch::new(0);
    for (i, r) in records.iter().enumerate() {
        let mut r = r.clone();
        r["ts"] = json!(crate::time::rfc3339(start + i as i64));
        raw.push(&serde_json::to_vec(&r).unwrap(), i as u64);
    }
    let decoded = decoder.decode(&raw);
    assert!(decoded.dead.is_empty(), "{:?}", decoded.dead.first());
    ClosedWindow {
        spec: WindowSpec {
            size_ms: MINUTE,
            slide_ms: MINUTE,
            grace_ms: 0,
        },
        start_ms: start,
        end_ms: start + MINUTE,
        batches: decoded.events.into_iter().collect(),
        stats: WindowStats::default(),
        ranges: BTreeMap::new(),
    }
}
