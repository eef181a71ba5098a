//! Property tests of the decode → guard → window path over hostile records: whatever
//! the traffic sends, nothing panics, every record is accounted for exactly once (a
//! row, a bad record, a late one or a refused one), and no refused record moves a clock.

use std::time::Duration;

use proptest::prelude::*;

use super::guard::GuardConfig;
use super::{WindowSpec, Windows};
use crate::decode::RawBatch;
use crate::decode::{BatchDecoder, DecodeConfig, FeatureDecl, FeatureKind};

fn decoder() -> BatchDecoder {
    BatchDecoder::new(&DecodeConfig {
        features: vec![
            FeatureDecl {
                name: "amount".into(),
                kind: FeatureKind::Numerical,
            },
            FeatureDecl {
                name: "country".into(),
                kind: FeatureKind::Categorical,
            },
        ],
        ..Default::default()
    })
    .unwrap()
}

const T0: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

/// An event time as the traffic may write it: plausible, extreme, or not a time at all.
fn ts() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0i64..3_600_000).prop_map(|d| (T0 + d).to_string()),
        1 => Just(i64::MAX.to_string()),
        1 => Just(i64::MIN.to_string()),
        1 => Just("0".to_owned()),
        1 => Just("-1".to_owned()),
        1 => Just("1e308".to_owned()),
        1 => Just("\"9999-12-31T23:59:59Z\"".to_owned()),
        1 => Just("\"0000-01-01T00:00:00Z\"".to_owned()),
        1 => Just("\"NaN\"".to_owned()),
        1 => any::<i64>().prop_map(|t| t.to_string()),
        1 => (0i64..1000).prop_map(|d| (T0 + 86_400_000 * d).to_string()),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (-1e6f64..1e6).prop_map(|x| x.to_string()),
        1 => Just("1e308".to_owned()),
        1 => Just("-1e308".to_owned()),
        1 => Just("\"NaN\"".to_owned()),
        1 => Just("\"Infinity\"".to_owned()),
        1 => Just("\"-Infinity\"".to_owned()),
        1 => Just("NaN".to_owned()),
        1 => Just("null".to_owned()),
    ]
}

/// One record: mostly well-formed with hostile values, sometimes structurally hostile.
fn record() -> impl Strategy<Value = Vec<u8>> {
    let fields = (ts(), "[a-z0-9]{0,3}", number(), "[A-Z]{0,2}").prop_map(|(ts, client, amount, country)| {
        format!(
            r#"{{"ts":{ts},"request_id":"r","client_id":"{client}","model":"m","features":{{"amount":{amount},"country":"{country}"}}}}"#
        )
        .into_bytes()
    });
    prop_oneof![
        8 => fields,
        1 => (1usize..100_000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => Just(br#"{"ts":1795255200000,"ts":9223372036854775807,"client_id":"a","client_id":"b"}"#.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => Just(b"{\"ts\":1795255200000,\"client_id\":\"\xff\xfe\"}".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_records_are_each_accounted_for_once_and_never_panic(
        batches in proptest::collection::vec(proptest::collection::vec(record(), 1..40), 1..6),
        partitions in 1usize..3,
    ) {
        let d = decoder();
        let spec = WindowSpec { size_ms: 60_000, slide_ms: 30_000, grace_ms: 0 };
        let mut w = Windows::new(&[spec], partitions, Duration::from_secs(5), 60);
        let guard = GuardConfig { confirmations: 3, ..GuardConfig::default() };
        w.set_guard(guard);
        let (mut total, mut accounted, mut rows, mut in_windows) = (0u64, 0u64, 0u64, 0u64);
        let mut position = 0u64;
        for (i, records) in batches.iter().enumerate() {
            let pid = i % partitions;
            let mut raw = RawBatch::new(pid);
            for r in records {
                // A record is one line: newlines inside it would split it.
                let r: Vec<u8> = r.iter().map(|&b| if b == b'\n' { b' ' } else { b }).collect();
                raw.push(&r, position);
                position += r.len() as u64 + 1;
                total += 1;
            }
            let out = d.decode(&raw);
            accounted += out.dead.len() as u64;
            if let Some(events) = &out.events {
                let positions: Vec<u64> = out.rows.iter().map(|&r| raw.positions[r as usize]).collect();
                let bad: Vec<u64> = out.dead.iter().map(|x| x.position).collect();
                let ingested = w.ingest(pid, events, &positions, &bad);
                accounted += (ingested.late_rows.len() + ingested.refused.len()) as u64;
                rows += (events.num_rows() - ingested.late_rows.len() - ingested.refused.len()) as u64;
                // Refused rows never move a clock past the plausible range.
                for p in &w.partitions {
                    if let Some(m) = p.max_ts {
                        prop_assert!(m >= guard.min_ms && m < guard.max_ms, "clock {m}");
                    }
                }
            } else {
                w.count_bad(pid, out.dead.len() as u64);
            }
            for closed in w.close_ready() {
                prop_assert!(closed.start_ms < closed.end_ms);
                in_windows += closed.batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
            }
        }
        let closed = w.close_all();
        for c in &closed {
            prop_assert!(c.start_ms < c.end_ms);
        }
        // Every admitted row is in exactly size/slide = 2 windows, each closed once.
        for c in &closed {
            in_windows += c.batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        }
        prop_assert_eq!(accounted + rows, total);
        prop_assert_eq!(in_windows, 2 * rows);
    }
}
