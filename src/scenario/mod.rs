//! Deterministic synthetic inference traffic with planted attack episodes, and the truth
//! file that lists them. Same scenario + seed + event count = byte-identical output.
//!
//! The honest population is deliberately not easy: clients with very different volumes
//! (including a few heavy batch users), exact repeats and near-duplicates of earlier
//! inputs (fraud model: a merchant's system re-sends a transaction), features on
//! different scales. The monitored model is a fixed logistic model (`fraud`), so
//! predictions are consistent with inputs. Honest clients of the embedded cancer model
//! never repeat an input.

pub mod cancer;

use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, LogNormal, Normal};
use serde::Serialize;

use crate::time::rfc3339;

/// Start of every generated timeline: 2026-11-21T10:00:00Z.
pub const START_MS: i64 = 1_795_255_200_000;

const COUNTRIES: [(&str, f64); 7] = [
    ("DE", 0.30),
    ("FR", 0.20),
    ("US", 0.20),
    ("GB", 0.10),
    ("NL", 0.08),
    ("ES", 0.07),
    ("IT", 0.05),
];
/// Honest clients unless `--clients` says otherwise.
pub const DEFAULT_CLIENTS: usize = 200;
const BATCH_USERS: usize = 3;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Honest traffic only.
    Benign,
    /// Honest traffic whose `amount` and `merchant_risk` shift from the middle on.
    Drift,
    /// One client sends uniform-random synthetic inputs at a modest rate.
    Extraction,
    /// One client sends near-duplicate inputs at the decision boundary.
    Probing,
    /// One client floods the model with queries.
    Flood,
    /// A minute in which a share of the records is malformed.
    Malformed,
    /// Every episode that the current rules detect.
    Mixed,
    /// One client copies the model with Jacobian-based dataset augmentation (Papernot
    /// et al.): a few natural seeds pushed along the sign of the model's gradient.
    ExtractionJacobian,
    /// One client copies the model with natural inputs at a modest rate for an hour.
    ExtractionNatural,
    /// One client walks along the decision boundary in small steps (HopSkipJump-like).
    BoundaryWalk,
    /// Every per-client attack (flood, near-duplicate probing, boundary walking, uniform,
    /// Jacobian and natural-data extraction) among honest clients and heavy batch users.
    Clients,
    /// Traffic of the embedded test model (`breast_cancer_lr`) with one client sending
    /// adversarial inputs (FGSM, just across the decision boundary).
    Evasion,
    /// Traffic of the embedded test model with one client whose logged predictions come
    /// from another model.
    Tampering,
    /// Traffic of the embedded test model, honest only.
    BenignModel,
}

/// One planted episode, as written to the truth file.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Episode {
    pub episode: &'static str,
    pub client_id: Option<String>,
    pub start: String,
    pub end: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// The rule expected to fire for it.
    pub rule: &'static str,
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub scenario: Scenario,
    pub seed: u64,
    pub events: u64,
    /// Honest records per second of event time.
    pub rate: f64,
    /// Honest clients (besides the batch users and attackers).
    pub clients: usize,
}

#[derive(Debug, Clone, Copy)]
struct Input {
    amount: f64,
    age: f64,
    country: usize,
    merchant_risk: f64,
    hour: f64,
}

/// The monitored model: probability of fraud.
fn fraud_score(x: &Input) -> f64 {
    let country = match COUNTRIES[x.country].0 {
        "US" | "GB" => 0.5,
        _ => 0.0,
    };
    let z = -4.0 + 0.9 * (x.amount.max(0.01).ln() - 3.5) + 5.0 * (x.merchant_risk - 0.3)
        - 0.01 * (x.age - 40.0)
        + country;
    1.0 / (1.0 + (-z).exp())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Flood,
    Probing,
    Extraction,
    Malformed,
    Drift,
    Jacobian,
    Natural,
    BoundaryWalk,
    Evasion,
    Tampering,
}

#[derive(Debug, Clone)]
struct Planned {
    kind: Kind,
    client: String,
    start_ms: i64,
    end_ms: i64,
    /// Records per second (for Malformed: the share of bad records).
    rate: f64,
}

struct Client {
    id: String,
    history: Vec<Input>,
}

/// Produces records one by one, in event-time order.
pub struct Generator {
    rng: ChaCha8Rng,
    opts: GenOptions,
    clients: Vec<Client>,
    cumulative: Vec<f64>,
    planned: Vec<Planned>,
    /// Next event time of each attacking episode and of the honest stream.
    next_attack: Vec<f64>,
    next_honest: f64,
    written: u64,
    /// Client id of the record written last (the Kafka message key).
    last_client: String,
    probe_bases: Vec<Input>,
    /// The Jacobian attacker's growing set of inputs, and the next one to augment.
    jacobian: Vec<Input>,
    jacobian_next: usize,
    /// The boundary walker's current point.
    walker: Input,
    amount: LogNormal<f64>,
    age: Normal<f64>,
    latency: LogNormal<f64>,
    /// The embedded test model's data and parameters (its scenarios only).
    cancer: Option<cancer::Cancer>,
}

impl Generator {
    pub fn new(opts: GenOptions) -> Result<Self, String> {
        if !(opts.rate > 0.0 && opts.rate.is_finite()) {
            return Err(format!("rate must be a positive number, got {}", opts.rate));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let weight = LogNormal::new(0.0, 0.6).expect("valid lognormal");
        let mut clients = Vec::new();
        let mut weights = Vec::new();
        if opts.clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        for i in 0..opts.clients {
            clients.push(Client {
                id: format!("key-{:03}", i),
                history: Vec::new(),
            });
            weights.push(weight.sample(&mut rng));
        }
        for i in 0..BATCH_USERS {
            clients.push(Client {
                id: format!("batch-{:02}", i + 1),
                history: Vec::new(),
            });
            weights.push(6.0);
        }
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let planned = plan(&opts, &mut rng)?;
        let next_attack = planned.iter().map(|p| p.start_ms as f64).collect();
        let mut probe_bases = Vec::new();
        for _ in 0..4 {
            let mut x = honest_input(&mut rng);
            x.merchant_risk = boundary_risk(&x);
            probe_bases.push(x);
        }
        let jacobian = (0..10).map(|_| honest_input(&mut rng)).collect();
        let mut walker = honest_input(&mut rng);
        walker.merchant_risk = boundary_risk(&walker);
        Ok(Self {
            jacobian,
            jacobian_next: 0,
            walker,
            rng,
            clients,
            cumulative,
            planned,
            next_attack,
            next_honest: START_MS as f64,
            written: 0,
            last_client: String::new(),
            probe_bases,
            amount: LogNormal::new(3.5, 1.0).expect("valid lognormal"),
            age: Normal::new(40.0, 12.0).expect("valid normal"),
            latency: LogNormal::new(1.5, 0.4).expect("valid lognormal"),
            cancer: matches!(
                opts.scenario,
                Scenario::Evasion | Scenario::Tampering | Scenario::BenignModel
            )
            .then(cancer::Cancer::load),
            opts,
        })
    }

    /// The planted episodes (for the truth file).
    pub fn episodes(&self) -> Vec<Episode> {
        self.planned
            .iter()
            .map(|p| {
                let (episode, rule, client) = match p.kind {
                    Kind::Flood => ("flood", "flood.client_rate", Some(p.client.clone())),
                    Kind::Probing => ("probing", "probing.low_confidence", Some(p.client.clone())),
                    Kind::Extraction => (
                        "extraction",
                        "extraction.label_entropy",
                        Some(p.client.clone()),
                    ),
                    Kind::Malformed => ("malformed", "ingest.bad_records", None),
                    Kind::Drift => ("drift", "drift.feature", None),
                    Kind::Jacobian => (
                        "extraction_jacobian",
                        "extraction.synthetic_inputs",
                        Some(p.client.clone()),
                    ),
                    Kind::Natural => (
                        "extraction_natural",
                        "extraction.natural_inputs",
                        Some(p.client.clone()),
                    ),
                    Kind::BoundaryWalk => (
                        "boundary_walk",
                        "probing.low_confidence",
                        Some(p.client.clone()),
                    ),
                    Kind::Evasion => (
                        "evasion",
                        "evasion.feature_squeezing",
                        Some(p.client.clone()),
                    ),
                    Kind::Tampering => (
                        "tampering",
                        "tampering.prediction_mismatch",
                        Some(p.client.clone()),
                    ),
                };
                Episode {
                    episode,
                    client_id: client,
                    start: rfc3339(p.start_ms),
                    end: rfc3339(p.end_ms),
                    start_ms: p.start_ms,
                    end_ms: p.end_ms,
                    rule,
                }
            })
            .collect()
    }

    /// Client id of the last record (the key when producing to Kafka).
    pub fn last_client(&self) -> &str {
        &self.last_client
    }

    pub fn remaining(&self) -> u64 {
        self.opts.events - self.written
    }

    /// Appends the next record (without newline) to `out`; false when done.
    pub fn next_record(&mut self, out: &mut Vec<u8>) -> bool {
        if self.written >= self.opts.events {
            return false;
        }
        let attack = self
            .next_attack
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                let p = &self.planned[*i];
                p.kind != Kind::Malformed && p.kind != Kind::Drift && **t < p.end_ms as f64
            })
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, t)| (i, *t));
        match attack {
            Some((i, t)) if t < self.next_honest => self.attack_record(i, t, out),
            _ => self.honest_record(out),
        }
        self.written += 1;
        true
    }

    fn honest_record(&mut self, out: &mut Vec<u8>) {
        let ts = self.next_honest;
        self.next_honest += Exp::new(self.opts.rate)
            .expect("positive rate")
            .sample(&mut self.rng)
            * 1000.0;
        let u: f64 = self.rng.random();
        let c = self
            .cumulative
            .partition_point(|&w| w < u)
            .min(self.clients.len() - 1);
        if self.cancer.is_some() {
            let client = self.clients[c].id.clone();
            self.last_client.clone_from(&client);
            let x = self.cancer_honest();
            self.cancer_record(ts as i64, &client, Some(x), None, out);
            return;
        }
        let r: f64 = self.rng.random();
        let x = match self.clients[c].history.len() {
            n if n > 0 && r < 0.08 => self.clients[c].history[self.rng.random_range(0..n)],
            n if n > 0 && r < 0.12 => {
                let mut x = self.clients[c].history[self.rng.random_range(0..n)];
                x.amount *= 1.0 + self.rng.random_range(-0.01..0.01);
                x
            }
            _ => {
                let mut x = self.fresh_input();
                self.apply_drift(ts, &mut x);
                x
            }
        };
        // Fewer remembered inputs per client when there are very many clients.
        let keep = if self.clients.len() > 10_000 { 4 } else { 32 };
        let history = &mut self.clients[c].history;
        if history.len() < keep {
            history.push(x);
        } else {
            let slot = self.rng.random_range(0..keep);
            history[slot] = x;
        }
        let client = self.clients[c].id.clone();
        self.last_client.clone_from(&client);
        if self.malformed_at(ts) {
            self.write_garbage(ts as i64, &client, out);
        } else {
            self.write_record(ts as i64, &client, &x, out);
        }
    }

    fn fresh_input(&mut self) -> Input {
        Input {
            amount: self.amount.sample(&mut self.rng),
            age: self.age.sample(&mut self.rng).clamp(18.0, 90.0).round(),
            country: pick_country(self.rng.random()),
            merchant_risk: self.rng.random::<f64>().powi(2),
            hour: self.rng.random_range(0..24) as f64,
        }
    }

    fn apply_drift(&self, ts: f64, x: &mut Input) {
        for p in &self.planned {
            if p.kind == Kind::Drift && ts >= p.start_ms as f64 {
                x.amount *= 1.8;
                x.merchant_risk = (x.merchant_risk + 0.2).min(1.0);
            }
        }
    }

    fn malformed_at(&mut self, ts: f64) -> bool {
        let share = self
            .planned
            .iter()
            .find(|p| p.kind == Kind::Malformed && ts >= p.start_ms as f64 && ts < p.end_ms as f64)
            .map(|p| p.rate);
        share.is_some_and(|s| self.rng.random::<f64>() < s)
    }

    fn attack_record(&mut self, i: usize, ts: f64, out: &mut Vec<u8>) {
        let p = self.planned[i].clone();
        self.next_attack[i] += Exp::new(p.rate)
            .expect("positive rate")
            .sample(&mut self.rng)
            * 1000.0;
        if matches!(p.kind, Kind::Evasion | Kind::Tampering) {
            self.last_client.clone_from(&p.client);
            self.cancer_record(ts as i64, &p.client, None, Some(p.kind), out);
            return;
        }
        let x = match p.kind {
            Kind::Flood => self.fresh_input(),
            Kind::Probing => {
                let mut x = self.probe_bases[self.rng.random_range(0..self.probe_bases.len())];
                x.amount *= 1.0 + self.rng.random_range(-0.002..0.002);
                x.merchant_risk += self.rng.random_range(-0.02..0.02);
                x
            }
            Kind::Extraction => Input {
                amount: self.rng.random_range(0.0..5000.0),
                age: self.rng.random_range(18..=90) as f64,
                country: self.rng.random_range(0..COUNTRIES.len()),
                merchant_risk: self.rng.random(),
                hour: self.rng.random_range(0..24) as f64,
            },
            Kind::Natural => self.fresh_input(),
            Kind::Jacobian => self.jacobian_step(),
            Kind::BoundaryWalk => self.walk_step(),
            Kind::Malformed | Kind::Drift | Kind::Evasion | Kind::Tampering => {
                unreachable!("not a client of the fraud model")
            }
        };
        self.last_client.clone_from(&p.client);
        self.write_record(ts as i64, &p.client, &x, out);
    }

    /// Papernot's augmentation, round by round: each point of the previous rounds is
    /// moved by λ along the sign of the model's gradient (amount in log space,
    /// merchant_risk, age) and queried; λ changes sign every three rounds (the periodic
    /// step of Papernot et al.), so the set spreads on both sides of the boundary.
    fn jacobian_step(&mut self) -> Input {
        let k = self.jacobian_next;
        let x = self.jacobian[k];
        let round = (self.jacobian.len() as f64 / 10.0).log2().floor() as i32;
        let lambda: f64 = if (round / 3) % 2 == 0 { 1.0 } else { -1.0 };
        let f = fraud_score(&x);
        let sign = |dx: Input| {
            let d = fraud_score(&dx) - f;
            if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            }
        };
        let h = 1e-4;
        let g_amount = sign(Input {
            amount: x.amount * (1.0 + h),
            ..x
        });
        let g_risk = sign(Input {
            merchant_risk: x.merchant_risk + h,
            ..x
        });
        let g_age = sign(Input {
            age: x.age + h,
            ..x
        });
        let y = Input {
            amount: (x.amount * (lambda * 0.15 * g_amount).exp()).max(0.01),
            merchant_risk: (x.merchant_risk + lambda * 0.04 * g_risk).clamp(0.0, 1.0),
            age: (x.age + lambda * 3.0 * g_age).clamp(18.0, 90.0),
            ..x
        };
        self.jacobian.push(y);
        // The next point to augment: the next one of the set as it was, round by round.
        self.jacobian_next = (k + 1) % self.jacobian.len();
        y
    }

    /// A small random step in amount and age, then back onto the decision boundary.
    fn walk_step(&mut self) -> Input {
        let mut x = self.walker;
        x.amount = (x.amount * (1.0 + self.rng.random_range(-0.08..0.08))).clamp(1.0, 5000.0);
        x.age = (x.age + self.rng.random_range(-2.0..2.0_f64))
            .clamp(18.0, 90.0)
            .round();
        x.merchant_risk = boundary_risk(&x) + self.rng.random_range(-0.01..0.01);
        self.walker = x;
        x
    }

    /// A record of the embedded test model: honest, or of an evasion or tampering
    /// episode.
    fn cancer_record(
        &mut self,
        ts: i64,
        client: &str,
        input: Option<Vec<f64>>,
        kind: Option<Kind>,
        out: &mut Vec<u8>,
    ) {
        let c = self
            .cancer
            .as_ref()
            .expect("a scenario of the embedded model");
        let x = match (input, kind) {
            (Some(x), _) => x,
            (None, Some(Kind::Evasion)) => c.evasive(&mut self.rng),
            (None, _) => c.honest(&mut self.rng),
        };
        let probs = match kind {
            Some(Kind::Tampering) => c.other.probs(&x),
            _ => c.model.probs(&x),
        };
        let latency = self.latency.sample(&mut self.rng);
        let request = format!("r-{}-{}", self.opts.seed, self.written);
        let call = cancer::Call {
            ts: &rfc3339(ts),
            request_id: &request,
            client,
            latency,
        };
        c.write(out, &call, &x, probs);
    }

    /// An honest client's input to the embedded model: a fresh draw from the model's
    /// data each time (people who measure a tumour do not send the same 30 numbers
    /// twice).
    fn cancer_honest(&mut self) -> Vec<f64> {
        let c = self
            .cancer
            .as_ref()
            .expect("a scenario of the embedded model");
        c.honest(&mut self.rng)
    }

    fn write_record(&mut self, ts: i64, client: &str, x: &Input, out: &mut Vec<u8>) {
        let s = fraud_score(x);
        let label = if s >= 0.5 { "fraud" } else { "legit" };
        let latency = self.latency.sample(&mut self.rng);
        let _ = write!(
            out,
            "{{\"ts\":\"{}\",\"request_id\":\"r-{}-{}\",\"client_id\":\"{}\",\"model\":\"fraud\",\
             \"model_version\":\"3\",\"features\":{{\"amount\":{:.2},\"age\":{},\"country\":\"{}\",\
             \"merchant_risk\":{:.4},\"hour\":{}}},\"prediction\":{{\"label\":\"{}\",\"score\":{:.5},\
             \"probs\":[{:.5},{:.5}]}},\"latency_ms\":{:.2}}}",
            rfc3339(ts),
            self.opts.seed,
            self.written,
            client,
            x.amount,
            x.age,
            COUNTRIES[x.country].0,
            x.merchant_risk,
            x.hour,
            label,
            s,
            1.0 - s,
            s,
            latency
        );
    }

    /// A malformed record of one of several kinds, in turn.
    fn write_garbage(&mut self, ts: i64, client: &str, out: &mut Vec<u8>) {
        let x = self.fresh_input();
        match self.written % 4 {
            0 => {
                let mut full = Vec::new();
                self.write_record(ts, client, &x, &mut full);
                out.extend_from_slice(&full[..full.len() / 2]);
            }
            1 => {
                let _ = write!(
                    out,
                    "{{\"ts\":\"{}\",\"client_id\":\"{}\",\"model\":\"fraud\",\
                     \"features\":{{\"amount\":\"lots\"}}}}",
                    rfc3339(ts),
                    client
                );
            }
            2 => {
                let _ = write!(
                    out,
                    "{{\"ts\":\"{}\",\"model\":\"fraud\",\"latency_ms\":3.0}}",
                    rfc3339(ts)
                );
            }
            _ => out.extend_from_slice(&[0xff, 0xfe, 0x00, 0x13, b'{', 0x80, 0x81]),
        }
    }
}

fn pick_country(u: f64) -> usize {
    let mut acc = 0.0;
    for (i, (_, p)) in COUNTRIES.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    COUNTRIES.len() - 1
}

fn honest_input(rng: &mut ChaCha8Rng) -> Input {
    Input {
        amount: LogNormal::new(3.5, 1.0).expect("valid").sample(rng),
        age: rng.random_range(25..60) as f64,
        country: pick_country(rng.random()),
        merchant_risk: 0.3,
        hour: rng.random_range(0..24) as f64,
    }
}

/// The merchant_risk that puts `x` on the decision boundary (score 0.5).
fn boundary_risk(x: &Input) -> f64 {
    let mut lo = 0.0;
    let mut hi = 3.0;
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        let s = fraud_score(&Input {
            merchant_risk: mid,
            ..*x
        });
        if s < 0.5 { lo = mid } else { hi = mid }
    }
    lo
}

/// Places the scenario's episodes on the timeline that `events` honest records at
/// `rate` per second span.
fn plan(opts: &GenOptions, rng: &mut ChaCha8Rng) -> Result<Vec<Planned>, String> {
    use Scenario::*;
    let kinds: &[Kind] = match opts.scenario {
        Benign => &[],
        Drift => &[Kind::Drift],
        Extraction => &[Kind::Extraction],
        Probing => &[Kind::Probing],
        Flood => &[Kind::Flood],
        Malformed => &[Kind::Malformed],
        Mixed => &[
            Kind::Flood,
            Kind::Probing,
            Kind::Extraction,
            Kind::Malformed,
        ],
        ExtractionJacobian => &[Kind::Jacobian],
        Evasion => &[Kind::Evasion],
        Tampering => &[Kind::Tampering],
        BenignModel => &[],
        ExtractionNatural => &[Kind::Natural],
        BoundaryWalk => &[Kind::BoundaryWalk],
        Clients => &[
            Kind::Natural,
            Kind::Flood,
            Kind::Probing,
            Kind::Extraction,
            Kind::Jacobian,
            Kind::BoundaryWalk,
        ],
    };
    let minute = 60_000.0;
    let spec = |k: Kind| -> (f64, f64) {
        // (duration in ms, rate per second or bad share)
        match k {
            Kind::Flood => (3.0 * minute, 2.0 * opts.rate),
            Kind::Probing => (5.0 * minute, 10.0),
            Kind::Extraction => (10.0 * minute, 8.0),
            Kind::Malformed => (2.0 * minute, 0.2),
            Kind::Drift => (0.0, 0.0),
            Kind::Jacobian => (20.0 * minute, 4.0),
            Kind::Natural => (60.0 * minute, 2.0),
            Kind::BoundaryWalk => (10.0 * minute, 5.0),
            Kind::Evasion => (10.0 * minute, 1.0),
            Kind::Tampering => (20.0 * minute, 1.0),
        }
    };
    let extra: f64 = kinds
        .iter()
        .filter(|k| !matches!(k, Kind::Malformed | Kind::Drift))
        .map(|&k| {
            let (d, r) = spec(k);
            d / 1000.0 * r
        })
        .sum();
    let honest = opts.events as f64 - extra;
    let span_ms = honest / opts.rate * 1000.0;
    let needed: f64 = kinds.iter().map(|&k| spec(k).0 + 2.0 * minute).sum();
    if !kinds.is_empty() && (honest <= 0.0 || span_ms < needed * 1.2) {
        let min_events = (needed * 1.2 / 1000.0 * opts.rate + extra).ceil();
        return Err(format!(
            "{} events at {} records/s are too few for the {:?} scenario: use --events {} or more, or a lower --rate",
            opts.events, opts.rate, opts.scenario, min_events
        ));
    }
    let mut planned = Vec::new();
    let slot = span_ms / (kinds.len() as f64 + 1.0);
    for (i, &k) in kinds.iter().enumerate() {
        let (duration, rate) = spec(k);
        let start = START_MS as f64 + slot * (i as f64 + 0.6);
        let start_ms = (start / 1000.0).round() as i64 * 1000;
        let end_ms = if k == Kind::Drift {
            START_MS + span_ms as i64
        } else {
            start_ms + duration as i64
        };
        let client = match k {
            Kind::Flood
            | Kind::Probing
            | Kind::Extraction
            | Kind::Jacobian
            | Kind::Natural
            | Kind::BoundaryWalk
            | Kind::Evasion
            | Kind::Tampering => format!("key-{}", rng.random_range(5000..9999)),
            _ => String::new(),
        };
        planned.push(Planned {
            kind: k,
            client,
            start_ms,
            end_ms,
            rate,
        });
    }
    Ok(planned)
}

/// Writes a whole scenario as JSONL (gzip when the name ends in `.gz`; its folder is
/// made if missing) and returns its episodes.
pub fn write_scenario(opts: GenOptions, out: &std::path::Path) -> std::io::Result<Vec<Episode>> {
    let mut generator = Generator::new(opts)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(out)?;
    let mut w: Box<dyn Write> = if out.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(std::io::BufWriter::with_capacity(1 << 20, file))
    };
    let mut line = Vec::with_capacity(512);
    while generator.next_record(&mut line) {
        line.push(b'\n');
        w.write_all(&line)?;
        line.clear();
    }
    w.flush()?;
    drop(w);
    Ok(generator.episodes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(scenario: Scenario, seed: u64, events: u64) -> Vec<String> {
        let mut g = Generator::new(GenOptions {
            scenario,
            seed,
            events,
            rate: 200.0,
            clients: DEFAULT_CLIENTS,
        })
        .unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while g.next_record(&mut buf) {
            out.push(String::from_utf8_lossy(&buf).into_owned());
            buf.clear();
        }
        out
    }

    #[test]
    fn same_seed_same_traffic_other_seed_other_traffic() {
        assert_eq!(
            lines(Scenario::Benign, 7, 500),
            lines(Scenario::Benign, 7, 500)
        );
        assert_ne!(
            lines(Scenario::Benign, 7, 500),
            lines(Scenario::Benign, 8, 500)
        );
    }

    #[test]
    fn the_output_folder_is_made_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out/sub/benign.jsonl");
        let opts = GenOptions {
            scenario: Scenario::Benign,
            seed: 1,
            events: 10,
            rate: 200.0,
            clients: DEFAULT_CLIENTS,
        };
        write_scenario(opts, &out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 10);
    }

    #[test]
    fn records_are_valid_json_in_time_order() {
        let all = lines(Scenario::Benign, 1, 2000);
        assert_eq!(all.len(), 2000);
        let mut last = String::new();
        for l in &all {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ts = v["ts"].as_str().unwrap().to_owned();
            assert!(ts >= last, "{ts} before {last}");
            last = ts;
        }
    }

    #[test]
    fn too_few_events_for_mixed_is_a_clear_error() {
        let err = Generator::new(GenOptions {
            scenario: Scenario::Mixed,
            seed: 1,
            events: 1000,
            rate: 200.0,
            clients: DEFAULT_CLIENTS,
        })
        .err()
        .unwrap();
        assert!(err.contains("--events"), "{err}");
    }

    #[test]
    fn boundary_inputs_score_near_one_half() {
        let x = Input {
            amount: 30.0,
            age: 40.0,
            country: 0,
            merchant_risk: 0.0,
            hour: 3.0,
        };
        let r = boundary_risk(&x);
        let s = fraud_score(&Input {
            merchant_risk: r,
            ..x
        });
        assert!((s - 0.5).abs() < 1e-9);
    }
}
