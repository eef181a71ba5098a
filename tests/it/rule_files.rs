//! Every rule test file under `tests/rules/` runs here: a new case needs no new Rust.

use std::path::PathBuf;

#[tokio::test]
async fn every_rule_test_file_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let files = driftwatch::rules::testing::test_files(&[dir]).unwrap();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut cases = 0;
    for file in &files {
        let results = driftwatch::rules::testing::run_file(file)
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

/// Every default rule has a test file with at least one case where it fires and one
/// where it stays silent.
#[test]
fn every_default_rule_has_firing_and_silent_cases() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rules = driftwatch::rules::load_rules(&[root.join("queries")]).unwrap();
    let tests: String = std::fs::read_dir(root.join("tests/rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for r in rules {
        let id = r.id();
        let mentions = tests.matches(&format!("rule: {id}\n")).count();
        assert!(
            mentions >= 2,
            "rule {id} is named in {mentions} expectations"
        );
        // Silent: never any alert, or (statistical rules) never a firing one.
        let silent = tests.contains(&format!("- rule: {id}\n        alerts: []"))
            || tests.contains(&format!(
                "- rule: {id}\n        ignore_pending: true\n        alerts: []"
            ));
        assert!(silent, "rule {id} has no case that must stay silent");
    }
}
