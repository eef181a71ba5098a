//! Building a pipeline from its config: the decoder, windows, tables, rules,
//! receivers, the HTTP view and the metrics exporters.

use super::*;

impl Pipeline {
    /// Builds every stage; `receivers` are added to those the config asks for.
    pub async fn build(
        config: &Config,
        rules: Vec<Rule>,
        mut receivers: Vec<Box<dyn Receiver>>,
    ) -> Result<Self, PipelineError> {
        // The reference samples hash request ids with a secret of the state directory,
        // so clients that choose their ids cannot choose what the reference holds.
        let sample_key = match &config.state_dir {
            Some(dir) => state::sample_key(dir)?,
            None => {
                // A replay (backtest) needs no secret; a deployment has a state dir.
                tracing::info!(
                    "no state directory: reference samples use an unkeyed hash of the \
                     request id (a client choosing its ids can aim at the sample); \
                     give --state-dir in production"
                );
                0
            }
        };
        let Planned {
            decoder,
            specs,
            rescorer,
            labels,
            tables,
            clients,
            drift,
            reference,
            rule_routes,
            engine,
        } = plan(config, rules, sample_key).await?;
        let mut windows = Windows::new(
            &specs,
            0,
            config.time.allowed_lateness,
            config.time.max_empty_windows,
        );
        windows.set_guard(config.time.guard().map_err(PipelineError::Config)?);
        let counters = Arc::new(Counters::default());
        if config.alerts.stdout {
            receivers.insert(0, Box::new(StdoutReceiver::new()));
        }
        if let Some(path) = &config.alerts.jsonl {
            let r = JsonlReceiver::open(path).map_err(|source| PipelineError::Io {
                what: format!("cannot open alerts file {}", path.display()),
                source,
            })?;
            receivers.push(Box::new(r));
        }
        if let Some(c) = &config.alerts.kafka {
            let r = KafkaReceiver::open(c, counters.clone())
                .map_err(|e| PipelineError::Config(format!("alerts topic: {e}")))?;
            receivers.push(Box::new(r));
        }
        if let Some(o) = &config.otlp {
            o.validate().map_err(PipelineError::Config)?;
        }
        let silences = Arc::new(
            crate::notify::silence::Silences::open(
                config.state_dir.as_ref().map(|d| d.join("silences.json")),
            )
            .map_err(PipelineError::Config)?,
        );
        silences.replace_config(
            crate::notify::silence::from_config(&config.notify.silences)
                .map_err(PipelineError::Config)?,
        );
        let otlp_logs = config.otlp.as_ref().filter(|o| o.logs);
        let mut rerouter = None;
        if !config.notify.receivers.is_empty() || otlp_logs.is_some() {
            let dir = config
                .notify
                .outbox
                .clone()
                .or_else(|| config.state_dir.as_ref().map(|d| d.join("outbox")))
                .ok_or_else(|| {
                    PipelineError::Config(
                        "notify.receivers and otlp.logs need a durable outbox: set \
                         state_dir (or --state-dir), or notify.outbox to a folder"
                            .into(),
                    )
                })?;
            let r = crate::notify::outbox::Outbox::open(
                &config.notify,
                otlp_logs,
                &dir,
                rule_routes,
                silences.clone(),
            )
            .map_err(PipelineError::Config)?;
            rerouter = Some(r.rerouter());
            receivers.push(Box::new(r));
        }
        let metrics = match config.otlp.as_ref().filter(|o| o.metrics) {
            Some(o) => Some(
                crate::otlp::Metrics::start(o, counters.clone()).map_err(PipelineError::Config)?,
            ),
            None => None,
        };
        let dead = DeadLetters::open(
            config.dead_letter.path.as_deref(),
            config.dead_letter.kafka.as_ref(),
            counters.clone(),
        )
        .map_err(PipelineError::Config)?;
        *counters.rules.lock().expect("rules lock") =
            engine.rules().iter().map(|p| p.rule.status()).collect();
        let mut live = crate::http::Live::new(counters.clone(), clients.clone(), silences);
        live.drift = Some(drift.clone());
        live.rescorer = Some(rescorer.clone());
        live.deliveries = receivers
            .iter()
            .filter_map(|r| r.delivery_stats())
            .collect();
        let (reload_tx, reload_rx) = mpsc::channel(4);
        live.reload = Some(reload_tx);
        let live = Arc::new(live);
        receivers.push(Box::new(crate::http::AlertsView(live.clone())));
        let report_setup = Some((config.report.clone(), run_info(config, &engine)));
        Ok(Self {
            report: None,
            report_setup,
            live,
            reload_rx: Some(reload_rx),
            reloadable: Reloadable {
                tables,
                engine: config.engine.clone(),
                queries: config.rule_paths(),
                alerts: config.alerts.clone(),
                notify: config.notify.clone(),
                config_path: config.path.clone(),
            },
            schema: decoder.events_schema(),
            positions: BTreeMap::new(),
            state_dir: config.state_dir.clone(),
            reset_state: config.reset_state,
            checkpoint_interval: config.checkpoint_interval,
            last_checkpoint: Instant::now(),
            writing: None,
            committable: Arc::default(),
            clients,
            drift,
            reference,
            rescorer,
            labels,
            max_record_bytes: config.decode.max_record_bytes,
            book: AlertBook::new(engine.rules().len(), &config.alerts),
            engine: Arc::new(engine),
            in_flight: None,
            windows,
            receivers,
            rerouter,
            dead,
            decoder: Some(decoder),
            decode_threads: config.decode.threads(),
            sources: Vec::new(),
            time: config.time.clone(),
            metrics,
            counters,
            summary: Summary::default(),
        })
    }
}

/// The rules as a report lists them.
pub(super) fn rule_infos(engine: &Engine) -> Vec<crate::report::RuleInfo> {
    let ms = |v: i64| humantime::format_duration(Duration::from_millis(v.max(0) as u64));
    engine
        .rules()
        .iter()
        .map(|p| crate::report::RuleInfo {
            id: p.rule.id().to_owned(),
            name: p.rule.def.name.clone(),
            severity: p.rule.def.severity.as_str().to_owned(),
            window: if p.rule.spec.slide_ms == p.rule.spec.size_ms {
                ms(p.rule.spec.size_ms).to_string()
            } else {
                format!(
                    "{} every {}",
                    ms(p.rule.spec.size_ms),
                    ms(p.rule.spec.slide_ms)
                )
            },
            file: p.rule.file.display().to_string(),
        })
        .collect()
}

/// What a report says the run was made with.
fn run_info(config: &Config, engine: &Engine) -> crate::report::RunInfo {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let sources = match &config.source {
        crate::source::SourceConfig::File(f) => {
            f.paths.iter().map(|p| p.display().to_string()).collect()
        }
        crate::source::SourceConfig::Kafka(k) => vec![format!(
            "Kafka topics {} (group {})",
            k.topics.join(", "),
            k.group_id
        )],
        crate::source::SourceConfig::Generator(g) => vec![format!(
            "generator {:?}, seed {}, {} records",
            g.scenario, g.seed, g.events
        )],
    };
    crate::report::RunInfo {
        command: String::new(),
        config: config.path.as_ref().map(|p| p.display().to_string()),
        sources,
        rules: rule_infos(engine),
        models: config
            .models
            .iter()
            .map(|m| (m.name.clone(), m.version.clone(), m.sha256.clone()))
            .collect(),
        baselines: config
            .baselines
            .iter()
            .zip(&config.baseline_profiles)
            .map(|(path, b)| {
                (
                    b.model.clone(),
                    path.display().to_string(),
                    b.rows,
                    b.source.clone(),
                )
            })
            .collect(),
        settings: vec![
            (
                "allowed lateness".into(),
                duration(config.time.allowed_lateness),
            ),
            (
                "labels".into(),
                if config.labels.is_some() {
                    "delayed labels joined".into()
                } else {
                    "none".into()
                },
            ),
            (
                "report holds".into(),
                format!("the last {} hours of event time", config.report.hours),
            ),
        ],
    }
}

/// What `build` and `check` both make from a config and its rules: the decoder, the
/// embedded models (loaded and checked against their pinned hash), the labels join, the
/// window tables, and every rule planned against them (the routing tree checked).
struct Planned {
    decoder: BatchDecoder,
    specs: Vec<crate::window::WindowSpec>,
    rescorer: Arc<crate::rescore::rescorer::Rescorer>,
    labels: Option<Arc<crate::labels::Labels>>,
    tables: Vec<Arc<dyn crate::tables::WindowTable>>,
    clients: Arc<crate::tables::clients::Clients>,
    drift: Arc<crate::tables::drift::Drift>,
    reference: Arc<crate::tables::reference::Reference>,
    rule_routes: BTreeMap<String, Vec<String>>,
    engine: Engine,
}

async fn plan(
    config: &Config,
    rules: Vec<Rule>,
    sample_key: u64,
) -> Result<Planned, PipelineError> {
    let decoder = BatchDecoder::new(&config.decode).map_err(PipelineError::Config)?;
    let specs: Vec<_> = rules.iter().map(|r| r.spec).collect();
    let served = crate::rescore::serve(
        &config.models,
        Path::new("."),
        &decoder.events_schema(),
        &config.baseline_profiles,
    )
    .map_err(PipelineError::Config)?;
    for m in &served {
        if m.squeeze.as_ref().is_some_and(|s| s.threshold.is_none()) {
            tracing::warn!(
                model = %m.model.name,
                "squeeze has no threshold: squeeze_score is computed, adversarial stays \
                 null (inferwatch model calibrate prints one)"
            );
        }
    }
    let rescorer =
        crate::rescore::rescorer::Rescorer::with_windows(config.rescore.clone(), served, &specs);
    let labels = match &config.labels {
        Some(l) => Some(
            crate::labels::Labels::new(l, &config.models, &config.baseline_profiles)
                .map_err(PipelineError::Config)?,
        ),
        None => None,
    };
    let mut clients_config = config.clients.clone();
    clients_config.sample_key = crate::tables::clients::SampleKey(sample_key);
    clients_config.input_key = match config.state_dir {
        Some(_) => crate::tables::clients::InputKey::from_secret(sample_key),
        // No checkpoint to read back: a key of this run alone.
        None => crate::tables::clients::InputKey::random(),
    };
    clients_config.threads = config.engine.table_threads();
    let crate::tables::StandardTables {
        tables,
        clients,
        drift,
        reference,
    } = crate::tables::standard_tables(
        decoder.events_schema(),
        &config.decode,
        crate::tables::Settings {
            clients: &clients_config,
            drift: &config.drift,
            reference: &config.reference,
            sample_key,
        },
        &config.baseline_profiles,
        rescorer.table(),
    );
    let mut tables = tables;
    tables.extend(crate::labels::tables(
        &labels.clone().unwrap_or_else(crate::labels::Labels::empty),
    ));
    config
        .notify
        .validate(
            rules
                .iter()
                .map(|r| (r.def.id.as_str(), r.def.route.as_slice())),
        )
        .map_err(PipelineError::Config)?;
    let rule_routes: BTreeMap<String, Vec<String>> = rules
        .iter()
        .filter(|r| !r.def.route.is_empty())
        .map(|r| (r.def.id.clone(), r.def.route.clone()))
        .collect();
    let engine = Engine::new(rules, tables.clone(), &config.engine).await?;
    if !rescorer.is_active()
        && let Some(r) = engine
            .rules()
            .iter()
            .find(|p| p.rule.def.rescore || p.rule.def.sql.contains(crate::tables::RESCORED))
    {
        tracing::info!(
            rule = %r.rule.id(),
            "no models are configured: rules with rescore: true flag nobody, and the \
             rescored table stays empty"
        );
    }
    Ok(Planned {
        decoder,
        specs,
        rescorer,
        labels,
        tables,
        clients,
        drift,
        reference,
        rule_routes,
        engine,
    })
}

/// What `inferwatch check` found: the parts of a config that were loaded and checked.
#[derive(Debug)]
pub struct CheckReport {
    pub rules: usize,
    pub models: Vec<String>,
    pub baselines: usize,
    pub receivers: Vec<String>,
    pub tables: Vec<String>,
}

impl Pipeline {
    /// Everything `build` checks, without running or writing anything: the decoder, the
    /// embedded models (loaded and checked against their pinned hash), the labels
    /// settings, every rule planned against the tables, the routing tree, and each
    /// receiver's settings (addresses, URLs, passwords and tokens present, CA files).
    pub async fn check(config: &Config, rules: Vec<Rule>) -> Result<CheckReport, PipelineError> {
        let n = rules.len();
        let planned = plan(config, rules, 0).await?;
        let models = planned
            .rescorer
            .models()
            .iter()
            .map(|m| format!("{} (sha256 checked)", m.model.name))
            .collect();
        let mut names: Vec<String> = planned.tables.iter().map(|t| t.name().to_owned()).collect();
        names.sort();
        let mut receivers = Vec::new();
        for r in &config.notify.receivers {
            let s = crate::notify::Sender::new(r).map_err(PipelineError::Config)?;
            receivers.push(format!("{} ({})", r.name, s.kind()));
        }
        if let Some(o) = &config.otlp {
            o.validate().map_err(PipelineError::Config)?;
        }
        let otlp_logs = config.otlp.as_ref().is_some_and(|o| o.logs);
        if (!config.notify.receivers.is_empty() || otlp_logs)
            && config.notify.outbox.is_none()
            && config.state_dir.is_none()
        {
            return Err(PipelineError::Config(
                "notify.receivers and otlp.logs need a durable outbox: set state_dir (or \
                 --state-dir), or notify.outbox to a folder"
                    .into(),
            ));
        }
        crate::notify::silence::from_config(&config.notify.silences)
            .map_err(PipelineError::Config)?;
        config.time.guard().map_err(PipelineError::Config)?;
        Ok(CheckReport {
            rules: n,
            models,
            baselines: config.baseline_profiles.len(),
            receivers,
            tables: names,
        })
    }
}
