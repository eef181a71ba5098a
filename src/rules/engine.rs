//! The rule engine: DataFusion plans prepared once per rule, run on every closed window.
//!
//! Each window table (`crate::tables`) is a [`WindowTable`] that computes its rows
//! from a [`ClosedWindow`]. The rows of one window go to its queries in their task
//! context, where the table's scan finds them when it executes: a plan made once keeps
//! working for every window, and the queries of one window can run while the next
//! window's tables are computed ([`Engine::tables_of`], then [`Engine::run_rules`]).
//! Tables are computed once per window, only when some rule of that window spec reads
//! them.
//!
//! Planning costs more than running a rule on a window's few hundred rows (optimizing
//! and physical planning took 1–6 ms a rule, execution 0.1–1 ms): a rule without
//! `$window_start`/`$window_end` is planned once, down to its physical plan, and each
//! window executes a copy with fresh operator state (DataFusion's
//! `reset_plan_states`, what recursive queries use to re-run a plan). Dynamic filters
//! are off: a plan that carries them cannot be re-run.
//!
//! Rules are read-only: DDL, DML, `COPY`, `SET` and the like are refused by
//! [`SQLOptions`], and a rule may read only the registered window tables (no files, no
//! URLs, no table functions such as `generate_series` that allocate without bound). Each
//! rule has its own memory pool and a time limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableProvider;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, TableType};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, reset_plan_states};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, Partitioning, PlanProperties};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Deserialize;

use super::{Rule, RuleError};
use crate::tables::{RESCORED, WindowTable};
use crate::window::ClosedWindow;

/// `engine:` in the config: limits for each rule's query, and the threads a window's
/// tables are computed on.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Memory one rule's query may use (bytes).
    #[serde(default = "default_memory")]
    pub rule_memory_limit: usize,
    /// Wall-clock time one rule's query may take.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "String")]
    pub rule_timeout: Duration,
    /// Threads that compute a window's tables at once, and rule queries of a window run
    /// at once (at most the runtime's two worker threads; default: one per core; 1: one
    /// after another). Each table is a function of the window and its own state, so the
    /// results are the same for any number.
    #[serde(default)]
    #[schemars(range(min = 1, max = 256))]
    pub table_threads: Option<usize>,
}

/// Most table threads a config may ask for.
const MAX_TABLE_THREADS: usize = 256;

impl EngineConfig {
    /// `table_threads`, or one per core.
    pub fn table_threads(&self) -> usize {
        self.table_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, MAX_TABLE_THREADS)
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        match self.table_threads {
            Some(n) if !(1..=MAX_TABLE_THREADS).contains(&n) => Err(format!(
                "engine.table_threads: {n} is not between 1 and {MAX_TABLE_THREADS}"
            )),
            _ => Ok(()),
        }
    }
}

fn default_memory() -> usize {
    256 << 20
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            rule_memory_limit: default_memory(),
            rule_timeout: default_timeout(),
            table_threads: None,
        }
    }
}

/// The rows of one window's tables, by table index. Its queries find them in their
/// task context: each window has its own, so no query reads another window's rows.
#[derive(Default)]
struct WindowRows(RwLock<HashMap<usize, Vec<RecordBatch>>>);

impl WindowRows {
    fn set(&self, t: usize, rows: Vec<RecordBatch>) {
        self.0.write().expect("rows lock").insert(t, rows);
    }
    fn get(&self, t: usize) -> Option<Vec<RecordBatch>> {
        self.0.read().expect("rows lock").get(&t).cloned()
    }
    fn take(&self, t: usize) -> Vec<RecordBatch> {
        self.0
            .write()
            .expect("rows lock")
            .remove(&t)
            .unwrap_or_default()
    }
}

/// One window's tables, computed by [`Engine::tables_of`] and waiting for its rules
/// ([`Engine::run_rules`]).
pub struct WindowTables {
    rows: Arc<WindowRows>,
    /// Tables computed (or filled by their recording rule), failed ones included.
    computed: BTreeSet<usize>,
    /// Why a table has no rows: the rules that read it fail with this.
    errors: HashMap<usize, String>,
}

/// What the rules of one window gave.
pub struct Evaluated {
    /// One run per rule of the window's spec, in rule order.
    pub runs: Vec<RuleRun>,
    /// The rows of the kept tables ([`Engine::keep_tables`]) that a rule of the window
    /// read.
    pub kept: Vec<(String, Vec<RecordBatch>)>,
    /// Wall-clock time the window's rule queries took (they overlap: not the sum of
    /// their times).
    pub rules_wall: Duration,
}

/// The table a recording rule (`record: NAME`) fills: its result rows of the window,
/// put in the window's rows by the engine when the rule has run.
struct RecordedTable {
    name: String,
    schema: SchemaRef,
}

impl WindowTable for RecordedTable {
    fn name(&self) -> &str {
        &self.name
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn compute(&self, _window: &ClosedWindow) -> Result<Vec<RecordBatch>, String> {
        Err(format!("{} is filled by its recording rule", self.name))
    }
}

/// A table provider whose scan serves the rows its window's task context holds.
#[derive(Debug)]
struct WindowTableProvider {
    schema: SchemaRef,
    /// The table's index in the engine's list.
    index: usize,
    name: String,
}

#[async_trait]
impl TableProvider for WindowTableProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(WindowRowsExec {
            schema,
            index: self.index,
            name: self.name.clone(),
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// The scan of a [`WindowTableProvider`]: reads the window's rows from the task
/// context when executed, so one physical plan serves every window. Reports no
/// statistics (they change with every window).
#[derive(Debug)]
struct WindowRowsExec {
    schema: SchemaRef,
    index: usize,
    name: String,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for WindowRowsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "WindowRowsExec")
    }
}

impl ExecutionPlan for WindowRowsExec {
    fn name(&self) -> &str {
        "WindowRowsExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_plan::PhysicalExpr>,
        ) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let batches = context
            .session_config()
            .get_extension::<WindowRows>()
            .and_then(|rows| rows.get(self.index))
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Internal(format!(
                    "table {} has no rows for this window",
                    self.name
                ))
            })?;
        let batches = match &self.projection {
            Some(p) => batches
                .iter()
                .map(|b| b.project(p))
                .collect::<Result<Vec<_>, _>>()?,
            None => batches,
        };
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            self.schema.clone(),
            None,
        )?))
    }
}

/// A rule with its plan, ready to run on any window.
pub struct PreparedRule {
    pub rule: Rule,
    ctx: SessionContext,
    plan: LogicalPlan,
    /// The physical plan, made once (rules without window parameters).
    physical: Option<Arc<dyn ExecutionPlan>>,
    /// Columns of the rule's result.
    pub output: SchemaRef,
    /// Indices (in the engine's table list) of the tables the rule reads.
    uses: Vec<usize>,
    has_params: bool,
}

pub struct Engine {
    tables: Vec<Arc<dyn WindowTable>>,
    rules: Vec<PreparedRule>,
    /// Recording rules (`record:`): rule index → index of its table.
    recorded: BTreeMap<usize, usize>,
    /// Index of the `rescored` table, filled between the rounds of a window's rules.
    rescored: Option<usize>,
    timeout: Duration,
    /// Threads a window's tables are computed on.
    table_threads: usize,
    /// Time spent per table (`table NAME`) and per rule (`rule ID`), for the summary.
    costs: std::sync::Mutex<BTreeMap<String, Duration>>,
    /// Tables whose rows of each window are handed out after the rules ran
    /// ([`Engine::keep_tables`]).
    keep: BTreeSet<String>,
}

/// The outcome of one rule on one window.
pub struct RuleRun {
    pub rule: usize,
    pub result: Result<Vec<RecordBatch>, String>,
    /// Time the rule's query took (zero when a table it reads failed).
    pub elapsed: std::time::Duration,
}

impl Engine {
    /// Plans every rule against the given tables; reports every rule that fails.
    pub async fn new(
        rules: Vec<Rule>,
        tables: Vec<Arc<dyn WindowTable>>,
        config: &EngineConfig,
    ) -> Result<Engine, RuleError> {
        let mut tables = tables;
        let standard = tables.len();
        let mut problems = Vec::new();
        let mut slots: Vec<Option<PreparedRule>> = Vec::new();
        let mut later = Vec::new();
        let mut recorded = BTreeMap::new();
        // Recording rules first, on the standard tables only: each adds its table.
        for (i, rule) in rules.into_iter().enumerate() {
            slots.push(None);
            let Some(name) = rule.def.record.clone() else {
                later.push((i, rule));
                continue;
            };
            let p = match prepare(rule, &tables[..standard], config).await {
                Ok(p) => p,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if p.uses.iter().any(|&t| tables[t].name() == RESCORED) {
                problems.push(format!(
                    "{}: a recording rule runs before re-scoring and cannot read {RESCORED}",
                    p.rule.at()
                ));
            } else if tables.iter().any(|t| t.name() == name) {
                problems.push(format!(
                    "{}: record: {name:?} is already a table's name",
                    p.rule.at()
                ));
            } else {
                recorded.insert(i, tables.len());
                tables.push(Arc::new(RecordedTable {
                    name,
                    schema: p.output.clone(),
                }));
            }
            slots[i] = Some(p);
        }
        for (i, rule) in later {
            match prepare(rule, &tables, config).await {
                Ok(p) => {
                    // A recorded table holds the rows of its rule's window: only rules
                    // of that window may read it.
                    for (&r, t) in &recorded {
                        let source = slots[r].as_ref().expect("prepared");
                        if p.uses.contains(t) && p.rule.spec != source.rule.spec {
                            problems.push(format!(
                                "{}: reads {}, the table of {}, whose window differs",
                                p.rule.at(),
                                tables[*t].name(),
                                source.rule.id()
                            ));
                        }
                    }
                    slots[i] = Some(p);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            return Err(RuleError::Many(problems.join("\n")));
        }
        Ok(Engine {
            rescored: tables.iter().position(|t| t.name() == RESCORED),
            tables,
            rules: slots
                .into_iter()
                .map(|p| p.expect("every rule prepared"))
                .collect(),
            recorded,
            timeout: config.rule_timeout,
            table_threads: config.table_threads(),
            costs: Default::default(),
            keep: BTreeSet::new(),
        })
    }

    pub fn rules(&self) -> &[PreparedRule] {
        &self.rules
    }

    /// Keeps the rows of these tables, for each window in which a rule read them, in
    /// [`Evaluated::kept`] (the report). A table no rule of the window read is not
    /// computed for it: keeping costs no extra work and changes no state.
    pub fn keep_tables(&mut self, names: &[&str]) {
        self.keep = names.iter().map(|n| n.to_string()).collect();
    }

    /// Whether [`Evaluated::kept`] of this window will hold a table whose name
    /// `which` picks.
    pub fn keeps(&self, tables: &WindowTables, which: impl Fn(&str) -> bool) -> bool {
        tables.computed.iter().any(|&t| {
            let name = self.tables[t].name();
            !tables.errors.contains_key(&t) && self.keep.contains(name) && which(name)
        })
    }

    /// Time spent computing each table and running each rule so far, costliest first.
    pub fn costs(&self) -> Vec<(String, Duration)> {
        let mut v: Vec<(String, Duration)> = self
            .costs
            .lock()
            .expect("costs lock")
            .iter()
            .map(|(k, d)| (k.clone(), *d))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    fn charge(&self, what: impl FnOnce() -> String, started: std::time::Instant) {
        let spent = started.elapsed();
        *self
            .costs
            .lock()
            .expect("costs lock")
            .entry(what())
            .or_default() += spent;
    }

    /// Runs every rule of the window's spec, in rule order. A failing table or rule
    /// fails only the rules concerned.
    pub async fn evaluate(&self, window: &ClosedWindow) -> Vec<RuleRun> {
        self.evaluate_with(window, |_| Ok(())).await.runs
    }

    /// [`Engine::tables_of`] the window, then [`Engine::run_rules`].
    pub async fn evaluate_with(
        &self,
        window: &ClosedWindow,
        between: impl FnOnce(&[RuleRun]) -> Result<(), String>,
    ) -> Evaluated {
        let tables = self.tables_of(window);
        self.run_rules(window, tables, between).await
    }

    /// Computes the tables the rules of the window's spec read, all but those filled
    /// later in [`Engine::run_rules`] (recorded tables and `rescored`). This is where
    /// the stateful tables move on to the window: windows go through it in order, and
    /// the rules of one window may run while the next one's tables are computed.
    pub fn tables_of(&self, window: &ClosedWindow) -> WindowTables {
        let filled_later: BTreeSet<usize> = self
            .recorded
            .values()
            .copied()
            .chain(self.rescored)
            .collect();
        let needed: BTreeSet<usize> = (0..self.rules.len())
            .filter(|&i| self.rules[i].rule.spec == window.spec)
            .flat_map(|i| self.rules[i].uses.iter().copied())
            .filter(|t| !filled_later.contains(t))
            .collect();
        let mut tables = WindowTables {
            rows: Arc::default(),
            computed: BTreeSet::new(),
            errors: HashMap::new(),
        };
        self.compute_into(window, &needed.into_iter().collect::<Vec<_>>(), &mut tables);
        tables
    }

    /// Runs the rules of the window's spec on its tables, in rounds: first the
    /// recording rules (their rows are tables of the rules after them), then the rules
    /// that do not read `rescored`, then `between` with their results (it re-scores
    /// what they flagged), then the rules that read `rescored`. When `between` fails,
    /// so do the rules of the last round.
    pub async fn run_rules(
        &self,
        window: &ClosedWindow,
        mut tables: WindowTables,
        between: impl FnOnce(&[RuleRun]) -> Result<(), String>,
    ) -> Evaluated {
        let late = self.rescored;
        let (records, rest): (Vec<usize>, Vec<usize>) = (0..self.rules.len())
            .filter(|&i| self.rules[i].rule.spec == window.spec)
            .partition(|i| self.recorded.contains_key(i));
        let (second, first): (Vec<usize>, Vec<usize>) = rest
            .into_iter()
            .partition(|&i| late.is_some_and(|t| self.rules[i].uses.contains(&t)));
        let mut rules_wall = Duration::ZERO;
        let mut runs = self
            .run_round(window, &records, &mut tables, &mut rules_wall)
            .await;
        for run in &runs {
            let t = self.recorded[&run.rule];
            tables.computed.insert(t);
            match &run.result {
                Ok(batches) => tables.rows.set(t, batches.clone()),
                Err(e) => {
                    let name = self.tables[t].name();
                    tables.errors.insert(t, format!("table {name}: {e}"));
                }
            }
        }
        runs.extend(
            self.run_round(window, &first, &mut tables, &mut rules_wall)
                .await,
        );
        if let (Err(e), Some(t)) = (between(&runs), late) {
            tables.errors.insert(t, format!("table {RESCORED}: {e}"));
        }
        runs.extend(
            self.run_round(window, &second, &mut tables, &mut rules_wall)
                .await,
        );
        runs.sort_by_key(|r| r.rule);
        let kept = tables
            .computed
            .iter()
            .filter_map(|&t| {
                let name = self.tables[t].name();
                let rows = tables.rows.take(t);
                (self.keep.contains(name) && !tables.errors.contains_key(&t))
                    .then(|| (name.to_owned(), rows))
            })
            .collect();
        Evaluated {
            runs,
            kept,
            rules_wall,
        }
    }

    /// Computes the tables `due` reads (those not computed yet), then runs `due`.
    async fn run_round(
        &self,
        window: &ClosedWindow,
        due: &[usize],
        tables: &mut WindowTables,
        rules_wall: &mut Duration,
    ) -> Vec<RuleRun> {
        let needed: BTreeSet<usize> = due
            .iter()
            .flat_map(|&i| self.rules[i].uses.clone())
            .filter(|t| !tables.computed.contains(t) && !tables.errors.contains_key(t))
            .collect();
        self.compute_into(window, &needed.into_iter().collect::<Vec<_>>(), tables);
        // The rules of a round read only tables computed before it: their queries run
        // side by side, each result in rule order. At most as many at once as the
        // runtime has worker threads to run them (and `table_threads`): each query's
        // `rule_timeout` then measures a query that runs, not one waiting for a thread.
        let at_once = self
            .table_threads
            .min(tokio::runtime::Handle::current().metrics().num_workers())
            .max(1);
        let tables = &*tables;
        let run_one = |i: usize| async move {
            let r = &self.rules[i];
            let failed_table = r.uses.iter().find_map(|t| tables.errors.get(t).cloned());
            let started = std::time::Instant::now();
            let result = match failed_table {
                Some(e) => Err(e),
                None => {
                    let result = self.run(r, window, &tables.rows).await;
                    self.charge(|| format!("rule {}", r.rule.id()), started);
                    result
                }
            };
            RuleRun {
                rule: i,
                result,
                elapsed: started.elapsed(),
            }
        };
        let started = std::time::Instant::now();
        let runs = futures::stream::iter(due.iter().copied().map(run_one))
            .buffered(at_once)
            .collect()
            .await;
        *rules_wall += started.elapsed();
        runs
    }

    /// Computes the tables `needed` into the window's tables, charging each its time.
    fn compute_into(&self, window: &ClosedWindow, needed: &[usize], into: &mut WindowTables) {
        for (t, rows, spent) in self.compute_tables(window, needed) {
            let reg = &self.tables[t];
            *self
                .costs
                .lock()
                .expect("costs lock")
                .entry(format!("table {}", reg.name()))
                .or_default() += spent;
            into.computed.insert(t);
            match rows {
                Ok(rows) => into.rows.set(t, rows),
                Err(e) => {
                    into.errors.insert(t, format!("table {}: {e}", reg.name()));
                }
            }
        }
    }

    /// Computes the tables `needed` of a window, on up to `table_threads` threads (each
    /// takes the next table not yet taken: one table of each shared computation first,
    /// so that two threads do not both wait on one); returns them in the order of
    /// `needed`, each with the CPU time its thread spent on it (a table waiting for a
    /// sibling that shares its computation spends none).
    #[allow(clippy::type_complexity)]
    fn compute_tables(
        &self,
        window: &ClosedWindow,
        needed: &[usize],
    ) -> Vec<(usize, Result<Vec<RecordBatch>, String>, Duration)> {
        let one = |t: usize| {
            let started = cpu_time::ThreadTime::now();
            let rows = self.tables[t].compute(window);
            (t, rows, started.elapsed())
        };
        let threads = self.table_threads.min(needed.len());
        if threads <= 1 {
            return needed.iter().map(|&t| one(t)).collect();
        }
        let mut first: BTreeSet<&str> = BTreeSet::new();
        let (mut queue, rest): (Vec<usize>, Vec<usize>) =
            (0..needed.len()).partition(|&k| first.insert(self.tables[needed[k]].computation()));
        queue.extend(rest);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&k) = queue.get(i) else {
                    return done;
                };
                done.push((k, one(needed[k])));
            }
        };
        let mut all: Vec<(usize, (usize, Result<Vec<RecordBatch>, String>, Duration))> =
            std::thread::scope(|s| {
                let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
                let mut all = work();
                for h in helpers {
                    match h.join() {
                        Ok(done) => all.extend(done),
                        Err(panic) => std::panic::resume_unwind(panic),
                    }
                }
                all
            });
        all.sort_unstable_by_key(|(k, _)| *k);
        all.into_iter().map(|(_, r)| r).collect()
    }

    async fn run(
        &self,
        r: &PreparedRule,
        w: &ClosedWindow,
        rows: &Arc<WindowRows>,
    ) -> Result<Vec<RecordBatch>, String> {
        let mut plan = r.plan.clone();
        if r.has_params {
            let ts = |v| ScalarValue::TimestampMillisecond(Some(v), Some("UTC".into()));
            let params: HashMap<&str, ScalarValue> = HashMap::from([
                ("window_start", ts(w.start_ms)),
                ("window_end", ts(w.end_ms)),
            ]);
            plan = plan.with_param_values(params).map_err(|e| e.to_string())?;
        }
        // The query runs as its own task: a CPU-bound operator that never yields would
        // keep a timeout in the same task from ever firing.
        let ctx = r.ctx.clone();
        let physical = r.physical.clone();
        let rows = rows.clone();
        let mut task = tokio::spawn(async move {
            let plan = match physical {
                Some(p) => reset_plan_states(p)?,
                None => ctx.state().create_physical_plan(&plan).await?,
            };
            // The window's rows, where its scans look for them.
            let task = TaskContext::from(&ctx);
            let config = task.session_config().clone().with_extension(rows);
            let task = Arc::new(task.with_session_config(config));
            datafusion::physical_plan::collect(plan, task).await
        });
        match tokio::time::timeout(self.timeout, &mut task).await {
            Ok(Ok(Ok(batches))) => Ok(batches),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(e)) => Err(format!("the query's task failed: {e}")),
            Err(_) => {
                // Stops at the query's next yield point; its result is never read.
                task.abort();
                Err(format!(
                    "query took longer than the rule timeout ({})",
                    humantime::format_duration(self.timeout)
                ))
            }
        }
    }
}

async fn prepare(
    rule: Rule,
    tables: &[Arc<dyn WindowTable>],
    config: &EngineConfig,
) -> Result<PreparedRule, RuleError> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(config.rule_memory_limit, 1.0)
        .build_arc()
        .map_err(|e| RuleError::invalid(&rule, e.to_string()))?;
    let mut session = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    // A plan with dynamic filters cannot be executed twice (module doc).
    session
        .options_mut()
        .optimizer
        .enable_dynamic_filter_pushdown = false;
    session
        .options_mut()
        .optimizer
        .enable_join_dynamic_filter_pushdown = false;
    session
        .options_mut()
        .optimizer
        .enable_topk_dynamic_filter_pushdown = false;
    session
        .options_mut()
        .optimizer
        .enable_aggregate_dynamic_filter_pushdown = false;
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    for f in super::functions::drift_functions() {
        ctx.register_udf(f);
    }
    for (index, reg) in tables.iter().enumerate() {
        let provider = WindowTableProvider {
            schema: reg.schema(),
            index,
            name: reg.name().to_owned(),
        };
        ctx.register_table(reg.name(), Arc::new(provider))
            .map_err(|e| RuleError::invalid(&rule, e.to_string()))?;
    }
    let plan = ctx
        .state()
        .create_logical_plan(&rule.def.sql)
        .await
        .map_err(|e| sql_error(&rule, &e.to_string()))?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    options
        .verify_plan(&plan)
        .map_err(|e| sql_invalid(&rule, format!("rules are read-only: {e}")))?;
    let uses = check_reads(&rule, &plan, tables)?;
    let output: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
    check_output(&rule, &output)?;
    let has_params = !plan
        .get_parameter_names()
        .map_err(|e| RuleError::invalid(&rule, e.to_string()))?
        .is_empty();
    if has_params {
        let names = plan.get_parameter_names().unwrap_or_default();
        if let Some(bad) = names
            .iter()
            .find(|n| !matches!(n.as_str(), "$window_start" | "$window_end"))
        {
            return Err(RuleError::invalid(
                &rule,
                format!("unknown parameter {bad}: only $window_start and $window_end exist"),
            ));
        }
    }
    let physical = if has_params {
        None
    } else {
        Some(
            ctx.state()
                .create_physical_plan(&plan)
                .await
                .map_err(|e| sql_error(&rule, &e.to_string()))?,
        )
    };
    Ok(PreparedRule {
        rule,
        ctx,
        plan,
        physical,
        output,
        uses,
        has_params,
    })
}

/// Allows only queries, reading only the window tables.
fn check_reads(
    rule: &Rule,
    plan: &LogicalPlan,
    tables: &[Arc<dyn WindowTable>],
) -> Result<Vec<usize>, RuleError> {
    if matches!(
        plan,
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) | LogicalPlan::DescribeTable(_)
    ) {
        return Err(sql_invalid(
            rule,
            "a rule must be a query (SELECT or WITH ... SELECT)",
        ));
    }
    let mut uses = BTreeSet::new();
    let mut problem = None;
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                let name = scan.table_name.table();
                match tables.iter().position(|t| {
                    t.name() == name && scan.table_name.schema().is_none_or(|s| s == "public")
                }) {
                    Some(i) => {
                        uses.insert(i);
                    }
                    None => {
                        problem = Some(format!(
                            "reads {}, which is not a window table (allowed: {})",
                            scan.table_name,
                            tables
                                .iter()
                                .map(|t| t.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
            }
            LogicalPlan::Extension(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_) => {
                problem = Some("rules are read-only".to_owned());
                return Ok(TreeNodeRecursion::Stop);
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| sql_invalid(rule, e.to_string()))?;
    match problem {
        Some(p) => Err(sql_invalid(rule, p)),
        None => Ok(uses.into_iter().collect()),
    }
}

/// `labels_from` and annotation templates may name only result columns.
fn check_output(rule: &Rule, output: &Schema) -> Result<(), RuleError> {
    let has = |c: &str| output.field_with_name(c).is_ok();
    let columns = || {
        output
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(missing) = rule.def.labels_from.iter().find(|c| !has(c)) {
        return Err(RuleError::invalid(
            rule,
            format!(
                "labels_from names {missing:?}, which the query does not return (it returns: {})",
                columns()
            ),
        ));
    }
    for (key, template) in &rule.def.annotations {
        for name in super::template::template_names(template)
            .map_err(|e| RuleError::invalid(rule, format!("annotation {key}: {e}")))?
        {
            if !has(&name) {
                return Err(RuleError::invalid(
                    rule,
                    format!(
                        "annotation {key} uses {{{{ {name} }}}}, which the query does not return (it returns: {})",
                        columns()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A problem with a rule's SQL as a whole, reported at the line where the SQL starts.
fn sql_invalid(rule: &Rule, message: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        file: rule.file.clone(),
        line: rule.sql_line,
        message: format!("rule {}: {}", rule.def.id, message.into()),
    }
}

/// Points SQL errors at the file line: the parser reports lines within the SQL text.
fn sql_error(rule: &Rule, message: &str) -> RuleError {
    let sql_line = message
        .split("Line: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok());
    RuleError::Invalid {
        file: rule.file.clone(),
        line: sql_line.map_or(rule.sql_line, |l| rule.sql_line + l - 1),
        message: format!("rule {}: SQL error: {message}", rule.def.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DecodeConfig, FeatureDecl, FeatureKind};
    use crate::rules::parse_rules;
    use crate::tables::{EventsTable, PipelineStatsTable};
    use crate::window::{WindowSpec, WindowStats};
    use datafusion::arrow::array::{AsArray, Float64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::Int64Type;
    use std::path::Path;

    fn tables() -> Vec<Arc<dyn WindowTable>> {
        let decode = DecodeConfig {
            features: vec![FeatureDecl {
                name: "amount".into(),
                kind: FeatureKind::Numerical,
            }],
            ..Default::default()
        };
        vec![
            Arc::new(EventsTable::new(decode.events_schema())),
            Arc::new(PipelineStatsTable::default()),
        ]
    }

    pub(super) async fn engine(sql: &str, extra: &str) -> Result<Engine, String> {
        let yaml = format!(
            "- id: r\n  severity: low\n  window: {{size: 1m}}\n  sql: |\n    {}\n{extra}",
            sql.replace('\n', "\n    ")
        );
        let rules = parse_rules(&yaml, Path::new("q.yaml")).map_err(|e| e.to_string())?;
        Engine::new(rules, tables(), &EngineConfig::default())
            .await
            .map_err(|e| e.to_string())
    }

    #[test]
    fn table_threads_are_checked_and_default_to_the_cores() {
        let with = |n| EngineConfig {
            table_threads: n,
            ..EngineConfig::default()
        };
        for bad in [0, 257] {
            let e = with(Some(bad)).validate().unwrap_err();
            assert!(
                e.contains("engine.table_threads") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
        assert!(with(Some(1)).validate().is_ok() && with(Some(256)).validate().is_ok());
        assert_eq!(with(Some(3)).table_threads(), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(with(None).table_threads(), cores.min(256));
    }

    #[tokio::test]
    async fn a_recorded_table_is_read_only_by_rules_of_its_window_and_names_no_other() {
        let load = |yaml: &str| {
            let rules = parse_rules(yaml, Path::new("q.yaml")).unwrap();
            async move {
                Engine::new(rules, tables(), &EngineConfig::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        let rec = "- id: rec\n  severity: info\n  window: {size: 1m}\n  sql: SELECT client_id FROM events\n  record: per_client\n";
        let reader = |size: &str| {
            format!(
                "- id: use\n  severity: low\n  window: {{size: {size}}}\n  sql: SELECT client_id FROM per_client\n"
            )
        };
        // Read by a rule of its window, also when that rule comes first in the file.
        load(&format!("{rec}{}", reader("1m"))).await.unwrap();
        load(&format!("{}{rec}", reader("1m"))).await.unwrap();
        let e = load(&format!("{rec}{}", reader("5m"))).await.unwrap_err();
        assert!(e.contains("whose window differs"), "{e}");
        let e = load(&rec.replace("record: per_client", "record: events"))
            .await
            .unwrap_err();
        assert!(e.contains("already a table's name"), "{e}");
        // A recording rule reads only the standard tables, not another's records.
        let e = load(&format!(
            "{rec}{}",
            rec.replace("id: rec", "id: rec2")
                .replace("FROM events", "FROM per_client")
                .replace("record: per_client", "record: again")
        ))
        .await
        .unwrap_err();
        assert!(
            e.contains("rule rec2") && e.contains("per_client") && e.contains("not found"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn writes_ddl_files_and_table_functions_are_refused_at_load() {
        for (sql, why) in [
            ("CREATE TABLE t AS SELECT 1", "read-only"),
            ("INSERT INTO events SELECT * FROM events", "read-only"),
            ("COPY events TO '/tmp/x.csv'", "read-only"),
            ("SET datafusion.execution.batch_size = 1", "read-only"),
            ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
            (
                "SELECT * FROM generate_series(1, 100000000000)",
                "not a window table",
            ),
            ("SELECT * FROM range(1, 100000000000)", "not a window table"),
            ("EXPLAIN SELECT * FROM events", "must be a query"),
            ("DROP TABLE events", "read-only"),
        ] {
            let err = engine(sql, "")
                .await
                .err()
                .unwrap_or_else(|| panic!("{sql} was accepted"));
            assert!(err.contains("q.yaml:"), "{sql}: {err}");
            assert!(err.contains("rule r"), "{sql}: {err}");
            assert!(err.contains(why), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn unknown_columns_and_labels_are_errors_with_the_line() {
        let err = engine("SELECT client_id,\n  no_such_column\nFROM events", "")
            .await
            .err()
            .unwrap();
        assert!(
            err.contains("q.yaml:5") && err.contains("no_such_column"),
            "{err}"
        );
        let err = engine("SELECT client_id FROM events", "  labels_from: [model]\n")
            .await
            .err()
            .unwrap();
        assert!(
            err.contains("labels_from") && err.contains("model"),
            "{err}"
        );
        let err = engine(
            "SELECT client_id FROM events",
            "  annotations: {summary: '{{ nope }}'}\n",
        )
        .await
        .err()
        .unwrap();
        assert!(err.contains("nope"), "{err}");
        let err = engine("SELEC client_id FROM events", "")
            .await
            .err()
            .unwrap();
        assert!(
            err.contains("q.yaml:5") && err.contains("SQL error"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rules_of_a_window_read_its_rows_while_later_windows_are_computed() {
        let yaml = "- id: rec\n  severity: info\n  window: {size: 1m}\n  \
                    sql: SELECT DISTINCT client_id FROM events\n  record: per_client\n\
                    - id: clients\n  severity: low\n  window: {size: 1m}\n  \
                    sql: SELECT count(*) AS n FROM per_client\n\
                    - id: rows\n  severity: low\n  window: {size: 1m}\n  \
                    sql: SELECT count(*) AS n FROM events\n";
        let rules = parse_rules(yaml, Path::new("q.yaml")).unwrap();
        let e = Engine::new(rules, tables(), &EngineConfig::default())
            .await
            .unwrap();
        // Three windows of (distinct clients, records): their tables are all computed
        // before any rule runs, then the rules of the last run first and the others
        // side by side.
        let windows = [
            window_of(&e, 0, vec!["a", "b", "a"]),
            window_of(&e, 60_000, vec!["c", "d", "e", "f", "c"]),
            window_of(&e, 120_000, vec!["g"]),
        ];
        let want = [(2, 3), (4, 5), (1, 1)];
        let mut tables: Vec<_> = windows.iter().map(|w| e.tables_of(w)).collect();
        let last = e
            .run_rules(&windows[2], tables.pop().unwrap(), |_| Ok(()))
            .await;
        let second = tables.pop().unwrap();
        let first = tables.pop().unwrap();
        let (a, b) = futures::join!(
            e.run_rules(&windows[0], first, |_| Ok(())),
            e.run_rules(&windows[1], second, |_| Ok(()))
        );
        let count = |run: &RuleRun| {
            let batches = run.result.as_ref().expect("the rule runs");
            batches[0].column(0).as_primitive::<Int64Type>().value(0)
        };
        for (evaluated, (clients, rows)) in [a, b, last].iter().zip(want) {
            let runs = &evaluated.runs;
            assert_eq!(runs.len(), 3);
            assert_eq!(count(&runs[1]), clients);
            assert_eq!(count(&runs[2]), rows);
        }
    }

    #[tokio::test]
    async fn a_rule_over_its_memory_limit_fails_alone() {
        let yaml = "- id: big\n  severity: low\n  window: {size: 1m}\n  sql: |\n    \
                    SELECT a.client_id, count(*) AS n FROM events a JOIN events b \
                    ON a.model = b.model GROUP BY a.client_id ORDER BY n\n\
                    - id: small\n  severity: low\n  window: {size: 1m}\n  sql: SELECT count(*) AS n FROM events\n";
        let rules = parse_rules(yaml, Path::new("q.yaml")).unwrap();
        let config = EngineConfig {
            rule_memory_limit: 64 << 10,
            ..EngineConfig::default()
        };
        let e = Engine::new(rules, tables(), &config).await.unwrap();
        let clients: Vec<String> = (0..20_000).map(|i| format!("client-{i}")).collect();
        let w = window_of(&e, 0, clients.iter().map(String::as_str).collect());
        let runs = e.evaluate(&w).await;
        let err = runs[0]
            .result
            .as_ref()
            .expect_err("the join cannot fit in 64 KiB");
        assert!(err.contains("Resources exhausted"), "{err}");
        assert!(runs[1].result.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rule_over_its_time_limit_fails_alone_and_nothing_hangs() {
        let yaml = "- id: slow\n  severity: low\n  window: {size: 1m}\n  sql: |\n    \
                    SELECT count(*) AS n FROM events a, events b \
                    WHERE a.client_id <> concat(b.client_id, 'x')\n\
                    - id: quick\n  severity: low\n  window: {size: 1m}\n  sql: SELECT count(*) AS n FROM events\n";
        let rules = parse_rules(yaml, Path::new("q.yaml")).unwrap();
        // The limit is far from both rules' times, so that neither a loaded machine (the
        // quick rule takes well under a millisecond) nor a fast one (the slow rule's 1.6
        // billion string comparisons take about half a minute here) decides the outcome.
        let config = EngineConfig {
            rule_timeout: Duration::from_secs(2),
            ..EngineConfig::default()
        };
        let e = Engine::new(rules, tables(), &config).await.unwrap();
        let clients: Vec<String> = (0..40_000).map(|i| format!("client-{i}")).collect();
        let mut w = window_of(&e, 0, clients.iter().map(String::as_str).collect());
        // Small batches: the join yields between them, where the aborted query stops.
        let one = w.batches.pop().unwrap();
        w.batches = (0..4000).map(|i| one.slice(i * 10, 10)).collect();
        let runs = e.evaluate(&w).await;
        let err = runs[0]
            .result
            .as_ref()
            .expect_err("1.6 billion string comparisons take longer than 2 s");
        assert!(err.contains("rule timeout"), "{err}");
        assert!(runs[1].result.is_ok(), "{:?}", runs[1].result);
    }

    pub(super) fn window_of(e: &Engine, start: i64, clients: Vec<&str>) -> ClosedWindow {
        let schema = e.tables[0].schema();
        let n = clients.len();
        let ts = TimestampMillisecondArray::from(vec![start + 1; n]).with_timezone("UTC");
        let mut cols: Vec<datafusion::arrow::array::ArrayRef> = Vec::new();
        for f in schema.fields() {
            cols.push(match f.name().as_str() {
                "ts" => Arc::new(ts.clone()),
                "client_id" => Arc::new(StringArray::from(clients.clone())),
                "model" => Arc::new(StringArray::from(vec!["m"; n])),
                "amount" => Arc::new(Float64Array::from(vec![2.5; n])),
                _ => datafusion::arrow::array::new_null_array(f.data_type(), n),
            });
        }
        ClosedWindow {
            spec: WindowSpec {
                size_ms: 60_000,
                slide_ms: 60_000,
                grace_ms: 0,
            },
            start_ms: start,
            end_ms: start + 60_000,
            batches: vec![RecordBatch::try_new(schema, cols).unwrap()],
            stats: WindowStats::default(),
            ranges: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_plan_made_once_runs_on_each_window_with_its_bounds() {
        let e = engine(
            "SELECT client_id, count(*) AS n, min(amount) AS lo FROM events \
             WHERE ts >= $window_start AND ts < $window_end GROUP BY client_id",
            "",
        )
        .await
        .unwrap();
        for (start, clients, want) in [(0, vec!["a", "a", "b"], 2), (60_000, vec!["c"], 1)] {
            let runs = e.evaluate(&window_of(&e, start, clients)).await;
            let batches = runs[0].result.as_ref().unwrap();
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, want);
            let n = batches[0].column(1).as_primitive::<Int64Type>();
            assert!(n.value(0) >= 1);
        }
    }
}

#[cfg(test)]
mod plan_reuse {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;

    use super::tests::{engine, window_of};

    /// The physical plan is made once: a join's build side, an aggregate and a sort
    /// must each see the window being evaluated, not the first one.
    #[tokio::test]
    async fn a_plan_with_a_join_and_an_aggregate_sees_each_window_anew() {
        let e = engine(
            "WITH per AS (SELECT client_id, count(*) AS n FROM events GROUP BY client_id), \
                  top AS (SELECT max(n) AS m FROM per) \
             SELECT per.client_id, per.n FROM per JOIN top ON per.n = top.m \
             ORDER BY per.client_id",
            "",
        )
        .await
        .unwrap();
        assert!(e.rules()[0].physical.is_some(), "planned once");
        let cases = [
            (0, vec!["a", "a", "b"], vec![("a", 2)]),
            (60_000, vec!["c", "d", "d", "d"], vec![("d", 3)]),
            (120_000, vec!["e", "f"], vec![("e", 1), ("f", 1)]),
            (180_000, vec![], vec![]),
        ];
        for (start, clients, want) in cases {
            let runs = e.evaluate(&window_of(&e, start, clients)).await;
            let batches = runs[0].result.as_ref().unwrap();
            let mut got: Vec<(String, i64)> = Vec::new();
            for b in batches {
                let ids = b.column(0).as_string::<i32>();
                let n: &Int64Array = b.column(1).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    got.push((ids.value(i).to_owned(), n.value(i)));
                }
            }
            let want: Vec<(String, i64)> =
                want.into_iter().map(|(c, n)| (c.to_owned(), n)).collect();
            assert_eq!(got, want, "window at {start}");
        }
    }
}
