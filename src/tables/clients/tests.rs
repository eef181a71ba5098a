//! The per-client statistics against values a reader can compute by hand, on a
//! reference of the hundred values 0, 1, …, 99 (one category): its 0.5 % and 99.5 %
//! quantiles are 0.495 and 98.505 and its quartile edges 24.75, 49.5 and 74.25 (NumPy's
//! linear interpolation, position q·99), its population standard deviation
//! √((100² − 1)/12) = 28.8661, and each value x has the quantile rank
//! #{y < x}/100. Every client below is in the window after the reference's.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use serde_json::{Value, json};

use super::{Clients, ClientsConfig, InputKey};
use crate::decode::{FeatureDecl, FeatureKind};
use crate::window::ClosedWindow;

fn features() -> Vec<FeatureDecl> {
    vec![
        FeatureDecl {
            name: "x".into(),
            kind: FeatureKind::Numerical,
        },
        FeatureDecl {
            name: "c".into(),
            kind: FeatureKind::Categorical,
        },
    ]
}

/// Minute `minute`'s window; the records get `ts` one millisecond apart, in order.
fn window(minute: i64, records: &[Value]) -> ClosedWindow {
    crate::tables::test_support::minute_window(minute, features(), records)
}

fn query(client: &str, i: usize, x: f64, c: &str) -> Value {
    json!({
        "request_id": format!("{client}-{i}"), "client_id": client, "model": "m",
        "features": {"x": x, "c": c},
        "prediction": {"label": "L", "probs": [0.9, 0.1]},
    })
}

/// A client's queries with these values of x (category "a").
fn client(name: &str, xs: &[f64]) -> Vec<Value> {
    xs.iter()
        .enumerate()
        .map(|(i, &x)| query(name, i, x, "a"))
        .collect()
}

/// The reference traffic: x = 0..99 once each, category "a".
fn reference() -> Vec<Value> {
    // One query per client: no client is over the share a typicality or near-duplicate
    // yardstick takes from one client.
    (0..100)
        .map(|i| query(&format!("ref-{i}"), 0, f64::from(i), "a"))
        .collect()
}

/// Client statistics with a reference of their own, of the size the config's moved
/// setting says.
fn clients_with(cfg: &ClientsConfig) -> std::sync::Arc<Clients> {
    let d = crate::tables::reference::ReferenceConfig::default();
    let rc = crate::tables::reference::ReferenceConfig {
        sample: cfg.reference_sample.unwrap_or(d.sample),
        windows: cfg.reference_windows.unwrap_or(d.windows),
        ..d
    };
    let reference = crate::tables::reference::Reference::new(&features(), &rc, 0, []);
    Clients::new(&features(), cfg, &[], reference)
}

fn config() -> ClientsConfig {
    ClientsConfig {
        // Every record of a window is in its sample (a client may fill an eighth).
        reference_sample: Some(8000),
        ..ClientsConfig::default()
    }
}

/// Per client, the named column of a table.
fn column(b: &RecordBatch, name: &str) -> BTreeMap<String, Option<f64>> {
    let clients = b.column_by_name("client_id").unwrap().as_string::<i32>();
    let col = b.column_by_name(name).unwrap();
    (0..b.num_rows())
        .map(|i| {
            let v = if col.is_null(i) {
                None
            } else if let Some(u) = col.as_primitive_opt::<UInt64Type>() {
                Some(u.value(i) as f64)
            } else {
                Some(col.as_primitive::<Float64Type>().value(i))
            };
            (clients.value(i).to_owned(), v)
        })
        .collect()
}

fn close(got: Option<f64>, want: f64) -> bool {
    got.is_some_and(|g| (g - want).abs() <= 1e-12 * want.abs().max(1.0))
}

/// The `client_stats` of the window after the reference's, holding `records`.
fn stats_after_reference(cfg: &ClientsConfig, records: &[Value]) -> RecordBatch {
    let c = clients_with(cfg);
    c.computed(&window(0, &reference())).unwrap();
    c.computed(&window(1, records)).unwrap().stats.clone()
}

/// The client reference of samples given as (client, numbers), one category each.
fn reference_of(
    samples: impl Iterator<Item = (u64, Vec<Option<f64>>)>,
    n_num: usize,
) -> super::Reference {
    let samples: Vec<crate::tables::reference::Sample> = samples
        .enumerate()
        .map(|(i, (client, num))| crate::tables::reference::Sample {
            key: i as u64,
            client,
            num,
            cat: vec![Some("a".into())],
            label: None,
            score: None,
        })
        .collect();
    let refs: Vec<&crate::tables::reference::Sample> = samples.iter().collect();
    super::Reference::build(&refs, n_num, 1, 0.05)
}

/// Feature `j` of a reference: mean, standard deviation, 0.5 % and 99.5 % quantiles,
/// quartiles, each to a relative 1e-12.
fn assert_feature(r: &super::Reference, j: usize, want: [f64; 7]) {
    let got = [
        r.mean[j],
        r.std[j],
        r.lo[j],
        r.hi[j],
        r.edges[j][0],
        r.edges[j][1],
        r.edges[j][2],
    ];
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "feature {j}: {got:?}, want {want:?}"
        );
    }
}

#[test]
fn the_reference_has_numpys_quantiles_and_the_population_standard_deviation() {
    let r = reference_of((0..100).map(|i| (0, vec![Some(i as f64)])), 1);
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // NumPy of 0, …, 99.
    assert_feature(
        &r,
        0,
        [49.5, 833.25_f64.sqrt(), 0.495, 98.505, 24.75, 49.5, 74.25],
    );
    // Four quartile cells of 25 values each: one share, four cells.
    assert_eq!(r.cell_p, [(0.25, 4.0)]);
    // n natural queries touch Σ 1 − (1 − p)ⁿ cells: 4·(1 − 0.75ⁿ).
    for (n, want) in [(1, 1.0), (2, 1.75), (4, 2.734375)] {
        assert!(
            near(r.expected_cells(n), want),
            "{n}: {}",
            r.expected_cells(n)
        );
    }
}

#[test]
fn a_missing_number_is_left_out_of_its_own_feature_only() {
    // The second feature is missing in every odd sample (and the last sample has no
    // second entry at all): its statistics are those of 0, 2, …, 98 (NumPy:
    // mean 49, std 28.861739379323623, quartiles 24.5 / 49 / 73.5, 0.5 % 0.49,
    // 99.5 % 97.51); the first feature's are those of 0, …, 99.
    let r = reference_of(
        (0..100).map(|i| match i {
            99 => (i, vec![Some(99.0)]),
            _ => (i, vec![Some(i as f64), (i % 2 == 0).then_some(i as f64)]),
        }),
        2,
    );
    assert_feature(
        &r,
        0,
        [49.5, 833.25_f64.sqrt(), 0.495, 98.505, 24.75, 49.5, 74.25],
    );
    assert_feature(
        &r,
        1,
        [49.0, 28.861739379323623, 0.49, 97.51, 24.5, 49.0, 73.5],
    );
    assert_eq!(r.sorted[1].len(), 50);
    assert_eq!(r.sorted[0].len(), 100);
}

#[test]
fn coverage_ratio_is_cells_touched_over_cells_expected() {
    let mut records = client("corner", &[1.0, 2.0, 3.0, 4.0]);
    records.extend(client("spread", &[10.0, 30.0, 60.0, 90.0]));
    let stats = stats_after_reference(&config(), &records);
    let coverage = column(&stats, "coverage_ratio");
    // Four distinct inputs are expected to touch 4·(1 − 0.75⁴) = 2.734375 cells.
    assert!(
        close(coverage["corner"], 1.0 / 2.734375),
        "{:?}",
        coverage["corner"]
    );
    assert!(
        close(coverage["spread"], 4.0 / 2.734375),
        "{:?}",
        coverage["spread"]
    );
}

#[test]
fn ood_share_counts_values_outside_the_reference_range_and_unseen_categories() {
    let records = vec![
        query("outside", 0, 0.2, "a"),   // under 0.495
        query("outside", 1, 99.0, "a"),  // over 98.505
        query("outside", 2, 50.0, "b"),  // a category the reference never saw
        query("outside", 3, 50.0, "a"),  // inside
        query("outside", 4, 0.5, "a"),   // inside, at the edge
        query("outside", 5, 98.5, "a"),  // inside, at the edge
        query("outside", 6, 98.51, "a"), // over
        query("outside", 7, 0.49, "a"),  // under
    ];
    let stats = stats_after_reference(&config(), &records);
    assert!(close(column(&stats, "ood_share")["outside"], 5.0 / 8.0));
}

#[test]
fn near_duplicates_are_closer_to_one_of_the_last_16_than_reference_neighbours_are() {
    // The reference x = 0..99: every value's nearest neighbour is 1 away (1 / 28.87
    // standard deviations), so the radius is 1 in x. 50.1, 50.2 and 50.3 are 0.1 apart:
    // the second and third are near-duplicates; the repeat of 50.1 is an exact repeat,
    // not a near-duplicate.
    let mut records = client("prober", &[50.1, 50.2, 50.3, 50.1]);
    // Inputs 2 apart (0.5, 2.5, 4.5, …), then 0.6, 0.1 from the first. After 16 of them
    // the first is still among the last 16 distinct inputs: a near-duplicate. After 17
    // it is not.
    let spread = |n: usize| -> Vec<f64> {
        let mut xs: Vec<f64> = (0..n).map(|k| 2.0 * k as f64 + 0.5).collect();
        xs.push(0.6);
        xs
    };
    records.extend(client("back16", &spread(16)));
    records.extend(client("back17", &spread(17)));
    let stats = stats_after_reference(&config(), &records);
    let (near, distinct) = (
        column(&stats, "near_duplicate_share"),
        column(&stats, "distinct_input_share"),
    );
    assert!(close(near["prober"], 2.0 / 4.0), "{:?}", near["prober"]);
    assert!(close(distinct["prober"], 3.0 / 4.0));
    assert!(close(near["back16"], 1.0 / 17.0), "{:?}", near["back16"]);
    assert_eq!(near["back17"], Some(0.0));
    assert!(close(distinct["back17"], 1.0));
}

#[test]
fn confidence_labels_rate_and_latency_per_client() {
    let base = |i: usize| {
        json!({"request_id": format!("q-{i}"), "client_id": "conf", "model": "m",
               "features": {"x": 50.0, "c": "a"}})
    };
    let with = |i: usize, prediction: Value, latency: f64| {
        let mut r = base(i);
        r["prediction"] = prediction;
        r["latency_ms"] = json!(latency);
        r
    };
    let records = vec![
        // top-1 0.5: low confidence; margin 0.5 − 0.3 = 0.2: not at the boundary
        with(0, json!({"label": "A", "probs": [0.2, 0.5, 0.3]}), 1.5),
        // top-1 0.52: low; margin 0.04: at the boundary
        with(1, json!({"label": "A", "probs": [0.52, 0.48]}), 2.5),
        // one probability: the other is 1 − 0.9, margin 0.8
        with(2, json!({"label": "B", "probs": [0.9]}), 3.0),
        // a score as P(positive): top-1 0.7, margin 0.4
        with(3, json!({"label": "C", "score": 0.3}), 4.0),
        // no answer: an error, neither low nor at the boundary
        with(4, json!({}), 5.0),
    ];
    let stats = stats_after_reference(&config(), &records);
    let get = |name: &str| column(&stats, name)["conf"];
    assert_eq!(get("queries"), Some(5.0));
    assert!(close(get("qps"), 5.0 / 60.0));
    assert!(close(get("latency_ms_sum"), 16.0));
    assert!(close(get("low_confidence_share"), 2.0 / 5.0));
    assert!(close(get("boundary_share"), 1.0 / 5.0));
    assert!(close(get("error_share"), 1.0 / 5.0));
    // Labels A, A, B, C: −(½ log₂ ½ + 2 · ¼ log₂ ¼) = 1.5 bits.
    assert!(
        close(get("label_entropy"), 1.5),
        "{:?}",
        get("label_entropy")
    );
}

#[test]
fn prada_distances_are_in_reference_standard_deviations_to_earlier_queries() {
    // Standardized features (x − 49.5)/28.8661 and +1 per differing category.
    assert_eq!(super::distance(&[0.0, 3.0], &[7], &[4.0, 0.0], &[7]), 5.0);
    assert_eq!(
        super::distance(&[0.0, 3.0], &[7], &[4.0, 0.0], &[8]),
        26.0_f64.sqrt()
    );
    // The bounded form: the squared distance below the bound, None at or above it
    // (also over many features, where it stops early).
    let below = super::squared_distance_below;
    assert_eq!(
        below(&[0.0, 3.0], &[7], &[4.0, 0.0], &[8], 27.0),
        Some(26.0)
    );
    assert_eq!(below(&[0.0, 3.0], &[7], &[4.0, 0.0], &[8], 26.0), None);
    let (a, b): (Vec<f64>, Vec<f64>) = (0..40).map(|i| (i as f64, 0.0)).unzip();
    let full: f64 = a.iter().map(|x| x * x).sum();
    assert_eq!(below(&a, &[], &b, &[], f64::INFINITY), Some(full));
    assert_eq!(below(&a, &[], &b, &[], 100.0), None);
    // 22 inputs of one class at z = 0.1·i(i+1)/2: each one's nearest earlier input is
    // the one before, 0.1·i away, so the distances are 0.1, 0.2, …, 2.1. An exact
    // repeat, an input at 1e308 and another class's inputs add none.
    let std = 833.25_f64.sqrt();
    let z: Vec<f64> = (0..22).map(|i| 0.1 * (i * (i + 1)) as f64 / 2.0).collect();
    let mut records: Vec<Value> = z
        .iter()
        .enumerate()
        .map(|(i, z)| query("prada", i, 49.5 + z * std, "a"))
        .collect();
    records.push(query("prada", 22, 49.5 + z[5] * std, "a"));
    // An input at 1e308 is infinitely far from the others: no distance of its own (an
    // infinite one would leave W uncomputable for the horizon), and none to it.
    records.push(query("prada", 28, 1e308, "a"));
    for i in 0..5 {
        let mut r = query("prada", 23 + i, 49.5 + 0.01 * (i + 1) as f64, "a");
        r["prediction"]["label"] = json!("other");
        records.push(r);
    }
    let c = clients_with(&config());
    c.computed(&window(0, &reference())).unwrap();
    let profile = c.computed(&window(1, &records)).unwrap().profile.clone();
    // The other class's five inputs give four distances of their own.
    assert_eq!(column(&profile, "prada_distances")["prada"], Some(25.0));
    let mut distances: Vec<f64> = (1..22).map(|i| 0.1 * i as f64).collect();
    distances.extend([0.01 / std; 4]);
    let got = {
        let st = c.state.lock().unwrap();
        let p = st.profiles.values().find(|p| p.client == "prada").unwrap();
        let mut d = p.distances.clone();
        d.sort_by(f64::total_cmp);
        d
    };
    distances.sort_by(f64::total_cmp);
    assert_eq!(got.len(), distances.len());
    for (g, w) in got.iter().zip(&distances) {
        assert!((g - w).abs() < 1e-9, "{got:?} vs {distances:?}");
    }
    // W of the hand-computed distances (Shapiro–Wilk, itself checked against SciPy).
    let (w, _) = crate::stats::shapiro_wilk(&distances).unwrap();
    let got_w = column(&profile, "min_dist_w")["prada"].unwrap();
    assert!((got_w - w).abs() < 1e-9, "{got_w} vs {w}");
}

#[test]
fn clients_idle_for_a_horizon_are_evicted() {
    let cfg = ClientsConfig {
        horizon: std::time::Duration::from_secs(600),
        ..config()
    };
    let c = clients_with(&cfg);
    // One client, "ref", with x = 0..99.
    let xs: Vec<f64> = (0..100).map(f64::from).collect();
    c.computed(&window(0, &client("ref", &xs))).unwrap();
    // "stays" queries at the start of every minute, "gone" once, at 1 min + 1 ms.
    let mut first = client("stays", &[5.0]);
    first.extend(client("gone", &[5.0]));
    c.computed(&window(1, &first)).unwrap();
    for minute in 2..10 {
        c.computed(&window(minute, &client("stays", &[5.0])))
            .unwrap();
    }
    // Window [9, 10) ends 9 min 59.901 s after "ref"'s last query (0 min + 99 ms).
    assert_eq!(c.usage().clients, 3, "{:?}", c.usage());
    assert_eq!(c.usage().evicted_idle, 0);
    c.computed(&window(10, &client("stays", &[5.0]))).unwrap();
    // Window [10, 11): "ref" idle 10 min 59.901 s, "gone" 9 min 59.999 s.
    assert_eq!((c.usage().clients, c.usage().evicted_idle), (2, 1));
    c.computed(&window(11, &client("stays", &[5.0]))).unwrap();
    assert_eq!((c.usage().clients, c.usage().evicted_idle), (1, 2));
}

#[test]
fn over_max_memory_the_least_recently_seen_go_down_to_nine_tenths() {
    // Ten clients, one query each, a millisecond apart: c0 seen first, c9 last.
    let records: Vec<Value> = (0..10)
        .map(|i| query(&format!("c{i}"), 0, 50.0 + i as f64, "a"))
        .collect();
    let unbounded = clients_with(&config());
    unbounded.computed(&window(0, &records)).unwrap();
    let total = unbounded.usage().bytes;
    let each: Vec<u64> = {
        let st = unbounded.state.lock().unwrap();
        let mut by_client: Vec<(String, u64)> = st
            .profiles
            .values()
            .map(|p| (p.client.to_string(), p.bytes()))
            .collect();
        by_client.sort();
        by_client.into_iter().map(|(_, b)| b).collect()
    };
    // The running estimate is the sum of the profiles' own.
    assert_eq!(total, each.iter().sum::<u64>());
    // A cap one byte under the total: evict the least recently seen until at most
    // 90 % of the cap is left.
    let cap = total - 1;
    let target = cap / 10 * 9;
    let mut left = total;
    let mut expect_evicted = 0;
    for b in &each {
        if left <= target {
            break;
        }
        left -= b;
        expect_evicted += 1;
    }
    let bounded = clients_with(&ClientsConfig {
        max_memory: cap,
        ..config()
    });
    bounded.computed(&window(0, &records)).unwrap();
    let usage = bounded.usage();
    assert!(expect_evicted >= 1);
    assert_eq!(usage.evicted_memory, expect_evicted);
    assert_eq!(usage.bytes, left);
    let kept: Vec<String> = {
        let st = bounded.state.lock().unwrap();
        let mut k: Vec<String> = st.profiles.values().map(|p| p.client.to_string()).collect();
        k.sort();
        k
    };
    let want: Vec<String> = (expect_evicted as usize..10)
        .map(|i| format!("c{i}"))
        .collect();
    assert_eq!(kept, want);
}

#[test]
fn profiles_changed_while_a_checkpoint_holds_them_are_counted_until_it_is_done() {
    let records = |minute: i64| -> Vec<Value> {
        (0..4)
            .map(|i| {
                query(
                    &format!("c{i}"),
                    minute as usize * 10 + i,
                    50.0 + i as f64,
                    "a",
                )
            })
            .collect()
    };
    let c = clients_with(&config());
    c.computed(&window(0, &records(0))).unwrap();
    let first = c.usage();
    assert_eq!(
        (first.checkpoint_copies, first.peak_bytes),
        (0, first.bytes)
    );
    // A writer holds every profile; the next window changes all four.
    let snapshot = c.snapshot();
    c.computed(&window(1, &records(1))).unwrap();
    let held = c.usage();
    assert_eq!(held.checkpoint_copies, first.bytes);
    assert_eq!(held.peak_bytes, held.bytes + first.bytes);
    // Changed again while still held: already copies, not copied again.
    c.computed(&window(2, &records(2))).unwrap();
    assert_eq!(c.usage().checkpoint_copies, first.bytes);
    // The writer is done: the old copies are gone (counted so as soon as the next
    // snapshot is taken, before any window), the peak stays.
    drop(snapshot);
    let next = c.snapshot();
    assert_eq!(c.usage().checkpoint_copies, 0);
    drop(next);
    c.computed(&window(3, &records(3))).unwrap();
    let after = c.usage();
    assert_eq!(after.checkpoint_copies, 0);
    assert!(after.peak_bytes >= held.peak_bytes);
}

/// `low_margin_share` and `low_margin_p`: 50 clients answered with margins 0.025, 0.075,
/// …, 0.975 (20 each), and one client with 40 distinct inputs, 30 answered with margin
/// 0.01 and 10 with 0.9, plus 200 exact repeats of a low one. The evader weighs 20
/// answers in the quantile (19 at 0.01, 1 at 0.9: evenly spaced in its 240 sorted
/// margins), so NumPy's 10th percentile of the 1,020 pooled margins is 0.075 (had all
/// of its 240 answers weighed, it would be 0.01 and nothing would be under it): the
/// crowd has 1 low answer in 20, the evader 30 of its 40 distinct inputs (repeats are
/// not counted again). P-values from SciPy:
/// `binom.sf(0, 20, 0.1)` = 0.8784233454094308 and `binom.sf(29, 40, 0.1)` =
/// 3.0649470763974553e-22.
#[test]
fn low_margins_are_judged_against_the_windows_answers_with_each_client_capped() {
    let answer = |client: &str, i: usize, x: f64, margin: f64| {
        json!({
            "request_id": format!("{client}-{i}"), "client_id": client, "model": "m",
            "features": {"x": x, "c": "a"},
            "prediction": {"label": "L", "probs": [(1.0 + margin) / 2.0, (1.0 - margin) / 2.0]},
        })
    };
    let mut records = Vec::new();
    for j in 0..50 {
        for k in 0..20 {
            let margin = (k as f64 + 0.5) / 20.0;
            records.push(answer(
                &format!("crowd-{j}"),
                k,
                (j * 20 + k) as f64 / 10.0,
                margin,
            ));
        }
    }
    for i in 0..40 {
        let margin = if i < 30 { 0.01 } else { 0.9 };
        records.push(answer("evader", i, 0.5 + i as f64, margin));
    }
    for i in 40..240 {
        records.push(answer("evader", i, 0.5, 0.01));
    }
    let stats = stats_after_reference(&config(), &records);
    let (share, p) = (
        column(&stats, "low_margin_share"),
        column(&stats, "low_margin_p"),
    );
    assert!(close(share["evader"], 30.0 / 40.0), "{:?}", share["evader"]);
    let want = 3.0649470763974553e-22;
    assert!(
        p["evader"].is_some_and(|g| ((g - want) / want).abs() < 1e-9),
        "{:?}",
        p["evader"]
    );
    for j in 0..50 {
        let c = format!("crowd-{j}");
        assert!(close(share[&c], 1.0 / 20.0), "{c}: {:?}", share[&c]);
        assert!(
            p[&c].is_some_and(|g| (g - 0.8784233454094308).abs() < 1e-12),
            "{c}: {:?}",
            p[&c]
        );
    }
}

/// With answers from fewer than five clients there is no population to judge a margin
/// against: the share and p are null, not a share against the client itself.
#[test]
fn low_margins_need_five_clients_in_the_window() {
    let mut records = Vec::new();
    for j in 0..4 {
        records.extend(client(
            &format!("few-{j}"),
            &(0..30).map(f64::from).collect::<Vec<_>>(),
        ));
    }
    let stats = stats_after_reference(&config(), &records);
    let share = column(&stats, "low_margin_share");
    assert_eq!(share.len(), 4);
    assert!(share.values().all(Option::is_none), "{share:?}");
}

#[test]
fn the_per_client_pass_gives_the_same_rows_on_any_number_of_threads() {
    // 60 clients of unequal sizes, over a thousand records a window (the pass runs on
    // several threads from `PARALLEL_RECORDS` on), with repeats, near-duplicates and
    // new categories; three windows, so that profiles carry over.
    let windows: Vec<Vec<Value>> = (0..3)
        .map(|w| {
            (0..60)
                .flat_map(|c| {
                    let n = 5 + (c * 7 + w * 3) % 50;
                    (0..n).map(move |i| {
                        let x = ((c * 31 + i * 17 + w * 5) % 100) as f64 + (i % 3) as f64 * 0.001;
                        let cat = if i % 11 == 0 { "b" } else { "a" };
                        query(&format!("client-{c}"), w * 1000 + i, x, cat)
                    })
                })
                .collect()
        })
        .collect();
    assert!(windows.iter().all(|w| w.len() > super::PARALLEL_RECORDS));
    let run = |threads: usize| {
        let c = clients_with(&ClientsConfig {
            threads,
            ..config()
        });
        c.computed(&window(0, &reference())).unwrap();
        windows
            .iter()
            .enumerate()
            .map(|(i, records)| {
                let got = c.computed(&window(i as i64 + 1, records)).unwrap();
                (got.stats.clone(), got.profile.clone())
            })
            .collect::<Vec<_>>()
    };
    let one = run(1);
    assert_eq!(one[0].0.num_rows(), 60);
    for threads in [2, 4] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}

#[test]
fn profile_keys_are_seeded_per_monitor_so_senders_cannot_aim_at_a_profile_or_a_bucket() {
    let (a, b) = (clients_with(&config()), clients_with(&config()));
    // One monitor keys a client the same way every time (its profile is found again)…
    assert_eq!(a.client_key("m", "alice"), a.client_key("m", "alice"));
    assert_ne!(a.client_key("m", "alice"), a.client_key("m", "mallory"));
    // …but another monitor keys it otherwise: the key cannot be computed from the ids,
    // so ids cannot be chosen to share a profile's key or one bucket of the map.
    let ids: Vec<String> = (0..64).map(|i| format!("client-{i}")).collect();
    let differ = ids
        .iter()
        .filter(|id| a.client_key("m", id) != b.client_key("m", id))
        .count();
    assert_eq!(differ, ids.len());
    // Model and client stay apart: ("ab", "c") is not ("a", "bc").
    assert_ne!(a.client_key("ab", "c"), a.client_key("a", "bc"));
}

/// Input identities under a secret key: a sender who cannot compute them cannot make
/// different inputs one identity (and hide new queries as repeats), yet a monitor given
/// the same key (a restart, from its state directory's secret) finds them again.
#[test]
fn input_identities_are_keyed_per_monitor_and_found_again_from_one_secret() {
    // Ten distinct inputs, then five repeats of the first five.
    let xs: Vec<f64> = (0..10).chain(0..5).map(|i| 30.0 + f64::from(i)).collect();
    let run = |cfg: &ClientsConfig| {
        let c = clients_with(cfg);
        c.computed(&window(0, &reference())).unwrap();
        let out = c.computed(&window(1, &client("q", &xs))).unwrap();
        let share = column(&out.profile, "distinct_input_share")["q"];
        let snap = c.snapshot();
        let p = snap.profiles.iter().find(|p| p.client == "q").unwrap();
        (
            share,
            p.inputs
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<u64>>(),
        )
    };
    let (a, b) = (config(), config());
    assert_ne!(
        a.input_key, b.input_key,
        "a random key per monitor without a state dir"
    );
    // Never printed with the config, nor the state directory's secret.
    let with_secret = ClientsConfig {
        sample_key: super::SampleKey(0x1234_5678_9abc),
        ..a.clone()
    };
    let shown = format!("{with_secret:?}");
    assert!(shown.contains("input_key: (secret)"), "{shown}");
    assert!(shown.contains("sample_key: (secret)"), "{shown}");
    assert!(!shown.contains(&a.input_key.0[0].to_string()), "{shown}");
    assert!(
        !shown.contains(&0x1234_5678_9abc_u64.to_string()),
        "{shown}"
    );
    let (share_a, ids_a) = run(&a);
    let (share_b, ids_b) = run(&b);
    // The same counts under either key: 10 distinct of 15…
    assert!(close(share_a, 10.0 / 15.0), "{share_a:?}");
    assert_eq!(share_a, share_b);
    // …from identities that have nothing in common.
    assert_eq!((ids_a.len(), ids_b.len()), (10, 10));
    assert!(ids_a.is_disjoint(&ids_b));
    // One state directory's secret gives one key (identities found again after a
    // restart); another secret another.
    let from = |secret| ClientsConfig {
        input_key: InputKey::from_secret(secret),
        ..config()
    };
    assert_eq!(run(&from(7)).1, run(&from(7)).1);
    assert!(run(&from(7)).1.is_disjoint(&run(&from(8)).1));
}

/// Profiles restored with another key (a checkpoint from before keyed identities, or
/// a replaced `sample.key`) hold identities no input hashes to any more: they are
/// forgotten (an input seen before counts as new once), and the counts kept.
#[test]
fn identities_of_another_key_are_forgotten_on_restore_and_the_counts_kept() {
    let cfg = config();
    let restored = |key: InputKey| {
        let c = clients_with(&cfg);
        c.computed(&window(0, &reference())).unwrap();
        c.computed(&window(1, &client("q", &[30.0, 31.0, 31.0])))
            .unwrap();
        // A restart: another monitor, with this key.
        let d = clients_with(&ClientsConfig {
            input_key: key,
            ..cfg.clone()
        });
        d.restore(c.snapshot());
        let kept = d.input_identities();
        // Inputs seen before the restart (30, 31) and one new (32), each once.
        let next = [30.0, 31.0, 32.0].map(|x| query("q", 9, x, "a"));
        let out = d.computed(&window(2, &next)).unwrap();
        (
            kept,
            column(&out.profile, "queries")["q"],
            column(&out.profile, "distinct_input_share")["q"],
        )
    };
    // The same key: every identity kept (one of each reference client, q's two); 31
    // twice more and 30 once more are repeats, 3 distinct of 6 queries.
    assert_eq!(restored(cfg.input_key), (102, Some(6.0), Some(0.5)));
    // Another key: none kept; the repeat before the restart is still counted, 30 and 31
    // are new once more: 5 distinct of 6.
    let (kept, queries, share) = restored(InputKey::random());
    assert_eq!((kept, queries), (0, Some(6.0)));
    assert!(close(share, 5.0 / 6.0), "{share:?}");
}

/// Idle eviction goes by when each profile was last seen, for profiles made in this run
/// and those restored from a checkpoint alike, and for a client evicted and back again.
#[test]
fn restored_and_returning_clients_are_evicted_once_idle_for_a_horizon() {
    let cfg = ClientsConfig {
        horizon: std::time::Duration::from_secs(600),
        ..config()
    };
    let c = clients_with(&cfg);
    // "a" and "b" query at 0 min + 0–1 ms.
    let mut first = client("a", &[5.0]);
    first.extend(client("b", &[6.0]));
    c.computed(&window(0, &first)).unwrap();
    // A restart after minute 0.
    let d = clients_with(&cfg);
    d.restore(c.snapshot());
    assert_eq!(d.usage().clients, 2);
    // "b" comes back at minute 5; "a" never does. A window ends at its end (minute
    // m + 1): a client last seen 10 min before it is idle for the horizon.
    d.computed(&window(5, &client("b", &[6.0]))).unwrap();
    d.computed(&window(8, &client("x", &[7.0]))).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (3, 0));
    // Window [9, 10): "a" idle 10 min: evicted; "b" seen 5 min ago stays.
    d.computed(&window(9, &client("x", &[7.0]))).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (2, 1));
    d.computed(&window(13, &client("x", &[7.0]))).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (2, 1));
    // Window [14, 15): "b" idle 10 min.
    d.computed(&window(14, &client("x", &[7.0]))).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (1, 2));
    // "a" again: a new profile, idle-evicted once more in its turn.
    let mut back = client("a", &[5.0]);
    back.extend(client("x", &[7.0]));
    d.computed(&window(16, &back)).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (2, 2));
    d.computed(&window(24, &client("x", &[7.0]))).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (2, 2));
    d.computed(&window(25, &client("x", &[7.0]))).unwrap();
    assert_eq!((d.usage().clients, d.usage().evicted_idle), (1, 3));
}

/// Profiles evicted for memory leave their expiry entries behind until those are due:
/// a stream of made-up client ids over the memory cap must not grow the queue past the
/// profiles kept (the entries are made anew from the profiles).
#[test]
fn made_up_clients_over_the_memory_cap_do_not_grow_the_expiry_queue() {
    // Room for a few dozen profiles.
    let cfg = ClientsConfig {
        max_memory: 64 * 1024,
        ..config()
    };
    let c = clients_with(&cfg);
    for minute in 0..30 {
        let records: Vec<Value> = (0..200)
            .map(|i| query(&format!("m{minute}-{i}"), 0, 50.0, "a"))
            .collect();
        c.computed(&window(minute, &records)).unwrap();
        let st = c.state.lock().unwrap();
        assert!(
            st.expiry.len() <= 2 * st.profiles.len() + 1024,
            "minute {minute}: {} entries for {} profiles",
            st.expiry.len(),
            st.profiles.len()
        );
    }
    // 6,000 clients, all but a few evicted for memory, none idle for the hour.
    let u = c.usage();
    assert!(u.clients < 200 && u.evicted_memory > 5_000, "{u:?}");
    assert_eq!(u.evicted_idle, 0);
}

/// The estimate's bucket count of a hash table is the one std's table has: a power of
/// two of which `capacity()` is 7/8 (all but one below 8 buckets).
#[test]
fn the_memory_estimate_counts_the_buckets_a_hash_table_holds() {
    for n in 0..5000 {
        let set: std::collections::HashSet<u64> = std::collections::HashSet::with_capacity(n);
        let cap = set.capacity();
        let buckets = super::hash_buckets(cap);
        if cap == 0 {
            assert_eq!(buckets, 0);
            continue;
        }
        assert!(buckets.is_power_of_two(), "{n}: {buckets}");
        let usable = if buckets < 8 {
            buckets - 1
        } else {
            buckets / 8 * 7
        };
        assert_eq!(
            usable, cap,
            "capacity {cap} for {n} entries: {buckets} buckets"
        );
    }
}

/// Names of up to 24 bytes live inside the profile and add nothing to its estimate; a
/// longer one adds its heap buffer and that allocation's overhead. Checkpoints hold a
/// name as the string it is, whichever way the profile keeps it.
#[test]
fn a_long_client_name_adds_its_heap_buffer_to_the_estimate() {
    let inline = "c".repeat(24);
    let long = "c".repeat(40);
    let a = super::Profile::new("model", &inline);
    let b = super::Profile::new("model", &long);
    let c = super::Profile::new("model", "");
    assert!(!a.client.is_heap_allocated() && b.client.is_heap_allocated());
    assert_eq!(a.bytes(), c.bytes());
    assert_eq!(b.bytes() - a.bytes(), b.client.capacity() as u64 + 16);
    let old = serde_json::json!({"client": long, "model": "model"});
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Names {
        model: String,
        client: String,
    }
    let names: Names = serde_json::from_value(old).unwrap();
    let bytes = postcard::to_extend(&names, Vec::new()).unwrap();
    let profile_names: (compact_str::CompactString, compact_str::CompactString) =
        postcard::from_bytes(&bytes).unwrap();
    assert_eq!(profile_names.0, "model");
    assert_eq!(profile_names.1, long);
    assert_eq!(
        postcard::to_extend(&profile_names, Vec::new()).unwrap(),
        bytes
    );
}

/// The expiry queue hands out exactly the entries at or before the cut, whichever
/// bucket they are in (before the cut's, the cut's own, on either side of zero), and
/// keeps the others for later cuts.
#[test]
fn the_expiry_queue_takes_exactly_the_entries_at_or_before_each_cut() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut q = super::Expiry::default();
    let mut all: Vec<(i64, u64, u64)> = (0..5_000u64)
        .map(|i| (rng.random_range(-5_000i64..5_000), i, i))
        .collect();
    for &e in &all {
        q.push(e);
    }
    for cutoff in [
        -6_000, -4_097, -1_024, -1, 0, 1_023, 1_024, 2_500, 4_999, 9_000,
    ] {
        let mut got = Vec::new();
        q.take_due(cutoff, &mut got);
        got.sort_unstable();
        let (mut due, rest): (Vec<_>, Vec<_>) = all.iter().partition(|e| e.0 <= cutoff);
        due.sort_unstable();
        assert_eq!(got, due, "cut at {cutoff}");
        all = rest;
        assert_eq!(q.len(), all.len(), "cut at {cutoff}");
    }
    assert!(all.is_empty());
}

/// The nearest-point search gives, bit for bit, the least of the point-by-point
/// distances, over lists of many shapes (few and many numeric features, with and
/// without categories, NaN features, exact copies).
#[test]
fn the_nearest_point_is_the_least_distance_to_each_point() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    for (nz, nc) in [(1, 1), (4, 1), (7, 3), (8, 1), (5, 0), (20, 2), (0, 2)] {
        for _ in 0..200 {
            let feature = |rng: &mut rand_chacha::ChaCha8Rng| match rng.random_range(0..20) {
                0 => f64::NAN,
                1 => 0.0,
                _ => rng.random_range(-3.0..3.0),
            };
            let query_z: Vec<f64> = (0..nz).map(|_| feature(&mut rng)).collect();
            let query_cat: Vec<u32> = (0..nc).map(|_| rng.random_range(0..3)).collect();
            let mut points = super::points::Points::default();
            for _ in 0..rng.random_range(1..40) {
                let (z, cat) = if rng.random_range(0..8) == 0 {
                    (query_z.clone(), query_cat.clone())
                } else {
                    (
                        (0..nz).map(|_| feature(&mut rng)).collect(),
                        (0..nc)
                            .map(|_| rng.random_range(0..3))
                            .collect::<Vec<u32>>(),
                    )
                };
                points.push(&z, &cat);
            }
            let least = points
                .iter()
                .map(|(pz, pc)| {
                    let cats = query_cat.iter().zip(pc).filter(|(a, b)| a != b).count() as f64;
                    cats + crate::baseline::sum_squared_differences(&query_z, pz)
                })
                .filter(|d| !d.is_nan())
                .fold(f64::INFINITY, f64::min);
            let got = super::nearest_squared(&points, &query_z, &query_cat);
            if nz <= 16 {
                assert_eq!(got.to_bits(), least.to_bits(), "width ({nz}, {nc})");
            } else {
                // Summed in chunks of sixteen: the last bits may differ.
                let close = got == least || (got - least).abs() <= 1e-12 * least;
                assert!(close, "{got} vs {least}");
            }
        }
    }
}
