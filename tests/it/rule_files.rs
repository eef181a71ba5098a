//! Every rule test file under `tests/rules/` runs here: a new case needs no new Rust.

#[tokio::test]
async fn every_rule_test_file_passes() {
    let dir = crate::cli::root().join("tests/rules");
    let files = inferwatch::cli::rules_test::test_files(&[dir]).unwrap();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut cases = 0;
    for file in &files {
        let results = inferwatch::cli::rules_test::run_file(file)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for r in results {
            cases += 1;
            if let Some(why) = r.failure {
                failures.push(format!("{}: {}\n    {why}", r.file.display(), r.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} rule tests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every default rule has a case that expects it firing and a case that expects it to
/// stay silent, read from the parsed test files (each expectation names a rule its file
/// loads, or the file is an error).
#[test]
fn every_default_rule_has_firing_and_silent_cases() {
    let root = crate::cli::root();
    let rules = inferwatch::rules::load_rules(&[root.join("queries")]).unwrap();
    assert!(rules.len() >= 11, "{} default rules", rules.len());
    let files = inferwatch::cli::rules_test::test_files(&[root.join("tests/rules")]).unwrap();
    let mut expected = Vec::new();
    for f in &files {
        expected
            .extend(inferwatch::cli::rules_test::expectations(f).unwrap_or_else(|e| panic!("{e}")));
    }
    let mut missing = Vec::new();
    for r in &rules {
        let of_rule = || expected.iter().filter(|e| e.rule == r.id());
        if !of_rule().any(|e| e.firing) {
            missing.push(format!("{}: no case expects it firing", r.id()));
        }
        if !of_rule().any(|e| e.silent) {
            missing.push(format!("{}: no case expects it silent", r.id()));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The check above parses what it counts: a file that names a rule it does not load
/// is refused, so a silent case for a rule that never ran cannot count.
#[test]
fn an_expectation_for_a_rule_the_file_does_not_load_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate::cli::root();
    let file = dir.path().join("t.yaml");
    std::fs::write(
        &file,
        format!(
            "rule_files: [{}]\ntests:\n  - name: x\n    input: []\n    expect:\n      - rule: drift.prediction\n        alerts: []\n",
            root.join("queries/flood.yaml").display()
        ),
    )
    .unwrap();
    let e = inferwatch::cli::rules_test::expectations(&file).unwrap_err();
    assert!(e.to_string().contains("drift.prediction"), "{e}");
}

/// A rule that fails on every window raises none of its own alerts: a case that only
/// expects it silent fails on its error instead of passing.
#[tokio::test]
async fn a_rule_error_fails_a_case_that_does_not_expect_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate::cli::root();
    let file = dir.path().join("t.yaml");
    let case = |expect: &str| {
        format!(
            "  - name: {expect}\n    input:\n      - repeat: 120\n        start: 2026-11-21T10:00:00Z\n        every: 1s\n        record: {{client_id: busy}}\n    expect:\n      - rule: test.divides_by_zero\n        alerts: []\n{}",
            match expect {
                "silent only" => "",
                _ =>
                    "      - at: 2026-11-21T10:02:00Z\n        rule: inferwatch.rule_error\n        alerts:\n          - labels: {rule_id: test.divides_by_zero}\n",
            }
        )
    };
    std::fs::write(
        &file,
        format!(
            "rule_files: [{}]\ntests:\n{}{}",
            root.join("tests/rules/fixtures/failing.yaml").display(),
            case("silent only"),
            case("the error expected")
        ),
    )
    .unwrap();
    let results = inferwatch::cli::rules_test::run_file(&file).await.unwrap();
    let why = results[0].failure.as_deref().expect("the case fails");
    assert!(
        why.contains("rule test.divides_by_zero failed") && why.contains("by zero"),
        "{why}"
    );
    assert_eq!(results[1].failure, None);
}
