//! Against the real Apache Kafka broker that `scripts/kafka.sh start` runs
//! (`scripts/test.sh` and CI start it and set KAFKA_BROKERS). Without it these tests fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::cli::{generate, inferwatch, jsonl, root, text};

pub(crate) fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: start the test broker (scripts/kafka.sh start) and run \
         the tests with scripts/test.sh",
    )
}

pub(crate) fn create_topic(brokers: &str, topic: &str, partitions: i32) {
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

/// One message read back from a topic.
pub(crate) struct Message {
    pub key: Option<String>,
    pub headers: BTreeMap<String, String>,
    payload: Vec<u8>,
}

/// Every message of `topic`, partition by partition, from its start to its current end.
pub(crate) fn read_topic(brokers: &str, topic: &str) -> Vec<Message> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message as _};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("read-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut left = BTreeMap::new();
    for p in meta.topics()[0].partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        if high > 0 {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
            left.insert(p.id(), high);
        }
    }
    let mut out = Vec::new();
    if left.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let started = std::time::Instant::now();
    while !left.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "cannot read {topic}"
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Message {
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: m.payload().unwrap_or_default().to_vec(),
        });
        if left
            .get(&m.partition())
            .is_some_and(|&end| m.offset() + 1 >= end)
        {
            left.remove(&m.partition());
        }
    }
    out
}

/// (id, state) of every alert in the alerts topic, as `keyed` lists them, checking that
/// each message is keyed by its alert id and carries its idempotency key.
pub(crate) fn alerts_in_topic(brokers: &str, topic: &str) -> Vec<String> {
    read_topic(brokers, topic)
        .iter()
        .map(|m| {
            let a: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(m.key.as_deref(), a["id"].as_str(), "{a}");
            assert_eq!(
                m.headers.get("idempotency_key").map(String::as_str),
                a["notification_id"].as_str(),
                "{a}"
            );
            format!("{} {}", a["id"], a["state"])
        })
        .collect()
}

/// Settings a test adds to the common Kafka config.
#[derive(Default)]
pub(crate) struct Extra<'a> {
    /// Lines for the `source:` section (indented by two spaces).
    pub source: &'a str,
    /// `decode.max_record_bytes`; 0 keeps the default.
    pub max_record_bytes: usize,
    /// Top-level lines.
    pub top: &'a str,
    /// More entries of the `alerts:` map, each starting with ", ".
    pub alerts: &'a str,
    /// `time.idle_timeout`; empty keeps the tests' 2s.
    pub idle_timeout: &'a str,
}

pub(crate) fn kafka_config(
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
             decode:\n{max}  features:\n    - {{name: amount, type: numerical}}\n    - {{name: age, type: numerical}}\n    - {{name: country, type: categorical}}\n    - {{name: merchant_risk, type: numerical}}\n    - {{name: hour, type: numerical}}\n\
             time: {{idle_timeout: {}}}\n\
             queries: {}\n\
             alerts: {{stdout: false{}}}\n{}",
            extra.source,
            if extra.idle_timeout.is_empty() {
                "2s"
            } else {
                extra.idle_timeout
            },
            root().join("queries").display(),
            extra.alerts,
            extra.top
        ),
    )
    .unwrap();
    path
}

/// (id, state) of every notification, leaving out the bad-records rule: malformed
/// records carry no client id, so they land in any partition and are counted in the
/// window of that partition's newest event time, which depends on the partitioning.
pub(crate) fn keyed(path: &Path) -> BTreeSet<String> {
    jsonl(path)
        .iter()
        .filter(|a| a["rule_id"] != "ingest.bad_records")
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect()
}

/// Asserts that a run notified exactly the (id, state) pairs of `want`, naming the
/// pairs missing and extra before the run's log.
pub(crate) fn assert_same_alerts(got: &BTreeSet<String>, want: &BTreeSet<String>, log: &str) {
    let missing: Vec<_> = want.difference(got).collect();
    let extra: Vec<_> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}\n{log}"
    );
}

/// A 6-partition topic holding the `mixed` scenario of `seed`, and the alerts file of a
/// replay of the same records.
pub(crate) fn mixed_topic(
    brokers: &str,
    dir: &Path,
    name: &str,
    seed: u64,
) -> (String, std::path::PathBuf) {
    let topic = format!("{name}-{}", std::process::id());
    create_topic(brokers, &topic, 6);
    produce_mixed(brokers, dir, &topic, seed);
    (topic, replay_mixed(dir, seed).1)
}

/// `inferwatch gen --kafka` of the `mixed` scenario of `seed` (160,000 records).
pub(crate) fn produce_mixed(brokers: &str, dir: &Path, topic: &str, seed: u64) {
    let seed = seed.to_string();
    let o = inferwatch(
        &[
            "gen",
            "--scenario",
            "mixed",
            "--seed",
            &seed,
            "--events",
            "160000",
            "--rate",
            "50",
            "--kafka",
            brokers,
            "--topic",
            topic,
        ],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// The records `produce_mixed` sends, as a file, and the alerts file of their replay.
pub(crate) fn replay_mixed(dir: &Path, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let (input, _) = generate(dir, "mixed", seed, 160_000, "50");
    let replayed = dir.join(format!("replayed-{seed}.jsonl"));
    let o = inferwatch(
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
    (input, replayed)
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
    let o = crate::cli::run_until_idle(&cfg, "5s", &consumed, dir.path());
    assert!(o.status.success(), "{}", text(&o));
    let want = keyed(&replayed);
    assert!(want.len() >= 6, "{want:?}");
    assert_same_alerts(&keyed(&consumed), &want, &text(&o));
    // Lag from librdkafka's statistics: everything read; without a state directory
    // nothing is committed, so the whole topic counts as uncommitted.
    let s = crate::cli::summary(&o.stderr);
    // No record is late: a pipeline that falls behind must not make a partition look
    // idle (8,192 records were dead-lettered as late before the source clock).
    assert_eq!(
        (
            s["records read"],
            s["late (dead letter)"],
            s["kafka read lag"],
            s["kafka commit lag"]
        ),
        (160_000, 0, 0, 160_000),
        "{}",
        text(&o)
    );
}

#[test]
fn scram_credentials_from_env_connect_and_wrong_ones_exit_2() {
    let brokers = brokers();
    let scram = std::env::var("KAFKA_SCRAM_BROKERS").expect("KAFKA_SCRAM_BROKERS is not set");
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("scram-{}", std::process::id());
    create_topic(&brokers, &topic, 2);
    let o = inferwatch(
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
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_inferwatch"))
            .args([
                "run",
                "--http",
                "off",
                "--config",
                cfg.to_str().unwrap(),
                "--until-idle",
                "4s",
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

    let alerts_topic = format!("alerts-{topic}");
    create_topic(&brokers, &alerts_topic, 3);
    let alerts = format!(", kafka: {{topic: {alerts_topic}}}");
    // Static membership: a restarted instance takes its partitions back at once.
    // Idleness is the one wall-clock decision: on a loaded machine the source thread
    // can spend more than the tests' 2 s decoding other partitions' fetches, a partition
    // is marked idle and its next records are late, and the alerts differ from the
    // replay for a reason this test is not about. `--until-idle` ends the run.
    let extra = Extra {
        source: "  librdkafka_options: {group.instance.id: killed-test, session.timeout.ms: \"6000\"}\n",
        top: "checkpoint_interval: 50ms\n",
        alerts: &alerts,
        idle_timeout: "10m",
        ..Extra::default()
    };
    let cfg = kafka_config(dir.path(), &brokers, &topic, &format!("g-{topic}"), extra);
    let state = dir.path().join("state");
    crate::cli::plain_sampling(&state);
    let consumed = dir.path().join("consumed.jsonl");
    let args = [
        "run",
        "--http",
        "off",
        "--config",
        cfg.to_str().unwrap(),
        "--until-idle",
        "4s",
        "--state-dir",
        state.to_str().unwrap(),
        "--alerts-out",
        consumed.to_str().unwrap(),
    ];
    // First a kill right after the first alert, with the first regular checkpoint an
    // hour away: what was written before it is not written twice either.
    let slow = dir.path().join("slow.yaml");
    std::fs::write(
        &slow,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("checkpoint_interval: 50ms", "checkpoint_interval: 1h"),
    )
    .unwrap();
    let mut slow_args = args;
    slow_args[4] = slow.to_str().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args(slow_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let alerted = crate::cli::eventually(Duration::from_secs(120), Some(&mut child), || {
        std::fs::metadata(&consumed).is_ok_and(|m| m.len() > 0)
    });
    assert!(alerted, "no alert before the run ended");
    let mut kills = 0;
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
        kills += 1;
    }
    child.wait().unwrap();
    for delay_ms in [100u64, 700] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_inferwatch"))
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
    let o = inferwatch(&args, dir.path());
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
    let in_topic = alerts_in_topic(&brokers, &alerts_topic);
    let unique: BTreeSet<&String> = in_topic.iter().collect();
    assert_eq!(
        unique.len(),
        in_topic.len(),
        "the alerts topic holds an (id, state) twice after {kills} kills"
    );
    assert_eq!(unique, lines.iter().collect(), "alerts topic vs file");
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
    let dead_topic = format!("dead-{topic}");
    create_topic(&brokers, &dead_topic, 1);
    let top = format!(
        "dead_letter: {{path: {}, kafka: {{topic: {dead_topic}}}}}\n",
        dead_path.display()
    );
    let extra = Extra {
        max_record_bytes: 1000,
        top: &top,
        ..Extra::default()
    };
    let cfg = kafka_config(dir.path(), &brokers, &topic, &format!("g-{topic}"), extra);
    let o = inferwatch(
        &[
            "run",
            "--http",
            "off",
            "--config",
            cfg.to_str().unwrap(),
            "--until-idle",
            "5s",
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
    let source = format!("{topic}/0");
    let in_file = crate::cli::dead_letters(&dead_path, 5, &source);
    // The topic holds the same dead letters: raw bytes as they came, the rest in headers.
    let in_topic: Vec<serde_json::Value> = read_topic(&brokers, &dead_topic)
        .into_iter()
        .map(|m| {
            let h = &m.headers;
            assert_eq!(h["source_topic"], topic);
            assert_eq!(h["source_partition"], "0");
            assert_eq!(h["source_offset"], h["position"]);
            assert_eq!(h["kind"], "bad");
            serde_json::json!({
                "reason": h["reason"],
                "source": h["source"],
                "position": h["position"].parse::<u64>().unwrap(),
                "payload": m.payload,
            })
        })
        .collect();
    let in_topic = crate::cli::check_dead_letters(in_topic, 5, &source);
    let mut payloads: Vec<Vec<u8>> = in_topic
        .iter()
        .map(|d| serde_json::from_value(d["payload"].clone()).unwrap())
        .collect();
    payloads.sort();
    let mut sent: Vec<Vec<u8>> = bad.into_iter().map(Option::unwrap_or_default).collect();
    sent.sort();
    // Raw bytes as they came; of an oversized record, its first 256 bytes.
    assert_eq!(payloads.len(), sent.len());
    for (got, want) in payloads.iter().zip(&sent) {
        let whole = want.len() <= 1000;
        assert!(
            if whole {
                got == want
            } else {
                got.len() == 256 && want.starts_with(got)
            },
            "{} vs {}",
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want)
        );
    }
    let positions = |d: &[serde_json::Value]| -> Vec<u64> {
        d.iter().map(|d| d["position"].as_u64().unwrap()).collect()
    };
    assert_eq!(positions(&in_topic), positions(&in_file));
}

/// A bad record of 1,000,500 bytes: under `decode.max_record_bytes` (1 MiB), over
/// librdkafka's `message.max.bytes` (1,000,000). Its dead letter goes to the topic
/// truncated, with the whole record's size and SHA-256 in headers, and the run ends
/// well (a failed run would fail again on every restart).
#[test]
fn a_dead_letter_over_the_producers_limit_is_sent_truncated_with_its_size_and_hash() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let dead_topic = format!("dead-big-{}", std::process::id());
    create_topic(&brokers, &dead_topic, 1);
    // A string where a number belongs: undecodable, and the decoder's reason quotes it.
    let (head, tail) = (
        r#"{"ts":"2026-11-21T10:00:00Z","client_id":"k","latency_ms":""#,
        r#""}"#,
    );
    let record = format!(
        "{head}{}{tail}",
        "x".repeat(1_000_500 - head.len() - tail.len())
    );
    let good = r#"{"ts":"2026-11-21T10:00:01Z","client_id":"c1","model":"fraud"}"#;
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, format!("{good}\n{record}\n{good}\n")).unwrap();
    // Its size and hash from coreutils, not from inferwatch.
    let alone = dir.path().join("record");
    std::fs::write(&alone, &record).unwrap();
    let sha = std::process::Command::new("sha256sum")
        .arg(&alone)
        .output()
        .unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    let sha = sha.split_whitespace().next().unwrap();
    let size = std::fs::metadata(&alone).unwrap().len();
    assert_eq!(size, 1_000_500);

    let cfg = dir.path().join("big.yaml");
    std::fs::write(
        &cfg,
        format!(
            "source: {{type: file, paths: [{}]}}\n{}queries: {}\nalerts: {{stdout: false}}\n\
             dead_letter: {{path: {}, kafka: {{topic: {dead_topic}, bootstrap_servers: {brokers}}}}}\n",
            input.display(),
            crate::cli::FEATURES,
            root().join("queries").display(),
            dir.path().join("dead.jsonl").display(),
        ),
    )
    .unwrap();
    let o = inferwatch(
        &["run", "--http", "off", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = crate::cli::summary(&o.stderr);
    assert_eq!((s["good"], s["bad (dead letter)"]), (2, 1), "{}", text(&o));

    let dead = read_topic(&brokers, &dead_topic);
    assert_eq!(dead.len(), 1, "{}", text(&o));
    let m = &dead[0];
    let h = &m.headers;
    assert!(
        h.get("truncated").is_some_and(|t| t.starts_with("payload")),
        "{h:?}"
    );
    assert_eq!(h["original_size"], size.to_string());
    assert_eq!(h["original_sha256"], sha);
    assert_eq!(h["kind"], "bad");
    assert!(h["reason"].starts_with("wrong type"), "{}", h["reason"]);
    assert!(
        m.payload.len() < 1_000_000 && record.as_bytes().starts_with(&m.payload),
        "{} bytes",
        m.payload.len()
    );
}
