//! Against the real Apache Kafka broker that `scripts/kafka.sh start` runs
//! (`scripts/test.sh` and CI start it and set KAFKA_BROKERS). Without it these tests fail.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::cli::{driftwatch, generate, jsonl, root, text};

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: start the test broker (scripts/kafka.sh start) and run \
         the tests with scripts/test.sh",
    )
}

fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = runtime
        .block_on(admin.create_topics([&new], &opts))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Settings a test adds to the common Kafka config.
#[derive(Default)]
struct Extra<'a> {
    /// Lines for the `source:` section (indented by two spaces).
    source: &'a str,
    /// `decode.max_record_bytes`; 0 keeps the default.
    max_record_bytes: usize,
    /// Top-level lines.
    top: &'a str,
}

fn kafka_config(
    dir: &Path,
    brokers: &str,
    topic: &str,
    group: &str,
    extra: Extra,
) -> std::path::PathBuf {
    let path = dir.join(format!("{group}.yaml"));
    let max = match extra.max_record_bytes {
        0 => String::new(),
        n => format!("  max_record_bytes: {n}\n"),
    };
    std::fs::write(
        &path,
        format!(
            "source:\n  type: kafka\n  bootstrap_servers: {brokers}\n  topics: [{topic}]\n  group_id: {group}\n{}\
             decode:\n{max}  features:\n    - {{name: amount, type: numerical}}\n    - {{name: country, type: categorical}}\n\
             time: {{idle_timeout: 2s}}\n\
             queries: {}\n\
             alerts: {{stdout: false}}\n{}",
            extra.source,
            root().join("queries").display(),
            extra.top
        ),
    )
    .unwrap();
    path
}

/// (id, state) of every notification, leaving out the bad-records rule: malformed
/// records carry no client id, so they land in any partition and are counted in the
/// window of that partition's newest event time, which depends on the partitioning.
fn keyed(path: &Path) -> BTreeSet<String> {
    jsonl(path)
        .iter()
        .filter(|a| a["rule_id"] != "ingest.bad_records")
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect()
}

/// A 6-partition topic holding the `mixed` scenario of `seed`, and the alerts file of a
/// replay of the same records.
fn mixed_topic(brokers: &str, dir: &Path, name: &str, seed: u64) -> (String, std::path::PathBuf) {
    let topic = format!("{name}-{}", std::process::id());
    create_topic(brokers, &topic, 6);
    let seed_s = seed.to_string();
    let (input, _) = generate(dir, "mixed", seed, 160_000, "50");
    let o = driftwatch(
        &[
            "gen",
            "--scenario",
            "mixed",
            "--seed",
            &seed_s,
            "--events",
            "160000",
            "--rate",
            "50",
            "--kafka",
            brokers,
            "--topic",
            &topic,
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let replayed = dir.join(format!("replayed-{seed}.jsonl"));
    let o = driftwatch(
        &[
            "replay",
            "--config",
            "examples/replay.yaml",
            "--no-progress",
            "--input",
            input.to_str().unwrap(),
            "--alerts-out",
            replayed.to_str().unwrap(),
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    (topic, replayed)
}

#[test]
fn a_six_partition_topic_gives_the_same_alerts_as_a_replay_of_its_records() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let (topic, replayed) = mixed_topic(&brokers, dir.path(), "mixed", 7);
    let cfg = kafka_config(
        dir.path(),
        &brokers,
        &topic,
        &format!("g-{topic}"),
        Extra::default(),
    );
    let consumed = dir.path().join("consumed.jsonl");
    let o = driftwatch(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--until-idle",
            "5",
            "--alerts-out",
            consumed.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let want = keyed(&replayed);
    assert!(want.len() >= 6, "{want:?}");
    assert_eq!(keyed(&consumed), want, "{}", text(&o));
}

#[test]
fn scram_credentials_from_env_connect_and_wrong_ones_exit_2() {
    let brokers = brokers();
    let scram = std::env::var("KAFKA_SCRAM_BROKERS").expect("KAFKA_SCRAM_BROKERS is not set");
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("scram-{}", std::process::id());
    create_topic(&brokers, &topic, 2);
    let o = driftwatch(
        &[
            "gen",
            "--scenario",
            "flood",
            "--seed",
            "5",
            "--events",
            "40000",
            "--rate",
            "20",
            "--kafka",
            &brokers,
            "--topic",
            &topic,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let cfg = dir.path().join("scram.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source:\n  type: kafka\n  bootstrap_servers: {scram}\n  topics: [{topic}]\n  group_id: g-{topic}\n\
             \x20 sasl: {{mechanism: SCRAM-SHA-256, username: \"${{KAFKA_SCRAM_USER}}\", password: \"${{KAFKA_SCRAM_PASSWORD}}\"}}\n\
             time: {{idle_timeout: 2s}}\nqueries: {}\nalerts: {{stdout: false}}\n",
            root().join("queries").display()
        ),
    )
    .unwrap();
    let run = |password: &str| {
        let alerts = dir.path().join(format!("alerts-{}.jsonl", password.len()));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args([
                "run",
                "--config",
                cfg.to_str().unwrap(),
                "--until-idle",
                "4",
                "--alerts-out",
                alerts.to_str().unwrap(),
            ])
            .env("KAFKA_SCRAM_PASSWORD", password)
            .output()
            .unwrap();
        (o, alerts)
    };
    let good = std::env::var("KAFKA_SCRAM_PASSWORD").expect("KAFKA_SCRAM_PASSWORD is not set");
    let (o, alerts) = run(&good);
    assert!(o.status.success(), "{}", text(&o));
    let firing = jsonl(&alerts);
    assert!(
        firing
            .iter()
            .any(|a| a["rule_id"] == "flood.client_rate" && a["state"] == "firing"),
        "{}",
        text(&o)
    );

    let (o, _) = run("not-the-password");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("authentication failed"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password must not be printed: {err}"
    );
}

#[test]
fn kill_9_mid_topic_then_restart_delivers_every_alert_once() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let (topic, replayed) = mixed_topic(&brokers, dir.path(), "killed", 9);

    // Static membership: a restarted instance takes its partitions back at once.
    let extra = Extra {
        source: "  librdkafka_options: {group.instance.id: killed-test, session.timeout.ms: \"6000\"}\n",
        top: "checkpoint_interval: 50ms\n",
        ..Extra::default()
    };
    let cfg = kafka_config(dir.path(), &brokers, &topic, &format!("g-{topic}"), extra);
    let state = dir.path().join("state");
    let consumed = dir.path().join("consumed.jsonl");
    let args = [
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--until-idle",
        "4",
        "--state-dir",
        state.to_str().unwrap(),
        "--alerts-out",
        consumed.to_str().unwrap(),
    ];
    let mut kills = 0;
    for delay_ms in [100u64, 700] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        crate::checkpoint::wait_for_checkpoint(&state, &mut child);
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 1, "every run ended before its kill");
    let o = driftwatch(&args, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("restored from"),
        "{}",
        text(&o)
    );
    let lines: Vec<String> = jsonl(&consumed)
        .iter()
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect();
    let unique: BTreeSet<&String> = lines.iter().collect();
    assert_eq!(
        unique.len(),
        lines.len(),
        "an (id, state) was delivered twice after {kills} kills"
    );
    assert_eq!(
        keyed(&consumed),
        keyed(&replayed),
        "after {kills} kills: {}",
        text(&o)
    );
}

#[test]
fn bad_records_on_the_topic_are_dead_lettered_and_the_good_ones_processed() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("bad-{}", std::process::id());
    create_topic(&brokers, &topic, 1);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let good = |i: u32| {
        format!(
            r#"{{"ts":"2026-11-21T10:00:{:02}Z","client_id":"c{i}","model":"fraud"}}"#,
            i % 60
        )
    };
    let huge = format!(
        r#"{{"ts":"2026-11-21T10:00:00Z","client_id":"{}"}}"#,
        "x".repeat(5000)
    );
    let bad: Vec<Option<Vec<u8>>> = vec![
        Some(b"\xff\xfe garbage".to_vec()),
        Some(br#"{"ts":"2026-11-21T10:00:00Z","client_id":"k","latency_ms":"slow"}"#.to_vec()),
        Some(br#"{"ts":"2026-11-21T10:00:00Z","cli"#.to_vec()),
        Some(huge.into_bytes()),
        None, // a tombstone
    ];
    let mut sent_good = 0;
    for (i, b) in bad.iter().enumerate() {
        for j in 0..10 {
            let line = good(i as u32 * 10 + j);
            producer
                .send(
                    BaseRecord::<str, _>::to(&topic)
                        .payload(line.as_bytes())
                        .key("k"),
                )
                .unwrap();
            sent_good += 1;
        }
        let record = BaseRecord::<str, [u8]>::to(&topic).key("k");
        let record = match b {
            Some(p) => record.payload(p.as_slice()),
            None => record,
        };
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(20)).unwrap();

    let dead_path = dir.path().join("dead.jsonl");
    let top = format!("dead_letter: {{path: {}}}\n", dead_path.display());
    let extra = Extra {
        max_record_bytes: 1000,
        top: &top,
        ..Extra::default()
    };
    let cfg = kafka_config(dir.path(), &brokers, &topic, &format!("g-{topic}"), extra);
    let o = driftwatch(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--until-idle",
            "5",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = crate::cli::summary(&o.stderr);
    assert_eq!(
        (s["good"], s["bad (dead letter)"]),
        (sent_good, 5),
        "{}",
        text(&o)
    );
    crate::cli::dead_letters(&dead_path, 5, &format!("{topic}/0"));
}
