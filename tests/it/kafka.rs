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

fn kafka_config(dir: &Path, brokers: &str, topic: &str, group: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{group}.yaml"));
    std::fs::write(
        &path,
        format!(
            "source:\n  type: kafka\n  bootstrap_servers: {brokers}\n  topics: [{topic}]\n  group_id: {group}\n\
             decode:\n  features:\n    - {{name: amount, type: numerical}}\n    - {{name: country, type: categorical}}\n\
             time: {{idle_timeout: 2s}}\n\
             queries: {}\n\
             alerts: {{stdout: false}}\n",
            root().join("queries").display()
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

#[test]
fn a_six_partition_topic_gives_the_same_alerts_as_a_replay_of_its_records() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("mixed-{}", std::process::id());
    create_topic(&brokers, &topic, 6);
    let (input, _) = generate(dir.path(), "mixed", 7, 160_000, "50");
    let o = driftwatch(
        &[
            "gen",
            "--scenario",
            "mixed",
            "--seed",
            "7",
            "--events",
            "160000",
            "--rate",
            "50",
            "--kafka",
            &brokers,
            "--topic",
            &topic,
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));

    let replayed = dir.path().join("replayed.jsonl");
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
        dir.path(),
    );
    assert!(o.status.success(), "{}", text(&o));

    let cfg = kafka_config(dir.path(), &brokers, &topic, &format!("g-{topic}"));
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
