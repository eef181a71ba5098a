//! Operating beside Kafka: a broker that goes away and comes back, and two instances
//! sharing one consumer group.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::cli::{free_port, jsonl, root, summary};
use crate::kafka::{
    Extra, assert_same_alerts, brokers, create_topic, kafka_config, keyed, replay_mixed,
};

/// A broker of the test's own (`scripts/kafka.sh` with its own folder and ports), so
/// that stopping it does not disturb the tests sharing the main one. Stopped on drop.
struct OwnBroker {
    home: tempfile::TempDir,
    /// Plaintext, controller and SCRAM listeners.
    ports: [u16; 3],
}

impl OwnBroker {
    /// On three free ports (see [`free_port`]); a start that fails, as when another
    /// process took a port first, is tried again on others.
    fn start() -> Self {
        let mut errors = Vec::new();
        for _ in 0..3 {
            let b = Self {
                home: tempfile::tempdir().unwrap(),
                ports: [free_port(), free_port(), free_port()],
            };
            match b.run("start") {
                Ok(()) => return b,
                Err(e) => errors.push(e),
            }
        }
        panic!("kafka.sh start failed three times:\n{}", errors.join("\n"));
    }

    fn script(&self, command: &str) {
        if let Err(e) = self.run(command) {
            panic!("{e}");
        }
    }

    fn run(&self, command: &str) -> Result<(), String> {
        let [port, controller, scram] = self.ports;
        let o = Command::new("bash")
            .arg(root().join("scripts/kafka.sh"))
            .arg(command)
            .env("KAFKA_HOME", self.home.path().join("kafka"))
            .env("KAFKA_PORT", port.to_string())
            .env("KAFKA_CONTROLLER_PORT", controller.to_string())
            .env("KAFKA_SCRAM_PORT", scram.to_string())
            .output()
            .unwrap();
        match o.status.success() {
            true => Ok(()),
            false => Err(format!(
                "kafka.sh {command}: {}",
                String::from_utf8_lossy(&o.stderr)
            )),
        }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.ports[0])
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

/// Sends JSONL records, each keyed by its client id as `inferwatch gen --kafka` does.
pub(crate) fn produce_lines(brokers: &str, topic: &str, lines: &[&[u8]]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for line in lines {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
        let key = v["client_id"].as_str().unwrap_or_default().to_owned();
        let mut record = BaseRecord::to(topic).payload(*line).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(20));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn spawn_run(config: &Path, until_idle: &str, extra: &[&str], stderr: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_inferwatch"))
        .args([
            "run",
            "--http",
            "off",
            "--config",
            config.to_str().unwrap(),
            "--until-idle",
            until_idle,
        ])
        .args(extra)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit; kills it after `limit`.
fn finish(child: &mut Child, limit: Duration, stderr: &Path) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!(
                "inferwatch did not finish within {limit:?}:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `group` has committed `n` records of `topic` in all.
pub(crate) fn wait_committed(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    n: i64,
    log: &Path,
) {
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let started = Instant::now();
    loop {
        let done: i64 = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map(|c| {
                c.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum()
            })
            .unwrap_or(0);
        if done >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{done} of {n} records committed:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_broker_stopped_for_20_s_is_waited_for_and_nothing_is_lost() {
    let broker = OwnBroker::start();
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = "outage";
    create_topic(&brokers, topic, 3);
    let (input, replayed) = replay_mixed(dir.path(), 21);
    let bytes = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    produce_lines(&brokers, topic, first);

    // The partitions sit quiet while the broker is away and come back one after another;
    // a partition marked idle in between would see its records arrive behind the
    // watermark of the first one back (late, dead-lettered, alerts differ). Idleness is
    // the one wall-clock decision (DESIGN.md), so this test keeps it out of the way.
    // The consumer group's session outlasts the outage: on a loaded machine stopping and
    // starting the broker's JVM can take longer than the 20 s in between, and a session
    // that expires (45 s by default) makes this a test of rejoining the group instead.
    let extra = Extra {
        top: "checkpoint_interval: 200ms\n",
        idle_timeout: "10m",
        source: "  librdkafka_options: {session.timeout.ms: \"600000\", max.poll.interval.ms: \"600000\"}\n",
        ..Extra::default()
    };
    let cfg = kafka_config(dir.path(), &brokers, topic, "g-outage", extra);
    let state: PathBuf = dir.path().join("state");
    crate::cli::plain_sampling(&state);
    let consumed = dir.path().join("consumed.jsonl");
    let stderr = dir.path().join("run.err");
    let mut child = spawn_run(
        &cfg,
        "6s",
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--alerts-out",
            consumed.to_str().unwrap(),
        ],
        &stderr,
    );
    // The first half read and checkpointed: its offsets are committed.
    wait_committed(&brokers, "g-outage", topic, 3, first.len() as i64, &stderr);
    broker.script("stop");
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        child.try_wait().unwrap().is_none(),
        "inferwatch exited while the broker was down:\n{}",
        std::fs::read_to_string(&stderr).unwrap()
    );
    broker.script("resume");
    produce_lines(&brokers, topic, second);
    let status = finish(&mut child, Duration::from_secs(120), &stderr);
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("waiting for the input"), "{err}");
    assert_eq!(
        summary(err.as_bytes())["records read"],
        lines.len() as u64,
        "{err}"
    );
    let want = keyed(&replayed);
    assert!(want.len() >= 6, "{want:?}");
    assert_same_alerts(&keyed(&consumed), &want, &err);
}

/// (id, state) of the alerts about one client.
fn per_client(path: &Path) -> BTreeSet<String> {
    jsonl(path)
        .iter()
        .filter(|a| a["labels"].get("client_id").is_some())
        .map(|a| format!("{} {}", a["id"], a["state"]))
        .collect()
}

#[test]
fn two_instances_in_one_group_split_the_partitions_and_raise_the_same_alerts() {
    let brokers = brokers();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("pair-{}", std::process::id());
    create_topic(&brokers, &topic, 6);
    let group = format!("g-{topic}");
    // Checkpoints commit offsets: the instance that finishes first leaves the group, and
    // the other one takes its partitions from where it stopped, re-reading nothing.
    let extra = Extra {
        top: "checkpoint_interval: 200ms\n",
        ..Extra::default()
    };
    let cfg = kafka_config(dir.path(), &brokers, &topic, &group, extra);
    // The records (and their replay, the expected alerts) are ready before the instances
    // start: they go to the topic the moment the group is stable, so that `--until-idle`
    // counts from the last record, not from how long a generator takes on a busy machine.
    let (input, replayed) = replay_mixed(dir.path(), 23);
    let bytes = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let run = |name: &str| {
        let alerts = dir.path().join(format!("{name}.jsonl"));
        let stderr = dir.path().join(format!("{name}.err"));
        let state = dir.path().join(format!("state-{name}"));
        crate::cli::plain_sampling(&state);
        let child = spawn_run(
            &cfg,
            "8s",
            &[
                "--alerts-out",
                alerts.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &stderr,
        );
        (child, alerts, stderr)
    };
    let (mut a, a_alerts, a_err) = run("a");
    let (mut b, b_alerts, b_err) = run("b");

    // Both members in, partitions split: only then the records come.
    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let started = Instant::now();
    loop {
        let groups = admin.fetch_group_list(Some(&group), Duration::from_secs(5));
        let stable = groups.is_ok_and(|g| {
            g.groups()
                .first()
                .is_some_and(|g| g.state() == "Stable" && g.members().len() == 2)
        });
        if stable {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the two instances never formed a stable group"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    produce_lines(&brokers, &topic, &lines);

    let limit = Duration::from_secs(120);
    let (sa, sb) = (finish(&mut a, limit, &a_err), finish(&mut b, limit, &b_err));
    let (ea, eb) = (
        std::fs::read_to_string(&a_err).unwrap(),
        std::fs::read_to_string(&b_err).unwrap(),
    );
    assert!(sa.success() && sb.success(), "{ea}\n{eb}");
    let (ra, rb) = (
        summary(ea.as_bytes())["records read"],
        summary(eb.as_bytes())["records read"],
    );
    assert!(ra > 0 && rb > 0, "one instance read nothing: {ra} + {rb}");
    assert_eq!(
        ra + rb,
        lines.len() as u64,
        "the instances read {ra} + {rb} records"
    );
    let mut together = per_client(&a_alerts);
    together.extend(per_client(&b_alerts));
    let want = per_client(&replayed);
    assert!(want.len() >= 6, "{want:?}");
    assert_eq!(together, want, "{ea}\n{eb}");
}
