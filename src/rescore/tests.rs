//! Tests of the embedded model, the re-scorer and feature squeezing, against the
//! Python model's own outputs (`scripts/train_model.py`).

use super::*;

fn dir() -> PathBuf {
    // At run time: the compile-time value can name another checkout sharing the target.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("models")
}

fn meta() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("breast_cancer_lr.json")).unwrap()).unwrap()
}

/// The fixture of scripts/train_model.py, and its test-split inputs.
fn fixture() -> (serde_json::Value, Vec<Vec<f64>>) {
    let f: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir().join("breast_cancer_lr.fixture.json")).unwrap(),
    )
    .unwrap();
    let inputs = f["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    (f, inputs)
}

fn as_f32(rows: &[Vec<f64>]) -> Vec<Vec<f32>> {
    rows.iter()
        .map(|r| r.iter().map(|v| *v as f32).collect())
        .collect()
}

fn config() -> ModelConfig {
    let m = meta();
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    ModelConfig {
        name: "cancer".into(),
        path: dir().join("breast_cancer_lr.onnx"),
        sha256: m["sha256"].as_str().unwrap().into(),
        features: strings(&m["features"]),
        probabilities_output: "probabilities".into(),
        labels: strings(&m["labels"]),
        squeeze: None,
        version: None,
    }
}

/// The fixture of scripts/train_model.py: the test split and scikit-learn's
/// probabilities for it.
#[test]
fn embedded_probabilities_equal_the_python_model_within_1e_5() {
    let model = EmbeddedModel::load(&config()).unwrap();
    let (f, inputs) = fixture();
    let rows = as_f32(&inputs);
    assert!(rows.len() > 100);
    let got = model.probabilities(&rows).unwrap();
    let want = f["sklearn_probabilities"].as_array().unwrap();
    let mut worst = 0.0f64;
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.iter().zip(w.as_array().unwrap()) {
            worst = worst.max((f64::from(*a) - b.as_f64().unwrap()).abs());
        }
    }
    assert_eq!(got.len(), want.len());
    assert!(worst < 1e-5, "max |embedded - scikit-learn| = {worst}");
}

#[test]
fn a_model_that_is_not_the_pinned_one_is_refused() {
    let mut c = config();
    c.sha256 = "00".repeat(32);
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(
        e.contains("refusing") && e.contains(&meta()["sha256"].as_str().unwrap()[..16]),
        "{e}"
    );
    let mut c = config();
    c.path = dir().join("missing.onnx");
    assert!(
        EmbeddedModel::load(&c)
            .err()
            .unwrap()
            .contains("cannot read")
    );
}

#[test]
fn declared_features_outputs_and_labels_must_fit_the_model() {
    let mut c = config();
    c.features.pop();
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(e.contains("29 features declared"), "{e}");
    let mut c = config();
    c.probabilities_output = "scores".into();
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(e.contains("probabilities") && e.contains("scores"), "{e}");
    let mut c = config();
    c.labels.push("unsure".into());
    let e = EmbeddedModel::load(&c).err().unwrap();
    assert!(e.contains("2 probabilities"), "{e}");
    let mut c = config();
    let junk = std::env::temp_dir().join(format!("inferwatch-junk-{}.onnx", std::process::id()));
    std::fs::write(&junk, b"not a model").unwrap();
    c.path = junk.clone();
    c.sha256 = sha256_hex(b"not a model");
    let e = EmbeddedModel::load(&c).err().unwrap();
    let _ = std::fs::remove_file(&junk);
    assert!(e.contains("not a loadable ONNX model"), "{e}");
}

mod rescoring {
    use super::*;
    use crate::rescore::rescorer::{Flags, Reason, RescoreConfig, Rescorer, ServedModel};
    use crate::rescore::squeeze::{SqueezeConfig, Squeezer};
    use crate::scenario::cancer::{Cancer, MODEL};
    use crate::window::{ClosedWindow, WindowSpec, WindowStats};

    fn model_config() -> ModelConfig {
        ModelConfig {
            name: MODEL.into(),
            ..config()
        }
    }

    fn baseline() -> crate::baseline::Baseline {
        crate::baseline::build_from_file(
            &dir().join("breast_cancer_train.csv"),
            &crate::baseline::BuildOptions {
                model: MODEL.into(),
                label_column: "prediction_label".into(),
                score_column: "prediction_score".into(),
                true_label_column: None,
            },
        )
        .unwrap()
    }

    fn decode_config() -> crate::decode::DecodeConfig {
        crate::decode::DecodeConfig {
            features: Cancer::load()
                .features
                .iter()
                .map(|f| crate::decode::FeatureDecl {
                    name: f.clone(),
                    kind: crate::decode::FeatureKind::Numerical,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn squeezer(levels: u32, threshold: Option<f64>) -> Squeezer {
        let c = SqueezeConfig {
            levels,
            threshold,
            ranges: Default::default(),
        };
        Squeezer::new(&c, MODEL, &model_config().features, Some(&baseline())).unwrap()
    }

    const MINUTE: WindowSpec = WindowSpec {
        size_ms: 60_000,
        slide_ms: 60_000,
        grace_ms: 0,
    };

    fn rescorer(cfg: RescoreConfig, squeeze: Option<Squeezer>) -> Arc<Rescorer> {
        let model = EmbeddedModel::load(&model_config()).unwrap();
        let decoder = crate::decode::BatchDecoder::new(&decode_config()).unwrap();
        let served = ServedModel::new(model, squeeze, &decoder.events_schema()).unwrap();
        Rescorer::with_windows(cfg, vec![served], &[MINUTE])
    }

    /// One record: event time, client, request id, input, logged probabilities.
    type Rec = (i64, &'static str, String, Vec<f64>, [f64; 2]);

    fn window(start: i64, records: &[Rec]) -> ClosedWindow {
        let c = Cancer::load();
        let mut raw = crate::decode::RawBatch::new(0);
        for (i, (ts, client, id, x, probs)) in records.iter().enumerate() {
            let mut line = Vec::new();
            let call = crate::scenario::cancer::Call {
                ts: &crate::time::rfc3339(*ts),
                request_id: id,
                client,
                latency: 1.0,
            };
            c.write(&mut line, &call, x, *probs);
            raw.push(&line, i as u64);
        }
        let decoder = crate::decode::BatchDecoder::new(&decode_config()).unwrap();
        let decoded = decoder.decode(&raw);
        assert!(
            decoded.dead.is_empty(),
            "{:?}",
            decoded.dead.first().map(|d| &d.reason)
        );
        ClosedWindow {
            spec: MINUTE,
            start_ms: start,
            end_ms: start + 60_000,
            batches: decoded.events.into_iter().collect(),
            stats: WindowStats::default(),
            ranges: Default::default(),
        }
    }

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand::SeedableRng::seed_from_u64(7)
    }

    const T0: i64 = 1_795_255_200_000;

    #[test]
    fn honest_answers_agree_and_another_models_answers_are_mismatches() {
        let c = Cancer::load();
        let mut rng = rng();
        let mut recs: Vec<Rec> = Vec::new();
        for i in 0..40 {
            let x = c.honest(&mut rng);
            let (client, probs) = if i % 2 == 0 {
                ("honest", c.model.probs(&x))
            } else {
                ("forger", c.other.probs(&x))
            };
            recs.push((T0 + i * 1000, client, format!("r{i}"), x, probs));
        }
        let cfg = RescoreConfig {
            sample_rate: 1.0,
            ..Default::default()
        };
        let r = rescorer(cfg, None);
        let w = window(T0, &recs);
        r.score_window(&w).unwrap();
        let rows = r.rows(&w);
        assert_eq!(rows.len(), 40);
        for row in &rows {
            assert_eq!(row.reason, Reason::Sample);
            assert_eq!(row.model, MODEL);
            if row.client_id == "honest" {
                assert_eq!(row.mismatch, Some(false), "{row:?}");
                assert!(row.prob_diff.unwrap() < 1e-5, "{row:?}");
                assert_eq!(row.logged_label.as_deref(), Some(row.model_label.as_str()));
            }
        }
        let forged = rows.iter().filter(|r| r.client_id == "forger").count();
        let caught = rows
            .iter()
            .filter(|r| r.client_id == "forger" && r.mismatch == Some(true))
            .count();
        assert_eq!(forged, 20);
        assert!(caught >= 18, "only {caught} of 20 forged answers caught");
        let t = r.totals();
        assert_eq!(
            (t.rescored, t.sampled, t.mismatches),
            (40, 40, caught as u64)
        );
        // The same window again (an overlapping window of another spec): nothing is
        // re-scored twice.
        r.score_window(&w).unwrap();
        assert_eq!(r.totals().rescored, 40);
        assert_eq!(r.rows(&w).len(), 40);
    }

    #[test]
    fn records_of_a_version_without_its_pinned_file_are_counted_not_called_tampered() {
        // Version 2 answers with another model: checked against version 1's file, every
        // answer would be a mismatch.
        let c = Cancer::load();
        let mut rng = rng();
        let recs: Vec<Rec> = (0..20)
            .map(|i| {
                let x = c.honest(&mut rng);
                let p = c.other.probs(&x);
                (T0 + i * 1000, "k", format!("r{i}"), x, p)
            })
            .collect();
        let cfg = RescoreConfig {
            sample_rate: 1.0,
            ..Default::default()
        };
        let scored = |version: &str| {
            let model = EmbeddedModel::load(&model_config()).unwrap();
            let decoder = crate::decode::BatchDecoder::new(&decode_config()).unwrap();
            let mut served = ServedModel::new(model, None, &decoder.events_schema()).unwrap();
            served.version = Some(version.to_owned());
            let r = Rescorer::with_windows(cfg.clone(), vec![served], &[MINUTE]);
            let w = window(T0, &recs);
            r.score_window(&w).unwrap();
            r.score_window(&w).unwrap();
            (r.rows(&w), r.totals())
        };
        // The records say version 1 (the scenario's).
        let (rows, t) = scored("2");
        assert!(rows.is_empty(), "{rows:?}");
        assert_eq!((t.rescored, t.mismatches, t.other_version), (0, 0, 20));
        let (rows, t) = scored("1");
        assert_eq!((rows.len(), t.other_version), (20, 0));
        assert!(t.mismatches >= 18, "{t:?}");
    }

    #[test]
    fn a_label_the_model_does_not_give_is_a_mismatch_without_probabilities() {
        let c = Cancer::load();
        let x = c.honest(&mut rng());
        let p = c.model.probs(&x);
        // The other label, with its probability: label and score disagree with the model.
        let flipped = [p[1], p[0]];
        let recs = vec![(T0, "k", "r1".to_owned(), x, flipped)];
        let r = rescorer(
            RescoreConfig {
                sample_rate: 1.0,
                ..Default::default()
            },
            None,
        );
        let w = window(T0, &recs);
        r.score_window(&w).unwrap();
        let rows = r.rows(&w);
        assert_eq!(rows[0].mismatch, Some(true));
        assert_ne!(
            rows[0].logged_label.as_deref(),
            Some(rows[0].model_label.as_str())
        );
    }

    #[test]
    fn the_budget_takes_flagged_clients_first_then_the_sample_by_hash_and_counts_the_rest() {
        let c = Cancer::load();
        let mut rng = rng();
        // 40 records in one second: 10 of a suspect, 30 of others.
        let mut recs: Vec<Rec> = Vec::new();
        for i in 0..40 {
            let x = c.honest(&mut rng);
            let client = if i % 4 == 0 { "suspect" } else { "other" };
            recs.push((
                T0 + 500,
                client,
                format!("q{i}"),
                x.clone(),
                c.model.probs(&x),
            ));
        }
        let cfg = RescoreConfig {
            budget_per_second: 12,
            sample_rate: 0.5,
            ..Default::default()
        };
        let picked = |recs: &[Rec]| {
            let r = rescorer(cfg.clone(), None);
            let w = window(T0, recs);
            r.flag(
                &w,
                Flags {
                    clients: vec![(None, "suspect".into())],
                    window: false,
                },
            );
            r.score_window(&w).unwrap();
            let mut ids: Vec<(Reason, String)> = r
                .rows(&w)
                .into_iter()
                .map(|x| (x.reason, x.request_id.unwrap()))
                .collect();
            ids.sort();
            (ids, r.totals())
        };
        let (ids, totals) = picked(&recs);
        assert_eq!(ids.len(), 12);
        assert_eq!(
            ids.iter().filter(|(r, _)| *r == Reason::Flagged).count(),
            10
        );
        let sampled_others = recs
            .iter()
            .filter(|r| r.1 == "other")
            .filter(|r| {
                let h = crate::stable_hash::hash_of(("sample", "", r.2.as_str()));
                (h as f64) < 0.5 * u64::MAX as f64
            })
            .count();
        assert!(sampled_others > 2, "the sample should pick more than fit");
        assert_eq!(totals.dropped, (10 + sampled_others - 12) as u64);
        assert_eq!((totals.flagged, totals.sampled), (10, 2));
        // Arrival order does not matter.
        let mut reversed = recs.clone();
        reversed.reverse();
        assert_eq!(picked(&reversed).0, ids);
    }

    #[test]
    fn a_salt_changes_which_records_the_sample_takes_and_never_prints() {
        let c = Cancer::load();
        let mut rng = rng();
        let recs: Vec<Rec> = (0..200)
            .map(|i| {
                let x = c.honest(&mut rng);
                let p = c.model.probs(&x);
                (T0 + i * 100, "k", format!("id-{i}"), x, p)
            })
            .collect();
        let sample = |salt: &str| {
            let cfg: RescoreConfig = serde_json::from_value(
                serde_json::json!({"sample_rate": 0.1, "sample_salt": salt}),
            )
            .unwrap();
            assert!(!format!("{cfg:?}").contains("pepper"), "{cfg:?}");
            let r = rescorer(cfg, None);
            let w = window(T0, &recs);
            r.score_window(&w).unwrap();
            r.rows(&w)
                .into_iter()
                .map(|x| x.request_id.unwrap())
                .collect::<Vec<_>>()
        };
        let (plain, salted) = (sample(""), sample("pepper-7f3a"));
        assert!(!plain.is_empty() && !salted.is_empty());
        assert_ne!(plain, salted);
        assert_eq!(
            salted,
            sample("pepper-7f3a"),
            "the same salt, the same sample"
        );
    }

    #[test]
    fn a_suspect_stays_one_for_suspect_for_after_its_window_then_only_the_sample_counts() {
        let c = Cancer::load();
        let mut rng = rng();
        let cfg = RescoreConfig {
            sample_rate: 0.0,
            suspect_for: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let r = rescorer(cfg, None);
        let mut at = |start: i64| {
            let x = c.honest(&mut rng);
            let p = c.model.probs(&x);
            window(start, &[(start + 10, "s", format!("id{start}"), x, p)])
        };
        let (w1, w2, w3) = (at(T0), at(T0 + 60_000), at(T0 + 120_000));
        r.flag(
            &w1,
            Flags {
                clients: vec![(Some(MODEL.into()), "s".into())],
                window: false,
            },
        );
        // Each window's rows are read when it closes, as the pipeline does.
        let mut seen = Vec::new();
        for w in [&w1, &w2, &w3] {
            r.score_window(w).unwrap();
            seen.push(r.rows(w).len());
        }
        assert_eq!(
            seen,
            [1, 1, 0],
            "the flagging window, the next one, after suspect_for"
        );
        assert_eq!(r.totals().flagged, 2);
    }

    #[test]
    fn past_max_suspects_the_suspicion_that_ends_first_is_dropped_and_counted() {
        let c = Cancer::load();
        let mut rng = rng();
        let cfg = RescoreConfig {
            sample_rate: 0.0,
            max_suspects: 2,
            ..Default::default()
        };
        let r = rescorer(cfg, None);
        let flag = |w: &ClosedWindow, client: &str| {
            r.flag(
                w,
                Flags {
                    clients: vec![(None, client.into())],
                    window: false,
                },
            )
        };
        let mut recs: Vec<Rec> = Vec::new();
        for (i, client) in ["a", "b", "c"].into_iter().enumerate() {
            let x = c.honest(&mut rng);
            let p = c.model.probs(&x);
            recs.push((T0 + 120_000 + i as i64, client, format!("x{i}"), x, p));
        }
        // "a" is flagged first (its suspicion ends first), then "b" and "c" later.
        flag(&window(T0, &[]), "a");
        let w = window(T0 + 120_000, &recs);
        flag(&window(T0 + 60_000, &[]), "b");
        flag(&w, "c");
        r.score_window(&w).unwrap();
        let clients: Vec<String> = r.rows(&w).into_iter().map(|x| x.client_id).collect();
        assert_eq!(clients, ["b", "c"]);
        assert_eq!(r.totals().suspects_evicted, 1);
    }

    #[test]
    fn state_survives_a_checkpoint() {
        let c = Cancer::load();
        let x = c.honest(&mut rng());
        let recs = vec![(T0, "k", "r1".to_owned(), x.clone(), c.other.probs(&x))];
        let cfg = RescoreConfig {
            sample_rate: 1.0,
            ..Default::default()
        };
        let r = rescorer(cfg.clone(), None);
        let w = window(T0, &recs);
        r.flag(
            &w,
            Flags {
                clients: vec![(Some(MODEL.into()), "k".into()), (None, "j".into())],
                window: true,
            },
        );
        r.score_window(&w).unwrap();
        let saved = serde_json::to_string(&r.snapshot()).unwrap();
        let back = rescorer(cfg, None);
        back.restore(serde_json::from_str(&saved).unwrap());
        // Floats come back within an ulp (the checkpoint's metadata is JSON).
        let key = |x: &crate::rescore::rescorer::Rescored| {
            (
                x.request_id.clone(),
                x.mismatch,
                x.model_label.clone(),
                x.reason,
            )
        };
        let (a, b) = (back.rows(&w), r.rows(&w));
        assert_eq!(
            a.iter().map(key).collect::<Vec<_>>(),
            b.iter().map(key).collect::<Vec<_>>()
        );
        assert!((a[0].prob_diff.unwrap() - b[0].prob_diff.unwrap()).abs() < 1e-12);
        assert_eq!(back.totals(), r.totals());
        let flags = |json: &str| json[..json.find("\"seconds\"").unwrap()].to_owned();
        assert_eq!(
            flags(&serde_json::to_string(&back.snapshot()).unwrap()),
            flags(&saved),
            "suspects and flagged windows come back"
        );
        back.score_window(&w).unwrap();
        assert_eq!(back.totals().rescored, 1, "not re-scored after the restore");
    }

    /// A feature the training data holds at one value (an image's blank border pixel)
    /// is squeezed to that value, whatever an input sends; the other features still
    /// round to their levels, and a range with min > max is still refused.
    #[test]
    fn a_feature_constant_in_the_baseline_is_squeezed_to_its_value() {
        let features = model_config().features;
        let mut ranges: std::collections::BTreeMap<String, [f64; 2]> =
            features.iter().map(|f| (f.clone(), [0.0, 10.0])).collect();
        ranges.insert(features[0].clone(), [0.0, 0.0]);
        let c = SqueezeConfig {
            levels: 3,
            threshold: None,
            ranges: ranges.clone(),
        };
        let s = Squeezer::new(&c, MODEL, &features, None).unwrap();
        let mut row = vec![4.0f32; features.len()];
        row[0] = 7.5;
        let out = s.squeeze(&row);
        assert_eq!(out[0], 0.0, "the constant feature");
        // levels 0, 5, 10: 4 rounds to 5
        assert!(out[1..].iter().all(|&x| x == 5.0), "{out:?}");
        ranges.insert(features[0].clone(), [1.0, 0.0]);
        let c = SqueezeConfig { ranges, ..c };
        let e = Squeezer::new(&c, MODEL, &features, None).unwrap_err();
        assert!(e.contains("min <= max"), "{e}");
    }

    /// The squeezer against scikit-learn on the test split: the same rounding
    /// (float32, the training split's ranges, 16 levels), the probabilities of the
    /// Python model (scripts/train_model.py writes the scores into the fixture).
    #[test]
    fn squeezing_scores_equal_the_python_models_within_1e_5() {
        let model = EmbeddedModel::load(&model_config()).unwrap();
        let (f, inputs) = fixture();
        assert_eq!(f["squeeze_levels"], 16);
        let rows = as_f32(&inputs);
        let s = squeezer(16, None);
        let probs = model.probabilities(&rows).unwrap();
        let got = s.scores(&model, &rows, &probs).unwrap();
        let want: Vec<f64> = f["squeeze_scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "max |inferwatch - scikit-learn| = {worst}");
        assert!(
            want.iter().any(|w| *w > 0.1),
            "the fixture has squeezed answers that move"
        );
    }

    /// Feature squeezing on the test split: the clean inputs against FGSM inputs made
    /// from them (each pushed just across the boundary, `margin` logit units beyond),
    /// the threshold calibrated on the training split at 5 % false positives. Prints
    /// docs/rescoring.md's table (`cargo test squeezing -- --nocapture`).
    #[test]
    fn squeezing_tells_fgsm_inputs_from_clean_ones_on_the_test_split() {
        let c = Cancer::load();
        let model = EmbeddedModel::load(&model_config()).unwrap();
        let (_, clean) = fixture();
        let train = crate::baseline::Table::read(&dir().join("breast_cancer_train.csv")).unwrap();
        let flagged = |s: &Squeezer, t: f64, rows: &[Vec<f64>]| {
            let rows = as_f32(rows);
            let probs = model.probabilities(&rows).unwrap();
            let scores = s.scores(&model, &rows, &probs).unwrap();
            scores.iter().filter(|x| **x > t).count() as f64 / scores.len() as f64
        };
        println!(
            "| levels | threshold (5% FPR on train) | FPR, clean test inputs | detection, margin 0.1 | margin 0.35 | margin 0.6 | margin 1 | margin 2 |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut at_default = (0.0, 0.0);
        for levels in [4, 8, 16, 32] {
            let s = squeezer(levels, None);
            let cal = crate::rescore::squeeze::calibrate(&model, &s, &train, 0.05).unwrap();
            assert!(cal.flagged <= 0.05 + 1e-12);
            let fpr = flagged(&s, cal.threshold, &clean);
            let mut line = format!("| {levels} | {:.4} | {:.1}% |", cal.threshold, 100.0 * fpr);
            for margin in [0.1, 0.35, 0.6, 1.0, 2.0] {
                let adv: Vec<Vec<f64>> = clean.iter().map(|x| c.model.fgsm(x, margin)).collect();
                let d = flagged(&s, cal.threshold, &adv);
                line += &format!(" {:.1}% |", 100.0 * d);
                if levels == 16 && margin == 0.35 {
                    at_default = (fpr, d);
                }
            }
            println!("{line}");
        }
        let (fpr, detection) = at_default;
        assert!(fpr <= 0.12, "false positives on clean test inputs: {fpr}");
        assert!(detection >= 0.5, "detection at the default: {detection}");
    }
}

#[test]
fn the_threshold_flags_at_most_the_chosen_share_of_benign_scores() {
    use crate::rescore::squeeze::threshold_at;
    let scores: Vec<f64> = (0..100).map(|i| i as f64 / 100.0).collect();
    let t = threshold_at(&scores, 0.05).unwrap();
    assert_eq!(t, 0.94);
    assert_eq!(scores.iter().filter(|s| **s > t).count(), 5);
    // Ties at the threshold are not flagged: fewer than the share, never more.
    let tied = [0.0, 0.0, 0.0, 0.0, 1.0];
    assert_eq!(threshold_at(&tied, 0.5), Some(0.0));
    assert_eq!(threshold_at(&[], 0.05), None);
    assert_eq!(threshold_at(&scores, 1.0), None);
}
