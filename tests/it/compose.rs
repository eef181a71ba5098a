//! `docker-compose.yml` and the `Dockerfile`, checked as far as a machine without a
//! container engine allows: the files parse, every file they refer to exists, and the
//! ports, hosts and variables of inferwatch's config match the other services.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::cli::root;

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join(path)).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// host:port → (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |x| x.1);
    let (h, p) = rest.trim_end_matches('/').rsplit_once(':').unwrap();
    (h.to_owned(), p.parse().unwrap())
}

#[test]
fn compose_files_exist_and_ports_hosts_and_variables_match_the_config() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(s).collect();
    for want in [
        "kafka",
        "gen",
        "inferwatch",
        "otel-collector",
        "prometheus",
        "grafana",
        "mailcatcher",
    ] {
        assert!(names.contains(&want), "service {want} missing: {names:?}");
    }
    // Every mounted host file exists; the inferwatch image is built by the Dockerfile.
    for (name, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = s(v);
            if let Some(host) = v.strip_prefix("./") {
                let host = host.split(':').next().unwrap();
                assert!(
                    root().join(host).exists(),
                    "{}: mounts ./{host}, which does not exist",
                    s(name)
                );
            }
        }
        if svc["build"].as_str() == Some(".") {
            assert!(root().join("Dockerfile").exists());
        }
    }
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                root().join(src).exists(),
                "Dockerfile copies {src}, which is missing"
            );
        }
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime image sets a USER");
    assert_ne!(user.trim(), "root");

    // inferwatch's config, with the service's environment, is a valid config.
    let dw = &compose["services"]["inferwatch"];
    let env: BTreeMap<String, String> = dw["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (s(k).to_owned(), s(v).to_owned()))
        .collect();
    let command: Vec<&str> = dw["command"].as_sequence().unwrap().iter().map(s).collect();
    let cfg_in_container = command[command.iter().position(|a| *a == "--config").unwrap() + 1];
    let mounted = dw["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .find_map(|v| {
            let (host, rest) = v.split_once(':')?;
            (rest.split(':').next()? == cfg_in_container).then(|| host.trim_start_matches("./"))
        })
        .expect("the config file is mounted");
    let text = std::fs::read_to_string(root().join(mounted)).unwrap();
    let text = inferwatch::config::interpolate_env(&text, |v| env.get(v).cloned())
        .unwrap_or_else(|v| panic!("the config needs ${{{v}}}, which the service does not set"));
    let config: inferwatch::config::Config = serde_yaml::from_str(&text).unwrap();
    config.notify.validate(std::iter::empty()).unwrap();
    assert!(
        config
            .http
            .token_env
            .as_ref()
            .is_some_and(|t| env.contains_key(t))
    );
    // The queries folder the config names is where the image puts the rules.
    assert!(
        dockerfile.contains(&format!("COPY queries {}", config.queries.display())),
        "rules are not at {}",
        config.queries.display()
    );

    // Ports and hosts line up.
    let (_, http_port) = host_port(config.http.listen.as_deref().unwrap());
    let published: Vec<&str> = dw["ports"].as_sequence().unwrap().iter().map(s).collect();
    assert!(
        published
            .iter()
            .any(|p| p.ends_with(&format!(":{http_port}"))),
        "inferwatch listens on {http_port}, publishes {published:?}"
    );
    let prom = yaml("compose/prometheus.yml");
    let target = s(&prom["scrape_configs"][0]["static_configs"][0]["targets"][0]);
    assert_eq!(target, format!("inferwatch:{http_port}"));
    let email = config.notify.receivers[0].email.as_ref().unwrap();
    let (smtp_host, smtp_port) = host_port(&email.smarthost);
    assert!(names.contains(&smtp_host.as_str()), "SMTP host {smtp_host}");
    assert_eq!(smtp_port, 1025, "mailpit's SMTP port");
    let otlp = config.otlp.as_ref().unwrap();
    let (otel_host, otel_port) = host_port(otlp.endpoint.as_deref().unwrap());
    assert!(names.contains(&otel_host.as_str()), "OTLP host {otel_host}");
    let collector = yaml("compose/otel-collector.yaml");
    let grpc = s(&collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]);
    assert_eq!(host_port(grpc).1, otel_port);
    let ds = yaml("compose/grafana/datasources.yaml");
    let (ds_host, ds_port) = host_port(s(&ds["datasources"][0]["url"]));
    assert_eq!((ds_host.as_str(), ds_port), ("prometheus", 9090));
    assert_eq!(
        s(&ds["datasources"][0]["uid"]),
        "prometheus",
        "the dashboards' data source uid"
    );
    let provider = yaml("compose/grafana/dashboards.yaml");
    let path = s(&provider["providers"][0]["options"]["path"]);
    let grafana_volumes: Vec<&str> = compose["services"]["grafana"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert!(
        grafana_volumes
            .iter()
            .any(|v| v.starts_with("./dashboards:") && v.contains(path)),
        "dashboards are not mounted at {path}"
    );
    // The broker address inferwatch and the generator use is the Kafka service's.
    let (kafka_host, _) = host_port(&env["KAFKA_BROKERS"]);
    assert!(names.contains(&kafka_host.as_str()));
    let generator: Vec<&str> = compose["services"]["gen"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert!(generator.contains(&env["KAFKA_BROKERS"].as_str()));
    assert!(generator.contains(&env["INFERWATCH_TOPIC"].as_str()));
}
