//! The command line: `run`, `replay`, `gen`, `rules check`, `rules test`. Exit codes: 0
//! success, 1 runtime failure, 2 bad usage, config or rules — always with a one-line
//! reason on standard error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::pipeline::{Pipeline, PipelineError, RunOptions};
use crate::rules::engine::Engine;
use crate::rules::load_rules;
use crate::scenario::{GenOptions, Scenario};
use crate::source::SourceConfig;
use crate::source::file::FileSourceConfig;
use crate::telemetry::Summary;

pub mod rules_test;

#[derive(Parser, Debug)]
#[command(
    name = "inferwatch",
    version,
    about = "Watches ML inference traffic for attacks and decay with SQL detection rules."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on standard error as `text` or as `json` (one object per line).
    /// `INFERWATCH_LOG` sets the level (any `tracing` filter; default `warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job: read the configured source, evaluate rules, send alerts.
    Run(RunArgs),
    /// The same pipeline over JSONL(.gz) files, to their end, then a summary.
    Replay(ReplayArgs),
    /// Write deterministic synthetic traffic with planted episodes.
    Gen(GenArgs),
    /// Validate or test detection rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Reference profiles of a model, from its training or reference data.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Embedded models: calibrate the feature-squeezing threshold.
    #[command(subcommand)]
    Model(ModelCommand),
    /// The configuration file's format.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `inferwatch completions bash > ...`.
    Completions { shell: clap_complete::Shell },
    /// Check a whole config without running it: rules planned, models loaded and
    /// hash-checked, baselines read, receivers and routes resolved.
    Check(CheckArgs),
    /// Read the configured source without decoding or rules, and print the rate: the
    /// baseline `bench/kafka.sh` compares `run` with.
    #[command(hide = true)]
    Consume(RunArgs),
}

#[derive(Args, Debug)]
pub struct Common {
    /// Configuration file (YAML, or TOML by extension).
    #[arg(long)]
    pub config: PathBuf,
    /// Rule folder (replaces `queries` of the config).
    #[arg(long)]
    pub queries: Option<PathBuf>,
    /// Append alert state changes as JSON lines to this file.
    #[arg(long)]
    pub alerts_out: Option<PathBuf>,
    /// Keep checkpoints here; resume from the newest one on start.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Ignore (and later overwrite) the checkpoint in the state directory.
    #[arg(long)]
    pub reset_state: bool,
    /// A model's reference profile (`inferwatch baseline build`); repeat for each model.
    /// Added to `baselines` of the config.
    #[arg(long, value_name = "FILE")]
    pub baseline: Vec<PathBuf>,
    /// The HTTP server's address (health, metrics, alerts, rules, silences, the report),
    /// or `off`.
    /// `run` default: `http.listen` of the config, else 127.0.0.1:9797; `replay`: off.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Exit 0 after this long with no new records (tests, demos): `30s`, `2m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub until_idle: Option<Duration>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: Common,
    /// Input files (JSONL, plain or .gz), read side by side like partitions.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Delayed true labels (JSONL, plain or .gz): the `labels:` source for this replay
    /// (the rest of `labels:` from the config, or its defaults).
    #[arg(long, num_args = 1..)]
    pub labels: Vec<PathBuf>,
    /// Write an HTML report of the run to this file at the end (one self-contained
    /// page: alerts, drift, clients, performance, pipeline).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub events: u64,
    /// Output file (.gz is compressed).
    #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
    pub out: Option<PathBuf>,
    /// Produce to Kafka instead (bootstrap servers), keyed by client id.
    #[arg(long, requires = "topic")]
    pub kafka: Option<String>,
    /// Topic for --kafka.
    #[arg(long)]
    pub topic: Option<String>,
    /// Where to write the planted episodes (JSON lines).
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Honest records per second of event time.
    #[arg(long, default_value_t = crate::source::generator::default_rate())]
    pub rate: f64,
    /// Honest clients (the population; memory benchmarks use 100,000 and more).
    #[arg(long, default_value_t = crate::scenario::DEFAULT_CLIENTS)]
    pub clients: usize,
}

#[derive(Subcommand, Debug)]
pub enum BaselineCommand {
    /// Profile a Parquet or CSV file (header row): every column but the record fields,
    /// the label and the score is a feature, numerical or categorical by its type.
    Build {
        /// The model the profile is for (the `model` field of its records).
        #[arg(long)]
        model: String,
        /// Training or reference data, `.parquet` or `.csv`.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the profile.
        #[arg(long)]
        out: PathBuf,
        /// Column of the predicted (or true) label.
        #[arg(long, default_value = "prediction_label")]
        label_column: String,
        /// Column of the model's score.
        #[arg(long, default_value = "prediction_score")]
        score_column: String,
        /// Column of the true labels of held-out rows: the profile then holds the
        /// accuracy and per-class recall, precision and F1 of `--label-column` against
        /// them (what the `performance` tables compare with).
        #[arg(long)]
        true_label_column: Option<String>,
        /// Take the held-out performance from this file (Parquet or CSV with the true
        /// labels) instead of `--input`: the training data profiles the features, the
        /// held-out rows say how well the model does.
        #[arg(long, requires = "true_label_column")]
        held_out: Option<PathBuf>,
        /// Score the held-out rows with the model's embedded copy (its `models:` entry
        /// in this config) instead of reading `--label-column` and `--score-column`.
        #[arg(long, requires = "held_out")]
        config: Option<PathBuf>,
    },
    /// Test a whole Parquet or CSV file of current data against a baseline: one row per
    /// feature (and label, score) with the test, statistic and verdict the drift tables
    /// would give, and the share of drifted features.
    Compare {
        /// The model's profile (`baseline build`).
        #[arg(long)]
        baseline: PathBuf,
        /// Current data, `.parquet` or `.csv`, with the baseline's column names.
        #[arg(long)]
        input: PathBuf,
        /// Config whose `drift:` section sets tests and thresholds (default: defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "prediction_label")]
        label_column: String,
        #[arg(long, default_value = "prediction_score")]
        score_column: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Score a file of benign inputs (a column per feature, `.csv` or `.parquet`) with
    /// a model of the config and its squeezer, and print the squeezing threshold that
    /// flags `--fpr` of them, for `models[].squeeze.threshold`.
    Calibrate {
        /// The config that lists the model (`models:`) and its baseline.
        #[arg(long)]
        config: PathBuf,
        /// The model's name in `models:`.
        #[arg(long)]
        model: String,
        /// Benign inputs: training data or a sample of honest traffic.
        #[arg(long)]
        input: PathBuf,
        /// The share of benign inputs the threshold may flag.
        #[arg(long, default_value_t = 0.05)]
        fpr: f64,
        /// A model's reference profile, added to the config's `baselines`.
        #[arg(long, value_name = "FILE")]
        baseline: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the JSON Schema of the configuration file (for editors and CI checks).
    Schema,
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Check rule files and their SQL without running anything.
    Check {
        /// Config whose `decode.features` define the feature columns of `events`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rule files or folders (default: queries).
        paths: Vec<PathBuf>,
    },
    /// Run rule test files.
    Test {
        /// Test files or folders (default: tests/rules).
        paths: Vec<PathBuf>,
        /// Also write the results as JUnit XML (for CI test reports).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
}

/// A duration on the command line, in the config's syntax: `30s`, `2m`, `1h30m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (a duration such as 30s or 2m)"))
}

/// An error with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }
    fn runtime(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<PipelineError> for Failure {
    fn from(e: PipelineError) -> Self {
        Self {
            code: if e.is_usage() { 2 } else { 1 },
            message: e.to_string(),
        }
    }
}

pub async fn main(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Replay(args) => replay(args).await,
        Command::Gen(args) => gen_cmd(args),
        Command::Rules(RulesCommand::Check { config, paths }) => rules_check(config, paths).await,
        Command::Rules(RulesCommand::Test { paths, junit }) => rules_test(paths, junit).await,
        Command::Consume(args) => consume(args),
        Command::Check(args) => check(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "inferwatch",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Schema) => {
            println!("{}", crate::config::schema_json());
            Ok(())
        }
        Command::Model(ModelCommand::Calibrate {
            config,
            model,
            input,
            fpr,
            baseline,
        }) => model_calibrate(&config, &model, &input, fpr, baseline),
        Command::Baseline(BaselineCommand::Build {
            model,
            input,
            out,
            label_column,
            score_column,
            true_label_column,
            held_out,
            config,
        }) => {
            let opts = crate::baseline::BuildOptions {
                model,
                label_column,
                score_column,
                // With a held-out file, the true labels are there, not in the input.
                true_label_column: true_label_column.clone().filter(|_| held_out.is_none()),
            };
            let held_out = held_out.map(|path| HeldOutSource {
                path,
                true_label_column: true_label_column.unwrap_or_default(),
                config,
            });
            baseline_build(&input, &out, &opts, held_out.as_ref())
        }
        Command::Baseline(BaselineCommand::Compare {
            baseline,
            input,
            config,
            json,
            label_column,
            score_column,
        }) => baseline_compare(
            &baseline,
            &input,
            config.as_deref(),
            json,
            (&label_column, &score_column),
        ),
    }
}

fn model_calibrate(
    config: &std::path::Path,
    name: &str,
    input: &std::path::Path,
    fpr: f64,
    baselines: Vec<PathBuf>,
) -> Result<(), Failure> {
    let mut config = Config::load(config).map_err(|e| Failure::usage(e.to_string()))?;
    config.baselines.extend(baselines);
    config.load_baselines().map_err(Failure::usage)?;
    let c = config
        .models
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
            Failure::usage(if names.is_empty() {
                format!("no model {name}: the config has no models: section")
            } else {
                format!(
                    "no model {name} under models: in the config (it lists: {})",
                    names.join(", ")
                )
            })
        })?;
    let model = crate::rescore::EmbeddedModel::load(c).map_err(Failure::usage)?;
    let squeeze_cfg = c.squeeze.clone().unwrap_or_default();
    let baseline = config
        .baseline_profiles
        .iter()
        .find(|b| b.model == name)
        .map(|b| &**b);
    let squeezer =
        crate::rescore::squeeze::Squeezer::new(&squeeze_cfg, name, &c.features, baseline)
            .map_err(Failure::usage)?;
    let table = crate::baseline::Table::read(input).map_err(|e| Failure::usage(e.to_string()))?;
    let cal = crate::rescore::squeeze::calibrate(&model, &squeezer, &table, fpr)
        .map_err(Failure::usage)?;
    let [q50, q90, q95, q99] = cal.quantiles;
    println!(
        "model {name}: {} benign rows scored ({} left out for a missing feature), {} levels",
        cal.rows, cal.skipped, squeeze_cfg.levels
    );
    println!("squeezing score quantiles: 50% {q50:.6}  90% {q90:.6}  95% {q95:.6}  99% {q99:.6}");
    println!(
        "threshold at {:.1}% false positives: {:.6} (flags {:.2}% of these rows)",
        100.0 * cal.fpr,
        cal.threshold,
        100.0 * cal.flagged
    );
    println!(
        "for the config:\n    squeeze: {{levels: {}, threshold: {:.6}}}",
        squeeze_cfg.levels, cal.threshold
    );
    Ok(())
}

fn baseline_compare(
    baseline: &std::path::Path,
    input: &std::path::Path,
    config: Option<&std::path::Path>,
    json: bool,
    (label_column, score_column): (&str, &str),
) -> Result<(), Failure> {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    let started = std::time::Instant::now();
    let drift_cfg = match config {
        Some(p) => {
            Config::load(p)
                .map_err(|e| Failure::usage(e.to_string()))?
                .drift
        }
        None => Default::default(),
    };
    let b = crate::baseline::Baseline::load(baseline).map_err(|e| Failure::usage(e.to_string()))?;
    let columns = crate::baseline::Table::read(input).map_err(|e| Failure::usage(e.to_string()))?;
    let model = b.model.clone();
    let decls = b.feature_decls();
    // A file without the baseline's features compares nothing: an error naming them,
    // never "0 of 0 features drifted".
    let have: std::collections::BTreeSet<String> = columns.names().into_iter().collect();
    let missing: Vec<&str> = decls
        .iter()
        .map(|d| d.name.as_str())
        .filter(|n| !have.contains(*n))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::usage(format!(
            "{} lacks {} of the {} features of the baseline {} (model {model:?}): {}",
            input.display(),
            missing.len(),
            decls.len(),
            baseline.display(),
            missing.join(", ")
        )));
    }
    // A whole file against the baseline: no rolling reference is read.
    let reference =
        crate::tables::reference::Reference::new(&decls, &Default::default(), 0, [model.clone()]);
    let drift =
        crate::tables::drift::Drift::new(&decls, &drift_cfg, &[std::sync::Arc::new(b)], reference);
    let batch: RecordBatch = drift
        .compare_columns(&model, &columns, label_column, score_column)
        .map_err(|message| Failure { code: 1, message })?;
    let elapsed = started.elapsed();
    if json {
        let mut w = datafusion::arrow::json::LineDelimitedWriter::new(std::io::stdout().lock());
        w.write(&batch)
            .and_then(|_| w.finish())
            .map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
    } else {
        let table =
            datafusion::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(&batch))
                .map_err(|e| Failure {
                    code: 1,
                    message: e.to_string(),
                })?;
        println!("{table}");
    }
    let column = |name: &str| {
        batch.column_by_name(name).ok_or_else(|| Failure {
            code: 1,
            message: format!("internal: no column {name} in the drift rows"),
        })
    };
    let features = column("feature")?.as_string::<i32>();
    let drifted = column("drifted")?.as_boolean();
    let (mut n, mut d) = (0, 0);
    for i in 0..batch.num_rows() {
        if !matches!(features.value(i), "label" | "score") {
            n += 1;
            d += usize::from(drifted.value(i));
        }
    }
    eprintln!(
        "{d} of {n} features drifted ({:.0} %) against the baseline of model {model:?}; {:.2} s",
        100.0 * d as f64 / n.max(1) as f64,
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Where `baseline build` takes the held-out performance from.
struct HeldOutSource {
    path: PathBuf,
    true_label_column: String,
    /// Score the rows with this config's embedded copy of the model.
    config: Option<PathBuf>,
}

/// The held-out performance of the model on `src`'s rows: the predictions of the
/// embedded model (with a config) or of the label and score columns, against the true
/// labels.
fn held_out_of(
    src: &HeldOutSource,
    opts: &crate::baseline::BuildOptions,
) -> Result<crate::baseline::HeldOut, Failure> {
    let usage = |e: String| Failure::usage(format!("{}: {e}", src.path.display()));
    let table =
        crate::baseline::Table::read(&src.path).map_err(|e| Failure::usage(e.to_string()))?;
    let mut truth = Vec::new();
    if !table
        .strings(&src.true_label_column, |s| truth.push(s.map(str::to_owned)))
        .map_err(usage)?
    {
        return Err(usage(format!("no column {:?}", src.true_label_column)));
    }
    let (mut predicted, mut confidence) = (Vec::new(), Vec::new());
    match &src.config {
        Some(path) => {
            let config = Config::load(path).map_err(|e| Failure::usage(e.to_string()))?;
            let c = config
                .models
                .iter()
                .find(|m| m.name == opts.model)
                .ok_or_else(|| {
                    usage(format!(
                        "no model {} under models: in {}",
                        opts.model,
                        path.display()
                    ))
                })?;
            let model = crate::rescore::EmbeddedModel::load(c).map_err(Failure::usage)?;
            let mut columns: Vec<Vec<Option<f64>>> = Vec::new();
            for f in &c.features {
                let mut v = Vec::new();
                if !table.numbers(f, |x| v.push(x)).map_err(usage)? {
                    return Err(usage(format!("no feature column {f:?}")));
                }
                columns.push(v);
            }
            let rows: Vec<Option<Vec<f32>>> = (0..truth.len())
                .map(|i| columns.iter().map(|c| c[i].map(|x| x as f32)).collect())
                .collect();
            let complete: Vec<Vec<f32>> = rows.iter().flatten().cloned().collect();
            let probs = model.probabilities(&complete).map_err(usage)?;
            let mut probs = probs.into_iter();
            for r in &rows {
                let p = r.as_ref().and_then(|_| probs.next());
                let best = p
                    .filter(|p| !p.is_empty())
                    .map(|p| (crate::rescore::top_class(&p), p));
                predicted.push(best.as_ref().and_then(|(i, _)| c.labels.get(*i).cloned()));
                confidence.push(best.map(|(i, p)| f64::from(p[i])));
            }
        }
        None => {
            if !table
                .strings(&opts.label_column, |s| predicted.push(s.map(str::to_owned)))
                .map_err(usage)?
            {
                return Err(usage(format!(
                    "no prediction column {:?} (or score the rows with --config)",
                    opts.label_column
                )));
            }
            table
                .numbers(&opts.score_column, |x| confidence.push(x))
                .map_err(usage)?;
        }
    }
    crate::baseline::held_out(&truth, &predicted, &confidence)
        .ok_or_else(|| usage("no row has both a true and a predicted label".into()))
}

fn baseline_build(
    input: &std::path::Path,
    out: &std::path::Path,
    opts: &crate::baseline::BuildOptions,
    held_out: Option<&HeldOutSource>,
) -> Result<(), Failure> {
    use crate::baseline::Summary;
    let started = std::time::Instant::now();
    let mut b =
        crate::baseline::build_from_file(input, opts).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(src) = held_out {
        b.held_out = Some(held_out_of(src, opts)?);
    }
    b.write(out).map_err(|e| Failure {
        code: 1,
        message: e.to_string(),
    })?;
    let numeric = b
        .features
        .iter()
        .filter(|f| matches!(f.summary, Summary::Numerical(_)))
        .count();
    eprintln!(
        "baseline of model {:?}: {} rows, {} features ({numeric} numerical, {} categorical), \
         label {}, score {} -> {} in {:.2} s",
        b.model,
        b.rows,
        b.features.len(),
        b.features.len() - numeric,
        if b.label.is_some() {
            "profiled"
        } else {
            "absent"
        },
        if b.score.is_some() {
            "profiled"
        } else {
            "absent"
        },
        out.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(h) = &b.held_out {
        eprintln!(
            "held-out performance: {} labelled rows, accuracy {:.4}, {} classes",
            h.labelled,
            h.accuracy,
            h.classes.len()
        );
    }
    Ok(())
}

/// The source's own loop and nothing else, until it ends or is idle.
fn consume(args: RunArgs) -> Result<(), Failure> {
    use crate::source::Poll;
    let config = load(&args.common)?;
    let mut source = config
        .source
        .build(config.decode.max_record_bytes)
        .map_err(|e| Failure::from(PipelineError::from(e)))?;
    let idle_limit = args.until_idle.unwrap_or(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last = std::time::Instant::now();
    let mut first: Option<std::time::Instant> = None;
    loop {
        match source
            .poll()
            .map_err(|e| Failure::from(PipelineError::from(e)))?
        {
            Poll::Batch(b) => {
                first.get_or_insert_with(std::time::Instant::now);
                records += b.records_read() as u64;
                bytes += b.buf.len() as u64;
                last = std::time::Instant::now();
            }
            Poll::End => break,
            // Joining the group or a broker away: not idle.
            Poll::Waiting(_) => last = std::time::Instant::now(),
            Poll::Idle if last.elapsed() >= idle_limit => break,
            _ => {}
        }
    }
    // From the first record to the last: joining the group is not consuming.
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    eprintln!(
        "consumed {records} records ({bytes} bytes) in {secs:.2} s ({:.0} records/s); {:.1} s in all",
        records as f64 / secs.max(1e-9),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--http`, else `http.listen`, else the command's default; `off` turns it off.
fn http_address(common: &Common, config: &Config, default: Option<&str>) -> Option<String> {
    let a = common
        .http
        .clone()
        .or_else(|| config.http.listen.clone())
        .or_else(|| default.map(str::to_owned))?;
    (a != "off").then_some(a)
}

fn load(common: &Common) -> Result<Config, Failure> {
    let mut config = Config::load(&common.config).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(q) = &common.queries {
        config.queries = q.clone();
        config.rule_files.clear();
    }
    if let Some(a) = &common.alerts_out {
        config.alerts.jsonl = Some(a.clone());
    }
    if let Some(d) = &common.state_dir {
        config.state_dir = Some(d.clone());
    }
    config.reset_state = common.reset_state;
    config.baselines.extend(common.baseline.iter().cloned());
    config.load_baselines().map_err(Failure::usage)?;
    Ok(config)
}

/// Loads the rules, builds the pipeline and the source, starts the HTTP server on
/// `http` (if any), and runs to the end.
async fn run_pipeline(
    config: &Config,
    opts: RunOptions,
    http: Option<&str>,
    command: &str,
    report: Option<&Path>,
) -> Result<Summary, Failure> {
    let rules = load_rules(&config.rule_paths()).map_err(|e| Failure::usage(e.to_string()))?;
    tracing::info!(rules = rules.len(), from = ?config.rule_paths(), "rules loaded");
    let mut pipeline = Pipeline::build(config, rules, Vec::new()).await?;
    // The report is kept for `--report` and for `GET /report` of the HTTP server.
    let kept = (http.is_some() || report.is_some()).then(|| pipeline.enable_report(command));
    if let Some(path) = report {
        // Fail before the run, not after it: the folder must exist and be writable.
        std::fs::write(path, "")
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display())))?;
    }
    if let Some(addr) = http {
        crate::http::serve(addr, &config.http, pipeline.live())
            .await
            .map_err(Failure::usage)?;
    }
    let source = config
        .source
        .build(config.decode.max_record_bytes)
        .map_err(|e| Failure::from(PipelineError::from(e)))?;
    let summary = pipeline.run(source, opts).await?;
    if let (Some(path), Some(report)) = (report, kept) {
        let totals = crate::report::Totals {
            records_read: summary.records_read,
            good: summary.good,
            bad: summary.bad,
            late: summary.late,
            windows_closed: summary.windows_closed,
            rule_errors: summary.rule_errors,
            elapsed_s: summary.elapsed.as_secs_f64(),
            generated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let started = std::time::Instant::now();
        let (page, kept) = {
            let r = crate::report::lock(&report);
            (r.render(&totals), r.spent())
        };
        std::fs::write(path, &page)
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(
            path = %path.display(),
            bytes = page.len(),
            render_ms = started.elapsed().as_millis() as u64,
            keeping_ms = kept.as_millis() as u64,
            "report written"
        );
    }
    Ok(summary)
}

async fn check(args: CheckArgs) -> Result<(), Failure> {
    let config = load(&args.common)?;
    let rules = load_rules(&config.rule_paths()).map_err(|e| Failure::usage(e.to_string()))?;
    let r = Pipeline::check(&config, rules)
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!("{}: OK", args.common.config.display());
    println!(
        "  rules       {} planned against {}",
        r.rules,
        list(&r.tables)
    );
    println!("  models      {}", list(&r.models));
    println!("  baselines   {}", r.baselines);
    println!("  receivers   {}", list(&r.receivers));
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), Failure> {
    let config = load(&args.common)?;
    let opts = RunOptions {
        progress: false,
        until_idle: args.until_idle,
    };
    let http = http_address(&args.common, &config, Some("127.0.0.1:9797"));
    let summary = run_pipeline(&config, opts, http.as_deref(), "run", None).await?;
    eprintln!("{}", summary_table(&summary));
    Ok(())
}

async fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let mut config = load(&args.common)?;
    let mut file = match &config.source {
        SourceConfig::File(f) => f.clone(),
        _ => FileSourceConfig::replay(Vec::new()),
    };
    file.paths = args.input.clone();
    file.follow = false;
    config.source = SourceConfig::File(file);
    if !args.labels.is_empty() {
        let files = SourceConfig::File(FileSourceConfig::replay(args.labels.clone()));
        match &mut config.labels {
            Some(l) => l.source = files,
            None => config.labels = Some(crate::labels::LabelsConfig::new(files)),
        }
    }
    let opts = RunOptions {
        progress: !args.no_progress,
        until_idle: None,
    };
    let http = http_address(&args.common, &config, None);
    let summary = run_pipeline(
        &config,
        opts,
        http.as_deref(),
        "replay",
        args.report.as_deref(),
    )
    .await?;
    // On standard error, as for `run`: standard output carries only the alerts.
    eprintln!("{}", summary_table(&summary));
    if let Some(path) = &args.report {
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

fn gen_cmd(args: GenArgs) -> Result<(), Failure> {
    let opts = GenOptions {
        scenario: args.scenario,
        seed: args.seed,
        events: args.events,
        rate: args.rate,
        clients: args.clients,
    };
    let mut generator = crate::scenario::Generator::new(opts.clone()).map_err(Failure::usage)?;
    let episodes = match (&args.out, &args.kafka, &args.topic) {
        (Some(out), _, _) => crate::scenario::write_scenario(opts, out)
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", out.display())))?,
        (None, Some(brokers), Some(topic)) => {
            crate::source::kafka::produce(brokers, topic, &mut generator)
                .map_err(Failure::runtime)?;
            generator.episodes()
        }
        _ => {
            return Err(Failure::usage(
                "give --out FILE, or --kafka BROKERS --topic T",
            ));
        }
    };
    if let Some(truth) = &args.truth {
        let mut text = String::new();
        for e in &episodes {
            text.push_str(&serde_json::to_string(e).expect("episodes serialize"));
            text.push('\n');
        }
        truth
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(truth, text))
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", truth.display())))?;
    }
    let target = match (&args.out, &args.topic) {
        (Some(out), _) => out.display().to_string(),
        (None, Some(t)) => format!("topic {t}"),
        _ => String::new(),
    };
    eprintln!(
        "wrote {} records to {target} ({} planted episodes)",
        args.events,
        episodes.len()
    );
    Ok(())
}

async fn rules_check(config: Option<PathBuf>, paths: Vec<PathBuf>) -> Result<(), Failure> {
    let loaded = match &config {
        Some(c) => Some(Config::load(c).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };
    let decode = loaded
        .as_ref()
        .map(|c| c.decode.clone())
        .unwrap_or_default();
    // No paths: the config's rules (`rule_files`, else `queries`), else `queries`.
    let paths = match (paths.is_empty(), &loaded) {
        (false, _) => paths,
        (true, Some(c)) => c.rule_paths(),
        (true, None) => vec![PathBuf::from("queries")],
    };
    let rules = load_rules(&paths).map_err(|e| Failure::usage(e.to_string()))?;
    let n = rules.len();
    let decoder = crate::decode::BatchDecoder::new(&decode).map_err(Failure::usage)?;
    let standard = crate::tables::standard_tables(
        decoder.events_schema(),
        &decode,
        crate::tables::Settings {
            clients: &Default::default(),
            drift: &Default::default(),
            reference: &Default::default(),
            sample_key: 0,
        },
        &[],
        // No model: `rescored` is checked for its columns, never filled.
        crate::rescore::rescorer::Rescorer::with_windows(Default::default(), Vec::new(), &[])
            .table(),
    );
    let mut tables = standard.tables;
    // No labels: `performance` and `class_performance` are checked for their columns.
    tables.extend(crate::labels::tables(&crate::labels::Labels::empty()));
    Engine::new(rules, tables, &Default::default())
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
    println!("{n} rules OK");
    Ok(())
}

async fn rules_test(paths: Vec<PathBuf>, junit: Option<PathBuf>) -> Result<(), Failure> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from("tests/rules")]
    } else {
        paths
    };
    let files = rules_test::test_files(&paths).map_err(|e| Failure::usage(e.to_string()))?;
    let (mut passed, mut failed) = (0, 0);
    let mut all = Vec::new();
    for file in files {
        let started = std::time::Instant::now();
        let results = rules_test::run_file(&file)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        all.push((file.clone(), started.elapsed(), results));
        for r in &all.last().expect("just pushed").2 {
            match &r.failure {
                None => {
                    passed += 1;
                    println!("PASS {}: {}", r.file.display(), r.name);
                }
                Some(why) => {
                    failed += 1;
                    println!("FAIL {}: {}\n     {}", r.file.display(), r.name, why);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if let Some(path) = junit {
        std::fs::write(&path, rules_test::junit_xml(&all))
            .map_err(|e| Failure::runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    if failed > 0 {
        return Err(Failure::runtime(format!("{failed} rule test(s) failed")));
    }
    Ok(())
}

/// The end-of-run report.
pub fn summary_table(s: &Summary) -> String {
    let mut out = String::new();
    let row = |out: &mut String, k: &str, v: String| out.push_str(&format!("  {k:<18}{v:>14}\n"));
    out.push_str("inferwatch summary\n");
    row(&mut out, "records read", s.records_read.to_string());
    row(&mut out, "good", s.good.to_string());
    row(&mut out, "bad (dead letter)", s.bad.to_string());
    row(&mut out, "late (dead letter)", s.late.to_string());
    if s.time_refused != [0, 0] {
        row(
            &mut out,
            "  of bad: time",
            format!(
                "{} out of range, {} ahead",
                s.time_refused[0], s.time_refused[1]
            ),
        );
    }
    row(&mut out, "windows closed", s.windows_closed.to_string());
    row(&mut out, "rule runs", s.rule_runs.to_string());
    row(&mut out, "rule errors", s.rule_errors.to_string());
    row(
        &mut out,
        "alerts active",
        s.alerts_active_at_end.to_string(),
    );
    row(
        &mut out,
        "elapsed",
        format!("{:.2} s", s.elapsed.as_secs_f64()),
    );
    row(
        &mut out,
        "throughput",
        format!("{:.0} rec/s", s.records_per_second()),
    );
    if s.records_this_run > 0 {
        row(
            &mut out,
            "streaming rate",
            format!("{:.0} rec/s", s.streaming_rate()),
        );
    }
    if s.clients.clients > 0 || s.clients.evicted_idle + s.clients.evicted_memory > 0 {
        row(&mut out, "client profiles", s.clients.clients.to_string());
        row(
            &mut out,
            "profile memory",
            format!(
                "{:.1} MiB (peak {:.1} MiB, with copies kept for checkpoints)",
                s.clients.bytes as f64 / 1048576.0,
                s.clients.peak_bytes.max(s.clients.bytes) as f64 / 1048576.0
            ),
        );
        row(
            &mut out,
            "evicted (idle)",
            s.clients.evicted_idle.to_string(),
        );
        row(
            &mut out,
            "evicted (memory)",
            s.clients.evicted_memory.to_string(),
        );
    }
    if s.models_refused > 0 {
        row(&mut out, "models refused", s.models_refused.to_string());
    }
    if let Some((r, busy)) = s.rescore {
        row(
            &mut out,
            "re-scored",
            format!(
                "{} ({} flagged, {} sampled)",
                r.rescored, r.flagged, r.sampled
            ),
        );
        row(&mut out, "over budget", r.dropped.to_string());
        row(&mut out, "unscorable", r.unscorable.to_string());
        if r.other_version > 0 {
            row(&mut out, "other model version", r.other_version.to_string());
        }
        row(&mut out, "mismatches", r.mismatches.to_string());
        row(&mut out, "adversarial", r.adversarial.to_string());
        let secs = busy.as_secs_f64();
        row(
            &mut out,
            "re-scoring time",
            format!(
                "{secs:.2} s ({:.0} rec/s)",
                r.rescored as f64 / secs.max(1e-9)
            ),
        );
    }
    if let Some(l) = s.labels {
        row(&mut out, "labels read", l.read.to_string());
        row(&mut out, "labels joined", l.joined.to_string());
        let refused: u64 = l
            .outcomes()
            .iter()
            .filter(|(o, _)| *o != "joined")
            .map(|(_, n)| n)
            .sum();
        row(&mut out, "labels refused", refused.to_string());
        for (o, n) in l.outcomes() {
            if o != "joined" && n > 0 {
                row(
                    &mut out,
                    &format!("  {}", o.replace('_', " ")),
                    n.to_string(),
                );
            }
        }
        row(&mut out, "labels waiting", l.waiting.to_string());
        row(&mut out, "predictions to label", l.predictions.to_string());
        row(&mut out, "  still waiting", l.pending.to_string());
        row(&mut out, "  expired", l.expired.to_string());
        row(&mut out, "  evicted", l.evicted.to_string());
    }
    if let Some(lag) = s.kafka_lag {
        row(&mut out, "kafka read lag", lag.read.to_string());
        row(&mut out, "kafka commit lag", lag.committed.to_string());
    }
    if let Some(kib) = s.peak_rss_kib {
        row(&mut out, "peak memory", format!("{} MiB", kib / 1024));
    }
    if let Some(c) = &s.last_checkpoint {
        out.push_str(&format!(
            "  last checkpoint   {}, {} bytes, written in {:.1} ms\n",
            c.written_at, c.bytes, c.millis
        ));
        let c = &s.checkpoints;
        row(&mut out, "checkpoints", c.written.to_string());
        row(&mut out, "largest (bytes)", c.max_bytes.to_string());
        row(
            &mut out,
            "slowest write (ms)",
            format!("{:.1}", c.max_write_ms),
        );
        row(
            &mut out,
            "longest pause (ms)",
            format!("{:.2}", c.max_pause_ms),
        );
    }
    if let Some(r) = &s.restored {
        out.push_str(&format!("  restored from     {r}\n"));
    }
    for d in &s.deliveries {
        out.push_str(&format!("  delivery          {d}\n"));
    }
    if !s.costs.is_empty() {
        out.push_str("  time spent (costliest first)\n");
        for (what, spent) in s.costs.iter().take(10) {
            let share = 100.0 * spent.as_secs_f64() / s.elapsed.as_secs_f64().max(1e-9);
            out.push_str(&format!(
                "    {what:<36}{:>9.2} s{share:>6.1}%\n",
                spent.as_secs_f64()
            ));
        }
    }
    if s.alerts.is_empty() {
        out.push_str("  no alerts\n");
    } else {
        out.push_str(&format!(
            "  {:<32}{:>9}{:>9}{:>9}\n",
            "alerts per rule", "pending", "firing", "resolved"
        ));
        for (rule, [p, f, r]) in &s.alerts {
            out.push_str(&format!("  {rule:<32}{p:>9}{f:>9}{r:>9}\n"));
        }
    }
    out.trim_end().to_owned()
}
