//! Compiling a script: DDL into a catalog (registered in a DataFusion context for
//! planning), each INSERT planned by DataFusion (analysis, type coercion,
//! optimization) and its logical plan lowered onto engine operators.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::empty::EmptyTable;
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ColumnOption, Statement, TableObject};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use weir::StreamEnv;
use weir::connector::{ConnectorError, Source, SourceContext, SourceOutput, SourcePoll};
use weir::stream::DataStream;
use weir::time::WatermarkStrategy;

use weir_connectors::{BatchSource, ChangelogMode, Connector, ConnectorRegistry, SinkArgs, SourceFactory, TableOptions};
use crate::ops::{AggFunction, AggKind, AggSpec, Calc, ChangeBatch, KeyRows, Step, WindowAssign, max_millis, nullable};
use crate::script::{self, Piece, WindowCall};
use crate::SqlError;

// a child of `plan` (it lowers plan nodes with the private `Lower`), kept in its own file
#[path = "join.rs"]
mod join;
// the batch runtime mode (also a child: it reads the catalog)
#[path = "batch.rs"]
mod batch;
// processing-time attributes and windows (a child: it reads the catalog)
#[path = "proc_window.rs"]
mod proc_window;
// LATERAL TABLE calls of table functions (a child: it registers placeholders)
#[path = "lateral.rs"]
mod lateral;
// lookup joins, FOR SYSTEM_TIME AS OF (a child: it registers placeholders and lowers joins)
#[path = "lookup.rs"]
mod lookup;

/// What `compile` needs besides the script.
#[derive(Clone, Default)]
pub struct CompileOptions {
    /// The connectors `WITH ('connector' = ...)` can name (default: the built-ins).
    pub connectors: ConnectorRegistry,
    /// The deployment fixes the parallelism (the env's: `-p`, a job file, the pods of
    /// a StreamJob): `SET 'parallelism.default'` is then recorded but not applied.
    pub fixed_parallelism: bool,
    /// Scalar functions written in Rust, callable from the script by their names
    /// (DataFusion `ScalarUDF`s, e.g. from `datafusion::logical_expr::create_udf`):
    /// how a custom job image adds its own functions.
    pub udfs: Vec<Arc<datafusion::logical_expr::ScalarUDF>>,
    /// Aggregate functions written in Rust (DataFusion `AggregateUDF`s, e.g. from
    /// `datafusion::logical_expr::create_udaf` or an `AggregateUDFImpl`), callable by
    /// their names in GROUP BY, window and OVER aggregations. Their accumulators'
    /// `state()` is the keyed state (checkpointed); over an updating input they must
    /// support `retract_batch`.
    pub udafs: Vec<Arc<datafusion::logical_expr::AggregateUDF>>,
    /// Scalar functions written in Rust by identifier: what `CREATE FUNCTION name AS
    /// 'identifier'` binds `name` to (in Flink a class name, e.g.
    /// `'com.example.udf.MyFunction'`). Identifiers not here may be ones Weir
    /// implements itself (`udf::BUILTIN_IDENTIFIERS`).
    pub udfs_by_identifier: BTreeMap<String, Arc<datafusion::logical_expr::ScalarUDF>>,
    /// Table functions written in Rust, called per row with `LATERAL TABLE(f(...))`
    /// (see [`crate::udtf`]).
    pub udtfs: Vec<Arc<dyn crate::udtf::TableFunction>>,
}

/// One `INSERT INTO` of the job.
#[derive(Clone, Debug)]
pub struct InsertPlan {
    pub sink: String,
    /// DataFusion's optimized logical plan of the query.
    pub plan: String,
    /// The operator producing updates, if the query is updating.
    pub updating: Option<String>,
    /// The uids of the operators added for it (stable for an unchanged query).
    pub uids: Vec<String>,
}

/// The compiled job: its operators are in the `StreamEnv`; run it with `env.execute()`.
#[derive(Clone, Debug)]
pub struct SqlJob {
    /// Every `SET` of the script, in order (later ones win).
    pub settings: BTreeMap<String, String>,
    /// `SET 'parallelism.default'`, applied to every operator of the job.
    pub parallelism: Option<u32>,
    pub inserts: Vec<InsertPlan>,
}

enum Entry {
    Table(Arc<TableDef>),
    View(LogicalPlan),
    Window(WindowCall),
    Lateral(Arc<lateral::LateralCall>),
    /// a lookup join's table (`t FOR SYSTEM_TIME AS OF x`)
    Lookup(Arc<lookup::LookupEntry>),
}

struct TableDef {
    name: String,
    opts: TableOptions,
    connector: Arc<dyn Connector>,
    physical: SchemaRef,
    /// physical columns -> declared columns (computed columns evaluated)
    computed: Calc,
    /// declared columns
    schema: SchemaRef,
    /// (rowtime column, watermark expression over the declared columns)
    watermark: Option<(usize, Watermark)>,
    /// the processing-time attribute (a computed column `AS PROCTIME()`)
    proctime: Option<usize>,
}

/// Compiles `script` into operators of `env`: sources, operators and sinks of every
/// `INSERT INTO` (in statement sets or not). Run the job with `env.execute()`.
pub fn compile(script: &str, env: &StreamEnv, options: &CompileOptions) -> Result<SqlJob, SqlError> {
    let job = compile_statements(script, env, options)?;
    if job.inserts.is_empty() {
        return Err(SqlError::at(script, 0, "the script has no INSERT INTO: nothing to run"));
    }
    Ok(job)
}

/// Compiles the statements of `script` like [`compile`], without requiring an
/// `INSERT INTO`: what a shell uses to check each `CREATE` or `SET` as it is typed.
pub fn compile_statements(script: &str, env: &StreamEnv, options: &CompileOptions) -> Result<SqlJob, SqlError> {
    let mut c = Compiler::new(script, env, options)?;
    for piece in script::split(script) {
        let text = piece.text(script);
        c.statement(&piece).map_err(|e| e.in_statement(text))?;
    }
    if c.in_set {
        return Err(SqlError::at(script, script.len(), "EXECUTE STATEMENT SET BEGIN ... has no END"));
    }
    Ok(c.job)
}

/// A query compiled up to its result, for a sink the caller adds (the SQL shell's
/// result table): the rows as a changelog, their schema and changelog mode.
pub struct QueryPlan {
    pub stream: DataStream<ChangeBatch>,
    pub schema: SchemaRef,
    /// The operator producing updates, if the result is updating.
    pub updating: Option<String>,
    /// DataFusion's optimized logical plan of the query.
    pub plan: String,
}

/// Compiles the statements of `script` (DDL and `SET`), then its last statement, a
/// query (`SELECT` or `WITH`), into operators of `env` up to the query's result.
pub fn compile_query(script: &str, env: &StreamEnv, options: &CompileOptions) -> Result<QueryPlan, SqlError> {
    let mut c = Compiler::new(script, env, options)?;
    let mut pieces = script::split(script);
    let Some(last) = pieces.pop() else { return Err(SqlError::at(script, 0, "no query to run")) };
    for piece in pieces {
        let text = piece.text(script);
        c.statement(&piece).map_err(|e| e.in_statement(text))?;
    }
    c.query(&last).map_err(|e| e.in_statement(last.text(script)))
}

struct Compiler<'a> {
    script: &'a str,
    env: &'a StreamEnv,
    registry: ConnectorRegistry,
    fixed_parallelism: bool,
    udafs: Vec<Arc<datafusion::logical_expr::AggregateUDF>>,
    udfs_by_identifier: BTreeMap<String, Arc<datafusion::logical_expr::ScalarUDF>>,
    udtfs: Vec<Arc<dyn crate::udtf::TableFunction>>,
    /// the functions of `CREATE FUNCTION` statements (lower-cased names)
    functions: HashSet<String>,
    ctx: SessionContext,
    catalog: HashMap<String, Entry>,
    job: SqlJob,
    in_set: bool,
    next_window: usize,
    uids: HashSet<String>,
}

/// The first statement of `sql`.
fn parse_first(sql: &str) -> Result<Statement, String> {
    let stmts = Parser::new(&GenericDialect {}).try_with_sql(sql).and_then(|mut p| p.parse_statements()).map_err(|e| e.to_string())?;
    stmts.into_iter().next().ok_or_else(|| "empty statement".to_string())
}

fn df_err(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    // DataFusion prefixes: keep the message
    let m = s.trim_start_matches("Error during planning: ").trim_start_matches("SQL error: ");
    // a function neither DataFusion nor Weir has (a Flink built-in such as DATE_FORMAT)
    if let Some(rest) = m.strip_prefix("Invalid function '")
        && let Some((name, _)) = rest.split_once('\'')
    {
        return format!("function {} is not supported yet", name.to_ascii_uppercase());
    }
    // syntax DataFusion parses but cannot plan: name it, not its whole syntax tree
    if let Some(rest) = m.split_once("Unsupported ast node ").map(|(_, r)| r) {
        let node: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        return format!("{node} is not supported yet");
    }
    m.to_string()
}

impl<'a> Compiler<'a> {
    fn new(script: &'a str, env: &'a StreamEnv, options: &CompileOptions) -> Result<Self, SqlError> {
        let mut cfg = SessionConfig::new();
        cfg.options_mut().sql_parser.enable_ident_normalization = false;
        cfg.options_mut().sql_parser.map_string_types_to_utf8view = false;
        cfg.options_mut().execution.time_zone = Some("UTC".into());
        let ctx = SessionContext::new_with_config(cfg);
        crate::functions::register(&ctx);
        for f in &options.udfs {
            ctx.register_udf(f.as_ref().clone());
        }
        for f in &options.udafs {
            ctx.register_udaf(f.as_ref().clone());
        }
        // COUNT(DISTINCT x) stays one aggregate (keyed state counts the distinct
        // values); split into two GROUP BYs it would turn window aggregations into
        // unbounded ones
        ctx.remove_optimizer_rule("single_distinct_aggregation_to_group_by");
        // an inner join whose right side is distinct on the join keys and whose right
        // columns are unused becomes a LeftSemi join (Nexmark q5, q8): keep the join
        // as written, which lowers onto the window / regular joins
        ctx.remove_optimizer_rule("eliminate_join");
        Ok(Compiler {
            script,
            env,
            registry: options.connectors.clone(),
            fixed_parallelism: options.fixed_parallelism,
            udafs: options.udafs.clone(),
            udfs_by_identifier: options.udfs_by_identifier.clone(),
            udtfs: options.udtfs.clone(),
            functions: HashSet::new(),
            ctx,
            catalog: HashMap::new(),
            job: SqlJob { settings: BTreeMap::new(), parallelism: None, inserts: Vec::new() },
            in_set: false,
            next_window: 0,
            uids: HashSet::new(),
        })
    }

    fn err(&self, offset: usize, m: impl Into<String>) -> SqlError {
        SqlError::at(self.script, offset, m)
    }

    fn statement(&mut self, p: &Piece) -> Result<(), SqlError> {
        let text = p.text(self.script);
        let skip = script::leading_trivia(text);
        if skip > 0 && skip < text.len() {
            // a statement starting with comments: dispatch on its first word
            return self.statement(&Piece { start: p.start + skip, end: p.end });
        }
        let words = script::leading_words(text, 4);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["EXECUTE", "STATEMENT", "SET", "BEGIN"] | ["BEGIN", "STATEMENT", "SET", ..] => {
                if self.in_set {
                    return Err(self.err(p.start, "statement sets cannot be nested"));
                }
                self.in_set = true;
                let skip = if w[0] == "BEGIN" { 3 } else { 4 };
                let rest = script::after_words(text, skip);
                let inner = script::split(&text[rest..]);
                if let Some(first) = inner.first() {
                    let sub = Piece { start: p.start + rest + first.start, end: p.end };
                    return self.statement(&sub);
                }
                Ok(())
            }
            ["END", ..] if words.len() == 1 => {
                if !self.in_set {
                    return Err(self.err(p.start, "END without EXECUTE STATEMENT SET BEGIN"));
                }
                self.in_set = false;
                Ok(())
            }
            ["SET", ..] => {
                let (k, v) = script::parse_set(text).ok_or_else(|| self.err(p.start, "expected SET 'key' = 'value'"))?;
                self.set(&k, &v).map_err(|m| self.err(p.start, m))
            }
            ["RESET", ..] => Ok(()),
            ["CREATE", "TABLE", ..] | ["CREATE", "TEMPORARY", "TABLE", ..] => self.create_table(p),
            ["CREATE", "VIEW", ..] | ["CREATE", "TEMPORARY", "VIEW", ..] => self.create_view(p),
            ["CREATE", "FUNCTION", ..] | ["CREATE", "TEMPORARY", "FUNCTION", ..] | ["CREATE", "TEMPORARY", "SYSTEM", "FUNCTION"] => self.create_function(p),
            ["INSERT", ..] => self.insert(p),
            _ if self.in_set => Err(self.err(p.start, "only INSERT INTO statements may be in a statement set")),
            ["SELECT", ..] | ["WITH", ..] => Err(self.err(p.start, "a query needs a sink here: write INSERT INTO <table> SELECT ...")),
            ["CREATE", what, ..] => Err(self.err(p.start, format!("CREATE {what} statements are not supported yet"))),
            [first, ..] => Err(self.err(p.start, format!("{first} statements are not supported yet"))),
            [] => Ok(()),
        }
    }

    fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        match k {
            "parallelism.default" | "parallelism" => {
                let p: u32 = v.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("'{k}' must be a positive integer, not '{v}'"))?;
                if p > self.env.config().max_parallelism {
                    return Err(format!("'{k}' = {p} exceeds the job's max parallelism {}", self.env.config().max_parallelism));
                }
                self.job.parallelism = Some(p);
            }
            join::STATE_TTL => {
                weir_connectors::parse_duration(v).map_err(|m| format!("'{k}': {m}"))?;
            }
            "execution.runtime-mode" if v != "streaming" && v != "batch" => {
                return Err(format!("'{k}' must be 'streaming' or 'batch', not '{v}'"));
            }
            _ => {}
        }
        self.job.settings.insert(k.to_string(), v.to_string());
        Ok(())
    }

    fn parse_one(&self, p: &Piece, text: &str) -> Result<Statement, SqlError> {
        let mut stmts = Parser::new(&GenericDialect {}).try_with_sql(text).and_then(|mut ps| ps.parse_statements()).map_err(|e| {
            let m = e.to_string();
            let m = m.trim_start_matches("sql parser error: ").to_string();
            SqlError { pos: self.parser_pos(&m).unwrap_or(script::pos_of(self.script, p.start)), statement: None, message: m }
        })?;
        if stmts.len() != 1 {
            return Err(self.err(p.start, "expected one statement"));
        }
        Ok(stmts.remove(0))
    }

    /// `... at Line: 3, Column: 7` of a sqlparser error.
    fn parser_pos(&self, m: &str) -> Option<script::Pos> {
        let i = m.rfind("Line: ")?;
        let rest = &m[i + 6..];
        let (l, rest) = rest.split_once(", Column: ")?;
        let c: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        Some(script::Pos { line: l.trim().parse().ok()?, column: c.parse().ok()? })
    }

    fn plan_sql(&self, sql: &str) -> Result<LogicalPlan, String> {
        self.plan_statement(parse_first(sql)?)
    }

    fn plan_statement(&self, stmt: Statement) -> Result<LogicalPlan, String> {
        let plan = self.plan_unoptimized(stmt)?;
        self.check_lookups(&plan)?;
        self.ctx.state().optimize(&plan).map_err(df_err)
    }

    /// A statement's logical plan as written (Flink's functions rewritten, not optimized).
    fn plan_unoptimized(&self, mut stmt: Statement) -> Result<LogicalPlan, String> {
        crate::functions::rewrite_ast(&mut stmt);
        futures::executor::block_on(self.ctx.state().statement_to_plan(DFStatement::Statement(Box::new(stmt)))).map_err(df_err)
    }

    /// A view's query: its columns named as Flink names them (see [`field_access_names`]).
    fn plan_view(&self, stmt: Statement) -> Result<LogicalPlan, String> {
        let state = self.ctx.state();
        let plan = futures::executor::block_on(state.statement_to_plan(DFStatement::Statement(Box::new(stmt)))).map_err(df_err)?;
        self.check_lookups(&plan)?;
        state.optimize(&field_access_names(plan)?).map_err(df_err)
    }

    fn register(&self, name: &str, schema: SchemaRef) -> Result<(), String> {
        self.ctx.register_table(name, Arc::new(EmptyTable::new(schema))).map_err(df_err)?;
        Ok(())
    }

    fn check_new(&self, name: &str, at: usize) -> Result<(), SqlError> {
        if self.catalog.contains_key(name) {
            return Err(self.err(at, format!("a table or view '{name}' already exists")));
        }
        Ok(())
    }

    fn create_table(&mut self, p: &Piece) -> Result<(), SqlError> {
        let masked = script::masked(self.script, p.start, p.end);
        let (stripped, extras) = script::strip_create_table(self.script, &masked, p.start, p.end)?;
        let Statement::CreateTable(ct) = self.parse_one(p, &stripped)? else {
            return Err(self.err(p.start, "expected CREATE TABLE"));
        };
        let name = ct.name.to_string().trim_matches('`').trim_matches('"').to_string();
        self.check_new(&name, p.start)?;
        let mut fields = Vec::new();
        for c in &ct.columns {
            let dt = crate::types::arrow_type(&c.data_type).map_err(|m| self.err(p.start, format!("column '{}': {m}", c.name.value)))?;
            let not_null = c.options.iter().any(|o| matches!(o.option, ColumnOption::NotNull));
            fields.push(Field::new(c.name.value.clone(), dt, !not_null));
        }
        let physical = Arc::new(Schema::new(fields.clone()));
        // connector and options
        let mut map = BTreeMap::new();
        let mut connector = None;
        for (k, v, pos) in &extras.options {
            if k == "connector" {
                connector = Some(v.clone());
            } else if map.insert(k.clone(), v.clone()).is_some() {
                return Err(SqlError { pos: *pos, statement: None, message: format!("option '{k}' is given twice") });
            }
        }
        let Some(connector) = connector else { return Err(self.err(p.start, format!("table '{name}' needs WITH ('connector' = ...)"))) };
        // METADATA columns travel to the connector as reserved options (checked by the registry)
        for (col, key, is_virtual) in &extras.metadata {
            if fields.iter().all(|f| f.name() != col) {
                return Err(self.err(p.start, format!("table '{name}': metadata column '{col}' is not a column")));
            }
            map.insert(format!("{}{col}", weir_connectors::registry::METADATA_PREFIX), if *is_virtual { format!("{key} VIRTUAL") } else { key.clone() });
        }
        let opts = TableOptions { table: name.clone(), connector, map, primary_key: extras.primary_key.clone(), partition_keys: extras.partition_keys.clone() };
        let conn = self.registry.check(&opts, &physical).map_err(|m| {
            let at_partitions = extras.partitioned_at.filter(|_| m.contains("PARTITIONED BY"));
            let pos = at_partitions.or_else(|| extras.options.iter().find(|(k, _, _)| m.contains(&format!("'{k}'"))).map(|o| o.2)).unwrap_or(script::pos_of(self.script, p.start));
            SqlError { pos, statement: None, message: format!("table '{name}': {m}") }
        })?;
        // declared columns: physical ones with computed ones in place
        let phys_name = format!("__physical_{name}");
        self.register(&phys_name, physical.clone()).map_err(|m| self.err(p.start, m))?;
        let mut select: Vec<String> = fields.iter().map(|f| format!("`{}`", f.name())).collect();
        let mut computed_sorted = extras.computed.clone();
        computed_sorted.sort_by_key(|c| c.0);
        for (k, (idx, cname, expr, _)) in computed_sorted.iter().enumerate() {
            let at = (idx - k).min(select.len());
            let _ = k;
            select.insert(at, format!("{expr} AS `{cname}`"));
        }
        let q = format!("SELECT {} FROM `{phys_name}`", select.join(", "));
        let plan = self.plan_sql(&q).map_err(|m| {
            let pos = extras.computed.first().map(|c| c.3).unwrap_or(script::pos_of(self.script, p.start));
            SqlError { pos, statement: None, message: format!("computed column: {m}") }
        })?;
        let schema = nullable(plan.schema().as_arrow());
        let phys_df = DFSchema::try_from_qualified_schema(phys_name.as_str(), &physical).map_err(|e| self.err(p.start, df_err(e)))?;
        let computed = match &plan {
            LogicalPlan::Projection(pr) => Calc { name: format!("{name}: computed columns"), steps: vec![Step::Project(phys_exprs(&pr.expr, &phys_df).map_err(|m| self.err(p.start, m))?, schema.clone())] },
            _ => Calc { name: name.clone(), steps: vec![] },
        };
        self.register(&name, schema.clone()).map_err(|m| self.err(p.start, m))?;
        let watermark = match &extras.watermark {
            None => None,
            Some((col, expr, pos)) => {
                let werr = |m: String| SqlError { pos: *pos, statement: None, message: m };
                let idx = schema.index_of(col).map_err(|_| werr(format!("WATERMARK FOR {col}: table '{name}' has no column '{col}'")))?;
                if !matches!(schema.field(idx).data_type(), DataType::Timestamp(_, _)) {
                    return Err(werr(format!("WATERMARK FOR {col}: the rowtime column must be TIMESTAMP(3) or TIMESTAMP_LTZ(3), not {}", schema.field(idx).data_type())));
                }
                let wplan = self.plan_sql(&format!("SELECT {expr} FROM `{name}`")).map_err(|m| werr(format!("watermark expression: {m}")))?;
                if !matches!(wplan.schema().field(0).data_type(), DataType::Timestamp(_, _)) {
                    return Err(werr(format!("the watermark expression must be a timestamp, not {}", wplan.schema().field(0).data_type())));
                }
                let full = DFSchema::try_from_qualified_schema(name.as_str(), &schema).map_err(|e| werr(df_err(e)))?;
                let w = match &wplan {
                    LogicalPlan::Projection(pr) => match pr.expr.first().and_then(join::time_term) {
                        // the common `ts - INTERVAL ...`: max(ts) - delay, no per-row evaluation
                        Some((c, offset)) if c.name == *col => Watermark::Offset(offset),
                        _ => Watermark::Expr(phys_exprs(&pr.expr, &full).map_err(werr)?.remove(0)),
                    },
                    _ => Watermark::Offset(0),
                };
                Some((idx, w))
            }
        };
        for k in &extras.primary_key {
            if schema.index_of(k).is_err() {
                return Err(self.err(p.start, format!("PRIMARY KEY: table '{name}' has no column '{k}'")));
            }
        }
        let proctime = proc_window::table_proctime(&extras.computed, &schema);
        let def = TableDef { name: name.clone(), opts, connector: conn, physical, computed, schema, watermark, proctime };
        self.catalog.insert(name, Entry::Table(Arc::new(def)));
        Ok(())
    }

    /// Masked text of the statement with window TVFs replaced by placeholder tables.
    fn prepare_query_text(&mut self, p: &Piece) -> Result<String, SqlError> {
        let mut text = script::masked(self.script, p.start, p.end);
        if let Some((at, m)) = script::unsupported_flink(&text) {
            return Err(self.err(at, m));
        }
        crate::functions::rewrite_timestampdiff(self.script, &mut text)?;
        self.register_lookups(&mut text)?;
        let calls = script::rewrite_window_tvfs(self.script, &mut text, &mut self.next_window)?;
        for call in calls {
            self.register_window(call)?;
        }
        Ok(text)
    }

    /// Registers the placeholder table of a window TVF call (or legacy group window).
    fn register_window(&mut self, call: WindowCall) -> Result<(), SqlError> {
        let base = self.entry_schema(&call.table).ok_or_else(|| SqlError { pos: call.pos, statement: None, message: format!("unknown table '{}'", call.table) })?;
        let idx = base.index_of(&call.time_col).map_err(|_| SqlError { pos: call.pos, statement: None, message: format!("DESCRIPTOR({}): table '{}' has no column '{}'", call.time_col, call.table, call.time_col) })?;
        if !matches!(base.field(idx).data_type(), DataType::Timestamp(_, _)) {
            return Err(SqlError { pos: call.pos, statement: None, message: format!("DESCRIPTOR({}): the time attribute must be a timestamp, not {}", call.time_col, base.field(idx).data_type()) });
        }
        let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
        for n in ["window_start", "window_end", "window_time"] {
            fields.push(Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, None), true));
        }
        self.register(&call.placeholder, Arc::new(Schema::new(fields))).map_err(|m| SqlError { pos: call.pos, statement: None, message: m })?;
        self.catalog.insert(call.placeholder.clone(), Entry::Window(call));
        Ok(())
    }

    /// Rewrites the legacy group windows (`GROUP BY TUMBLE(ts, ...)`) of a parsed
    /// query into window placeholders (see `group_window`).
    fn group_windows(&mut self, p: &Piece, q: &mut datafusion::sql::sqlparser::ast::Query) -> Result<(), SqlError> {
        let fallback = script::pos_of(self.script, p.start);
        crate::group_window::rewrite_query(q, self, fallback)
    }

    /// `CREATE [TEMPORARY [SYSTEM]] FUNCTION name AS 'identifier'` (see `udf`).
    fn create_function(&mut self, p: &Piece) -> Result<(), SqlError> {
        let f = crate::udf::parse_create_function(p.text(self.script)).map_err(|e| self.err(p.start + e.at, e.message))?;
        let key = f.name.to_ascii_lowercase();
        if self.functions.contains(&key) {
            return if f.if_not_exists { Ok(()) } else { Err(self.err(p.start, format!("function '{}' already exists", f.name))) };
        }
        let udf = match self.udfs_by_identifier.get(&f.identifier) {
            Some(u) => u.clone(),
            None => match crate::udf::builtin(&f.identifier) {
                Some(u) => Arc::new(u),
                None => {
                    let known: Vec<&str> = self.udfs_by_identifier.keys().map(String::as_str).chain(crate::udf::BUILTIN_IDENTIFIERS.iter().copied()).collect();
                    return Err(self.err(
                        p.start + f.identifier_at,
                        format!("CREATE FUNCTION {}: unknown function identifier '{}' (register it in CompileOptions::udfs_by_identifier; known: {})", f.name, f.identifier, known.join(", ")),
                    ));
                }
            },
        };
        self.ctx.register_udf(crate::udf::bind(&key, udf));
        self.functions.insert(key);
        Ok(())
    }

    /// `SET 'execution.runtime-mode' = 'batch'` (see `batch`).
    fn batch_mode(&self) -> bool {
        self.job.settings.get("execution.runtime-mode").is_some_and(|m| m == "batch")
    }

    fn entry_schema(&self, name: &str) -> Option<SchemaRef> {
        match self.catalog.get(name)? {
            Entry::Table(t) => Some(t.schema.clone()),
            Entry::View(plan) => Some(nullable(plan.schema().as_arrow())),
            Entry::Window(_) => None,
            Entry::Lateral(l) => Some(l.op.schema.clone()),
            Entry::Lookup(l) => Some(l.dim.schema.clone()),
        }
    }

    fn create_view(&mut self, p: &Piece) -> Result<(), SqlError> {
        let text = self.prepare_query_text(p)?;
        let Statement::CreateView(mut cv) = self.parse_one(p, &text)? else { return Err(self.err(p.start, "expected CREATE VIEW")) };
        self.group_windows(p, &mut cv.query)?;
        self.laterals(p, &mut cv.query)?;
        let name = cv.name.to_string().trim_matches('`').trim_matches('"').to_string();
        self.check_new(&name, p.start)?;
        let plan = self.plan_view(Statement::Query(cv.query)).map_err(|m| self.err(p.start, m))?;
        self.register(&name, nullable(plan.schema().as_arrow())).map_err(|m| self.err(p.start, m))?;
        self.catalog.insert(name, Entry::View(plan));
        Ok(())
    }

    fn insert(&mut self, p: &Piece) -> Result<(), SqlError> {
        let text = self.prepare_query_text(p)?;
        let Statement::Insert(ins) = self.parse_one(p, &text)? else { return Err(self.err(p.start, "expected INSERT INTO")) };
        let TableObject::TableName(tn) = &ins.table else { return Err(self.err(p.start, "INSERT INTO a table function is not supported")) };
        let sink = tn.to_string().trim_matches('`').trim_matches('"').to_string();
        let def = match self.catalog.get(&sink) {
            Some(Entry::Table(t)) => t.clone(),
            Some(_) => return Err(self.err(p.start, format!("'{sink}' is a view: INSERT INTO needs a table"))),
            None => return Err(self.err(p.start, format!("unknown table '{sink}'"))),
        };
        if !ins.columns.is_empty() {
            return Err(self.err(p.start, "INSERT INTO t (columns) is not supported yet: select the sink's columns in order"));
        }
        let Some(mut source) = ins.source else { return Err(self.err(p.start, "INSERT needs a SELECT")) };
        self.group_windows(p, &mut source)?;
        self.laterals(p, &mut source)?;
        let plan = self.plan_statement(Statement::Query(source)).map_err(|m| self.err(p.start, m))?;
        let Some(mode) = def.connector.sink_mode(&def.opts) else {
            return Err(self.err(p.start, format!("table '{sink}' (connector '{}') cannot be written", def.opts.connector)));
        };
        // the query's columns must cast to the sink's physical columns
        let target = def.physical.clone();
        let qs = plan.schema().clone();
        if qs.fields().len() != target.fields().len() {
            return Err(self.err(p.start, format!("the query has {} columns but table '{sink}' has {} ({})", qs.fields().len(), target.fields().len(), target.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "))));
        }
        let mut casts = Vec::new();
        for (i, f) in target.fields().iter().enumerate() {
            let (q, qf) = qs.qualified_field(i);
            if !arrow::compute::can_cast_types(qf.data_type(), f.data_type()) {
                return Err(self.err(p.start, format!("column {} ('{}' of type {}) cannot be written to '{}' of type {} in table '{sink}'", i + 1, qf.name(), qf.data_type(), f.name(), f.data_type())));
            }
            casts.push(datafusion::logical_expr::cast(Expr::Column(Column::from((q, qf))), f.data_type().clone()));
        }
        let seed = format!("{sink}|{}", plan.display_indent());
        let batch = self.batch_mode();
        let mut lower = Lower { c: self, seed, uids: Vec::new(), sources: HashMap::new(), lowered: HashMap::new(), rank: None, rank_used: None };
        let lowered = if batch { batch::lower(&mut lower, &plan) } else { lower.lower(&plan) }.map_err(|m| lower.c.err(p.start, m))?;
        proc_window::check_aggregated(&lowered).map_err(|m| lower.c.err(p.start, m))?;
        if let (ChangelogMode::AppendOnly, Some(op)) = (mode, &lowered.updating) {
            // a connector that upserts by a declared key: say so
            let with_key = TableOptions { primary_key: vec![String::new()], ..def.opts.clone() };
            let hint = if def.opts.primary_key.is_empty() && def.connector.sink_mode(&with_key) == Some(ChangelogMode::All) { "; declare PRIMARY KEY (...) NOT ENFORCED on the table to write the updates as upserts" } else { "" };
            return Err(lower.c.err(p.start, format!("table '{sink}' (connector '{}') is append-only and cannot take the updates that {op} produces{hint}", def.opts.connector)));
        }
        let out_schema = nullable(&target);
        let cast_calc = Calc { name: format!("{sink}: cast"), steps: vec![Step::Project(phys_exprs(&casts, &qs).map_err(|m| lower.c.err(p.start, m))?, out_schema.clone())] };
        let stream = lower.stateless(lowered.stream, cast_calc, "sink-cast", &sink);
        let uid = lower.uid("sink", &sink);
        let par = if lower.c.fixed_parallelism { None } else { lower.c.job.parallelism };
        def.connector.add_sink(&def.opts, SinkArgs { stream: &stream, name: &format!("sink: {sink}"), uid: &uid, parallelism: par, schema: out_schema }).map_err(|m| lower.c.err(p.start, format!("table '{sink}': {m}")))?;
        let uids = std::mem::take(&mut lower.uids);
        let updating = lowered.updating.clone();
        self.job.inserts.push(InsertPlan { sink, plan: plan.display_indent().to_string(), updating, uids });
        Ok(())
    }

    fn query(&mut self, p: &Piece) -> Result<QueryPlan, SqlError> {
        let words = script::leading_words(p.text(self.script), 1);
        if !matches!(words.first().map(String::as_str), Some("SELECT" | "WITH")) {
            return Err(self.err(p.start, "expected a query (SELECT ... or WITH ...)"));
        }
        let text = self.prepare_query_text(p)?;
        let Statement::Query(mut q) = self.parse_one(p, &text)? else { return Err(self.err(p.start, "expected a query")) };
        self.group_windows(p, &mut q)?;
        self.laterals(p, &mut q)?;
        let plan = self.plan_statement(Statement::Query(q)).map_err(|m| self.err(p.start, m))?;
        let seed = format!("query|{}", plan.display_indent());
        let batch = self.batch_mode();
        let mut lower = Lower { c: self, seed, uids: Vec::new(), sources: HashMap::new(), lowered: HashMap::new(), rank: None, rank_used: None };
        let lowered = if batch { batch::lower(&mut lower, &plan) } else { lower.lower(&plan) }.map_err(|m| lower.c.err(p.start, m))?;
        proc_window::check_aggregated(&lowered).map_err(|m| lower.c.err(p.start, m))?;
        Ok(QueryPlan { stream: lowered.stream, schema: nullable(plan.schema().as_arrow()), updating: lowered.updating, plan: plan.display_indent().to_string() })
    }
}

impl crate::group_window::Host for Compiler<'_> {
    fn placeholder(&mut self) -> String {
        let p = format!("__window_{}", self.next_window);
        self.next_window += 1;
        p
    }
    fn window(&mut self, call: WindowCall) -> Result<(), SqlError> {
        self.register_window(call)
    }
    fn derived(&mut self, q: datafusion::sql::sqlparser::ast::Query, pos: script::Pos) -> Result<String, SqlError> {
        let name = format!("__group_window_input_{}", self.next_window);
        self.next_window += 1;
        let e = |m: String| SqlError { pos, statement: None, message: m };
        let plan = self.plan_view(Statement::Query(Box::new(q))).map_err(e)?;
        self.register(&name, nullable(plan.schema().as_arrow())).map_err(e)?;
        self.catalog.insert(name.clone(), Entry::View(plan));
        Ok(name)
    }
}

/// Flink names the column of a nested field access `row.field` after the field
/// (DataFusion: `table.row[field]`): the unnamed field accesses of a view's top
/// projection are named so (unless the name is taken).
fn field_access_names(plan: LogicalPlan) -> Result<LogicalPlan, String> {
    let LogicalPlan::Projection(pr) = &plan else { return Ok(plan) };
    let mut names: HashSet<String> = pr.schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut changed = false;
    let exprs: Vec<Expr> = pr
        .expr
        .iter()
        .enumerate()
        .map(|(i, e)| match unalias(e) {
            // unnamed: its name is still DataFusion's (the optimizer may have aliased it so)
            Expr::ScalarFunction(f) if f.func.name() == "get_field" && *pr.schema.field(i).name() == unalias(e).schema_name().to_string() => match f.args.last() {
                Some(Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(n)), _)) if names.insert(n.clone()) => {
                    changed = true;
                    unalias(e).clone().alias(n.clone())
                }
                _ => e.clone(),
            },
            _ => e.clone(),
        })
        .collect();
    if !changed {
        return Ok(plan);
    }
    datafusion::logical_expr::Projection::try_new(exprs, pr.input.clone()).map(LogicalPlan::Projection).map_err(df_err)
}

/// Physical expressions of `exprs` over `schema`.
pub(crate) fn phys_exprs(exprs: &[Expr], schema: &DFSchema) -> Result<Vec<Arc<dyn PhysicalExpr>>, String> {
    let props = ExecutionProps::new();
    let ctx = PhysicalPlanningContext::default();
    exprs.iter().map(|e| create_physical_expr(e, schema, &props, &ctx).map(|p| crate::narrow::narrow(p, schema.as_arrow())).map_err(df_err)).collect()
}

/// What a column is besides its value: a window's bounds or the rowtime attribute.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WinCol {
    Start,
    End,
    /// bounds of a SESSION window (merged by the aggregation)
    SessionStart,
    SessionEnd,
    /// the rowtime attribute of a table (its `WATERMARK FOR` column)
    Rowtime,
    /// `window_start` / `window_end` of a window aggregation's or window join's
    /// output: its rows are final, emitted when the watermark passes the window's end
    /// (before that watermark goes downstream), so an aggregation grouped by both is
    /// a window aggregation again (Flink's cascading window aggregation) and a join
    /// on both of two such inputs is a window join
    FinalStart,
    FinalEnd,
    /// bounds of a window TVF over a processing-time attribute (the aggregation
    /// assigns its rows to windows by its own clock, see `proc_window`)
    ProcStart(crate::script::WindowKind),
    ProcEnd(crate::script::WindowKind),
}

impl WinCol {
    /// A window's start: of a window TVF (not a session) or of final window rows.
    pub(crate) fn is_start(self) -> bool {
        matches!(self, WinCol::Start | WinCol::FinalStart)
    }
    pub(crate) fn is_end(self) -> bool {
        matches!(self, WinCol::End | WinCol::FinalEnd)
    }
    /// A window TVF's bound (its rows are not aggregated yet).
    pub(crate) fn is_tvf_bound(self) -> bool {
        matches!(self, WinCol::Start | WinCol::End | WinCol::SessionStart | WinCol::SessionEnd | WinCol::ProcStart(_) | WinCol::ProcEnd(_))
    }
    /// A bound of a processing-time window TVF.
    pub(crate) fn is_proc_bound(self) -> bool {
        matches!(self, WinCol::ProcStart(_) | WinCol::ProcEnd(_))
    }
    /// What the column is in the final rows of a window aggregation or window join
    /// over it: the window bounds stay window bounds (of final rows); nothing else does.
    pub(crate) fn in_final_rows(w: Option<WinCol>) -> Option<WinCol> {
        match w? {
            WinCol::Start | WinCol::SessionStart | WinCol::FinalStart => Some(WinCol::FinalStart),
            WinCol::End | WinCol::SessionEnd | WinCol::FinalEnd => Some(WinCol::FinalEnd),
            // processing-time windows fire by the clock, not the watermark
            WinCol::Rowtime | WinCol::ProcStart(_) | WinCol::ProcEnd(_) => None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Lowered {
    pub(crate) stream: DataStream<ChangeBatch>,
    /// the operator that makes this stream updating
    pub(crate) updating: Option<String>,
    /// which columns are a window's start/end or the rowtime (for window aggregations)
    pub(crate) win: Vec<Option<WinCol>>,
}

pub(crate) struct Lower<'c, 'a> {
    c: &'c mut Compiler<'a>,
    seed: String,
    uids: Vec<String>,
    /// the source of each table the query reads, read once however often it is scanned
    /// (Flink's source reuse: the `person` and `auction` views of one Nexmark table)
    sources: HashMap<String, DataStream<ChangeBatch>>,
    /// every sub-plan lowered so far, by [`Lower::reuse_key`]: a sub-plan the query
    /// holds twice is computed once and its stream read by both (Flink's sub-plan
    /// reuse: Nexmark q5's two identical HOP aggregations, q7's two reads of `bid`)
    lowered: HashMap<String, Lowered>,
    /// the Top-N bound of a `ROW_NUMBER` filter being lowered (see `rank`)
    pub(crate) rank: Option<crate::rank::RankBound>,
    /// whether the projection above a Top-N filter selects the rank column
    pub(crate) rank_used: Option<bool>,
}

pub(crate) fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// `CASE WHEN p THEN e END`: the argument of `f(e) FILTER (WHERE p)`.
fn filtered(p: &Expr, e: Expr) -> Expr {
    Expr::Case(datafusion::logical_expr::expr::Case { expr: None, when_then_expr: vec![(Box::new(p.clone()), Box::new(e))], else_expr: None })
}

/// Whether keyed state holds values of type `dt` (see `ops::Value`).
pub(crate) fn value_type(dt: &DataType) -> bool {
    use DataType::*;
    matches!(dt, Null | Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32 | Float64 | Utf8 | LargeUtf8 | Utf8View | Decimal128(..) | Timestamp(..) | Date32 | Date64)
}

impl Lower<'_, '_> {
    /// The aggregate `func(args)` as a Rust UDAF of `CompileOptions::udafs` (`None`:
    /// not one of them). Over an updating input (from `updating`) its accumulator
    /// must be able to retract rows.
    pub(crate) fn udaf(&self, func: &Arc<datafusion::logical_expr::AggregateUDF>, args: &[Expr], in_schema: &DFSchema, updating: Option<&str>) -> Result<Option<AggKind>, String> {
        if !self.c.udafs.iter().any(|u| u.name() == func.name() || u.aliases().iter().any(|a| a == func.name())) {
            return Ok(None);
        }
        let fname = func.name().to_string();
        let name = format!("{fname}({})", args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
        if args.len() != 1 {
            return Err(format!("{name}: aggregate functions written in Rust take one argument in streaming aggregations ({} given)", args.len()));
        }
        use datafusion::logical_expr::ExprSchemable;
        let arg_fields: Vec<arrow::datatypes::FieldRef> = args.iter().map(|a| a.to_field(in_schema).map(|(_, f)| f)).collect::<Result<_, _>>().map_err(df_err)?;
        if let Some(f) = arg_fields.iter().find(|f| !value_type(f.data_type())) {
            return Err(format!("{name}: arguments of type {} are not supported in streaming aggregations yet", f.data_type()));
        }
        let return_field = func.return_field(&arg_fields).map_err(|e| format!("{name}: {}", df_err(e)))?;
        if !value_type(return_field.data_type()) {
            return Err(format!("{name}: results of type {} are not supported in streaming aggregations yet", return_field.data_type()));
        }
        let call = crate::udaf::UdafCall {
            udf: func.clone(),
            name: name.clone(),
            input_schema: Arc::new(in_schema.as_arrow().clone()),
            arg_exprs: phys_exprs(args, in_schema)?,
            arg_fields,
            return_field,
            retracting: updating.is_some(),
        };
        if let Some(op) = updating
            && !call.accumulator()?.supports_retract_batch()
        {
            return Err(format!("{fname} cannot aggregate the updating input from {op}: its accumulator does not retract rows (Accumulator::supports_retract_batch is false)"));
        }
        Ok(Some(AggKind::Udaf(Arc::new(call))))
    }

    /// A uid derived from the query (sink and plan text), the operator kind and its
    /// own description: stable for an unchanged query.
    pub(crate) fn uid(&mut self, kind: &str, detail: &str) -> String {
        let h = xxhash_rust::xxh3::xxh3_64(format!("{}|{kind}|{detail}", self.seed).as_bytes());
        let mut uid = format!("sql-{kind}-{h:016x}");
        let mut n = 2;
        while self.c.uids.contains(&uid) {
            uid = format!("sql-{kind}-{h:016x}-{n}");
            n += 1;
        }
        self.c.uids.insert(uid.clone());
        self.uids.push(uid.clone());
        uid
    }

    pub(crate) fn par<T: weir::Data>(&self, s: DataStream<T>) -> DataStream<T> {
        match self.c.job.parallelism {
            Some(p) if !self.c.fixed_parallelism => s.parallelism(p),
            _ => s,
        }
    }

    /// A stateless operator (`kind`: what it does, a word; `detail`: what makes it this
    /// one, hashed into the uid).
    pub(crate) fn stateless(&mut self, s: DataStream<ChangeBatch>, calc: Calc, kind: &str, detail: &str) -> DataStream<ChangeBatch> {
        let uid = self.uid(kind, &format!("{detail}|{}", calc.steps.len()));
        let name = calc.name.clone();
        // a process function: CURRENT_WATERMARK() evaluates to the operator's watermark
        let out = s.process(move |b, ctx: &mut weir::ProcessContext<'_, ChangeBatch>| calc.run_at(b, ctx)).uid(&uid).name(&name);
        self.par(out)
    }

    pub(crate) fn lower(&mut self, plan: &LogicalPlan) -> Result<Lowered, String> {
        // A Top-N's filter and window are lowered in the context its projection and
        // filter set (`rank`, `rank_used`): not reused on their own.
        let reusable = self.rank.is_none() && self.rank_used.is_none() && !matches!(plan, LogicalPlan::Window(_) | LogicalPlan::SubqueryAlias(_));
        if !reusable {
            return self.lower_new(plan);
        }
        let key = self.reuse_key(plan);
        if let Some(l) = self.lowered.get(&key) {
            return Ok(l.clone());
        }
        let l = self.lower_new(plan)?;
        self.lowered.insert(key, l.clone());
        Ok(l)
    }

    /// What identifies a sub-plan's result: its text with its schema, where a
    /// window TVF's placeholder table (`__window_<n>`, one per call in the query
    /// text) reads as the call itself, so that two equal calls are one sub-plan.
    fn reuse_key(&self, plan: &LogicalPlan) -> String {
        const PLACEHOLDER: &str = "__window_";
        let text = plan.display_indent_schema().to_string();
        let mut key = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(PLACEHOLDER) {
            let after = &rest[at + PLACEHOLDER.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let name = &rest[at..at + PLACEHOLDER.len() + digits];
            key.push_str(&rest[..at]);
            match self.c.catalog.get(name) {
                Some(Entry::Window(w)) if digits > 0 => key.push_str(&format!("{PLACEHOLDER}<{:?} {} {}>", w.kind, w.table, w.time_col)),
                _ => key.push_str(name),
            }
            rest = &after[digits..];
        }
        key.push_str(rest);
        key
    }

    fn lower_new(&mut self, plan: &LogicalPlan) -> Result<Lowered, String> {
        match plan {
            LogicalPlan::Projection(pr) => {
                crate::rank::note_projection(self, pr);
                let l = self.lower(&pr.input)?;
                let exprs = phys_exprs(&pr.expr, pr.input.schema())?;
                let win = pr
                    .expr
                    .iter()
                    .map(|e| match unalias(e) {
                        Expr::Column(c) => pr.input.schema().index_of_column(c).ok().and_then(|i| l.win.get(i).copied().flatten()),
                        _ => None,
                    })
                    .collect();
                let calc = Calc { name: format!("Calc(select=[{}])", pr.expr.iter().map(|e| e.schema_name().to_string()).collect::<Vec<_>>().join(", ")), steps: vec![Step::Project(exprs, nullable(pr.schema.as_arrow()))] };
                let stream = self.stateless(l.stream, calc, "project", &pr.schema.to_string());
                Ok(Lowered { stream, updating: l.updating, win })
            }
            LogicalPlan::Filter(f) => {
                if let Some((n, rest)) = crate::rank::match_filter(f)? {
                    return crate::rank::lower_filter(self, f, n, rest);
                }
                let l = self.lower(&f.input)?;
                let e = phys_exprs(std::slice::from_ref(&f.predicate), f.input.schema())?.remove(0);
                let calc = Calc { name: format!("Calc(where=[{}])", f.predicate), steps: vec![Step::Filter(e)] };
                let stream = self.stateless(l.stream, calc, "filter", &f.predicate.to_string());
                Ok(Lowered { stream, ..l })
            }
            LogicalPlan::SubqueryAlias(a) => self.lower(&a.input),
            LogicalPlan::TableScan(scan) => {
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return Err(format!("internal: unexpected pushed-down filters or limit on {}", scan.table_name));
                }
                let name = scan.table_name.table().to_string();
                let l = self.scan_entry(&name)?;
                match &scan.projection {
                    None => Ok(l),
                    Some(idx) => {
                        let exprs: Vec<Arc<dyn PhysicalExpr>> = idx
                            .iter()
                            .map(|i| Arc::new(datafusion::physical_expr::expressions::Column::new(scan.projected_schema.field(idx.iter().position(|x| x == i).unwrap_or(0)).name(), *i)) as Arc<dyn PhysicalExpr>)
                            .collect();
                        let win = idx.iter().map(|i| l.win.get(*i).copied().flatten()).collect();
                        let calc = Calc { name: format!("{name}: projection"), steps: vec![Step::Project(exprs, nullable(scan.projected_schema.as_arrow()))] };
                        let stream = self.stateless(l.stream, calc, "scan-project", &format!("{name}-{idx:?}"));
                        Ok(Lowered { stream, updating: l.updating, win })
                    }
                }
            }
            LogicalPlan::Aggregate(agg) => self.aggregate(agg),
            LogicalPlan::Union(u) => {
                let mut parts = Vec::new();
                for i in &u.inputs {
                    parts.push(self.lower(i)?);
                }
                let first = parts.remove(0);
                let others: Vec<DataStream<ChangeBatch>> = parts.iter().map(|p| p.stream.clone()).collect();
                let updating = first.updating.clone().or_else(|| parts.iter().find_map(|p| p.updating.clone()));
                let n = u.schema.fields().len();
                let stream = first.stream.union(&others);
                let uid = self.uid("union", "");
                let stream = self.par(stream.uid(&uid));
                Ok(Lowered { stream, updating, win: vec![None; n] })
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Err("queries without a table (VALUES, SELECT without FROM) are not supported yet".into()),
            LogicalPlan::Join(j) => self.join(j),
            LogicalPlan::Sort(_) => Err("ORDER BY is not supported in streaming queries yet (only on time attributes in Flink)".into()),
            LogicalPlan::Limit(_) => Err("LIMIT is not supported in streaming queries yet".into()),
            LogicalPlan::Window(w) => match self.rank.take() {
                Some(bound) => crate::rank::lower(self, w, bound),
                None => crate::over::lower(self, w),
            },
            LogicalPlan::Distinct(_) => Err("SELECT DISTINCT is not supported yet".into()),
            other => Err(format!("{} is not supported in streaming SQL yet", other.display())),
        }
    }

    fn scan_entry(&mut self, name: &str) -> Result<Lowered, String> {
        enum What {
            T(Arc<TableDef>),
            V(LogicalPlan),
            W(WindowCall),
            L(Arc<lateral::LateralCall>),
        }
        if let Some(Entry::Lookup(l)) = self.c.catalog.get(name) {
            return Err(format!("the lookup table '{}' (FOR SYSTEM_TIME AS OF) can only be the right side of a JOIN", l.call.table));
        }
        let what = match self.c.catalog.get(name) {
            Some(Entry::Table(t)) => What::T(t.clone()),
            Some(Entry::View(v)) => What::V(v.clone()),
            Some(Entry::Window(w)) => What::W(w.clone()),
            Some(Entry::Lateral(l)) => What::L(l.clone()),
            Some(Entry::Lookup(_)) | None => return Err(format!("unknown table '{name}'")),
        };
        match what {
            What::T(t) => self.source(&t),
            What::V(v) => self.lower(&v),
            What::L(call) => {
                let base = self.scan_entry(&call.base)?;
                let op = call.op.clone();
                let uid = self.uid("lateral", &format!("{}|{}", call.base, op.name));
                let name = op.name.clone();
                let stream = self.par(base.stream.flat_map(move |b, out| op.run(b, out)).uid(&uid).name(&name));
                let mut win = base.win;
                win.extend(std::iter::repeat_n(None, call.op.fields.len()));
                Ok(Lowered { stream, updating: base.updating, win })
            }
            What::W(call) => {
                let base = self.scan_entry(&call.table)?;
                if base.updating.is_some() {
                    return Err(format!("window TVF over '{}': the input is updating ({}); windows need an append-only input", call.table, base.updating.unwrap_or_default()));
                }
                let bschema = self.c.entry_schema(&call.table).ok_or("window over a window")?;
                let time_col = bschema.index_of(&call.time_col).map_err(|e| e.to_string())?;
                let proctime = self.entry_proctime(&call.table, time_col);
                if !proctime && !self.entry_rowtime(&call.table, time_col) {
                    return Err(format!("window TVF over '{}': '{}' is not a time attribute (the WATERMARK column of a table, kept through projections and filters; joins and aggregations do not keep it)", call.table, call.time_col));
                }
                let mut fields: Vec<Field> = bschema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
                for n in ["window_start", "window_end", "window_time"] {
                    fields.push(Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, None), true));
                }
                let n = fields.len();
                let op = WindowAssign { name: format!("{:?}({})", call.kind, call.table), kind: call.kind, time_col, schema: Arc::new(Schema::new(fields)), proctime };
                let uid = self.uid("window-assign", &format!("{:?}-{}-{}", call.kind, call.table, call.time_col));
                let opname = op.name.clone();
                let stream = self.par(base.stream.flat_map(move |b, out| op.run(b, out)).uid(&uid).name(&opname));
                let mut win = vec![None; n];
                let session = matches!(call.kind, crate::script::WindowKind::Session { .. });
                win[n - 3] = Some(if proctime { WinCol::ProcStart(call.kind) } else if session { WinCol::SessionStart } else { WinCol::Start });
                win[n - 2] = Some(if proctime { WinCol::ProcEnd(call.kind) } else if session { WinCol::SessionEnd } else { WinCol::End });
                Ok(Lowered { stream, updating: None, win })
            }
        }
    }

    fn source(&mut self, t: &Arc<TableDef>) -> Result<Lowered, String> {
        if let Some(s) = self.sources.get(&t.name) {
            return Ok(Lowered { stream: s.clone(), updating: None, win: vec![None; t.schema.fields().len()] });
        }
        let factory = t.connector.source(&t.opts, t.physical.clone()).map_err(|m| format!("table '{}': {m}", t.name))?;
        let uid = self.uid("source", &t.name);
        let (computed, wm) = (t.computed.clone(), t.watermark.clone());
        let f = factory.clone();
        // `scan.watermark.idle-timeout` (of connectors that have it): a subtask that
        // reads nothing that long is idle (it does not hold back the watermark)
        // (and a split of a source with per-split watermarks that long without records)
        let mut strategy = WatermarkStrategy::none();
        let mut idle = None;
        if let Some(v) = t.opts.get("scan.watermark.idle-timeout") {
            let d = weir_connectors::parse_duration(v).map_err(|m| format!("table '{}': option 'scan.watermark.idle-timeout' = '{v}': {m}", t.name))?;
            if !d.is_zero() {
                strategy = strategy.with_idleness(d);
                idle = Some(d);
            }
        }
        let s = self.c.env.source(
            &format!("source: {}", t.name),
            move |ctx: &SourceContext| SqlSource { inner: f(ctx), computed: computed.clone(), watermark: wm.clone(), emitted: i64::MIN, name: String::new(), splits: SplitWatermarks::new(idle) },
            strategy,
        );
        let s = self.par(s.uid(&uid));
        self.sources.insert(t.name.clone(), s.clone());
        let _: &SourceFactory = &factory;
        let mut win = vec![None; t.schema.fields().len()];
        if let Some((rt, _)) = &t.watermark {
            win[*rt] = Some(WinCol::Rowtime);
        }
        Ok(Lowered { stream: s, updating: None, win })
    }

    fn aggregate(&mut self, agg: &datafusion::logical_expr::Aggregate) -> Result<Lowered, String> {
        let l = self.lower(&agg.input)?;
        let in_schema = agg.input.schema();
        let mut key_exprs = Vec::new();
        let mut win_in_key: Vec<Option<WinCol>> = Vec::new();
        for g in &agg.group_expr {
            if matches!(g, Expr::GroupingSet(_)) {
                return Err("GROUPING SETS, CUBE and ROLLUP are not supported yet".into());
            }
            key_exprs.push(g.clone());
            win_in_key.push(match unalias(g) {
                Expr::Column(c) => in_schema.index_of_column(c).ok().and_then(|i| l.win.get(i).copied().flatten()),
                _ => None,
            });
        }
        let we = win_in_key.iter().position(|w| matches!(w, Some(WinCol::End | WinCol::SessionEnd | WinCol::FinalEnd | WinCol::ProcEnd(_))));
        let ws = win_in_key.iter().position(|w| matches!(w, Some(WinCol::Start | WinCol::SessionStart | WinCol::FinalStart | WinCol::ProcStart(_))));
        let windowed = match (ws, we) {
            (Some(s), Some(e)) => {
                let (sw, ew) = (win_in_key[s].unwrap_or(WinCol::Rowtime), win_in_key[e].unwrap_or(WinCol::Rowtime));
                let same = matches!((sw, ew), (WinCol::Start, WinCol::End) | (WinCol::SessionStart, WinCol::SessionEnd) | (WinCol::FinalStart, WinCol::FinalEnd)) || matches!((sw, ew), (WinCol::ProcStart(a), WinCol::ProcEnd(b)) if a == b);
                if !same {
                    return Err(format!("a window aggregation must GROUP BY window_start and window_end of the same window: {} and {} are not", agg.group_expr[s], agg.group_expr[e]));
                }
                Some(e)
            }
            _ if l.win.iter().any(|w| w.is_some_and(WinCol::is_tvf_bound)) => {
                return Err("a window aggregation must GROUP BY both window_start and window_end".into());
            }
            // the bounds of final window rows without both in the key (Flink: a
            // regular, updating aggregation over the append-only rows)
            _ => None,
        };
        let session = match (ws, we) {
            (Some(s), Some(e)) if win_in_key[e] == Some(WinCol::SessionEnd) => Some((s, e)),
            _ => None,
        };
        // a processing-time window: its kind, where its bounds are in the key
        let proc_window = match (ws, we) {
            (Some(s), Some(e)) => match win_in_key[e] {
                Some(WinCol::ProcEnd(kind)) => Some((kind, s, e)),
                _ => None,
            },
            _ => None,
        };
        let mut kinds = Vec::new();
        let mut distinct = Vec::new();
        let mut args = Vec::new();
        for a in &agg.aggr_expr {
            let Expr::AggregateFunction(af) = unalias(a) else { return Err(format!("unsupported aggregate {a}")) };
            let fname = af.func.name().to_ascii_lowercase();
            if !af.params.order_by.is_empty() {
                return Err(format!("{}: WITHIN GROUP (ORDER BY ...) is not supported yet", fname.to_uppercase()));
            }
            let a0 = af.params.args.first();
            let is_star = a0.is_none() || matches!(a0, Some(Expr::Literal(v, _)) if !v.is_null());
            if let Some(kind) = self.udaf(&af.func, &af.params.args, in_schema, l.updating.as_deref())? {
                if af.params.distinct {
                    return Err(format!("{}(DISTINCT ...) of an aggregate function written in Rust is not supported yet", af.func.name()));
                }
                if af.params.filter.is_some() {
                    return Err(format!("{}(...) FILTER (WHERE ...) of an aggregate function written in Rust is not supported yet", af.func.name()));
                }
                args.push(Some(phys_exprs(&af.params.args, in_schema)?.remove(0)));
                kinds.push(kind);
                distinct.push(false);
                continue;
            }
            let kind = match fname.as_str() {
                "count" if is_star => AggKind::CountStar,
                "count" => AggKind::Count,
                "sum" => AggKind::Sum,
                "avg" | "mean" => AggKind::Avg,
                "min" => AggKind::Min,
                "max" => AggKind::Max,
                other => return Err(format!("aggregate function {} is not supported yet", other.to_uppercase())),
            };
            if matches!(kind, AggKind::Min | AggKind::Max) && l.updating.is_some() {
                return Err(format!("{} over an updating input (from {}) is not supported yet", fname.to_uppercase(), l.updating.clone().unwrap_or_default()));
            }
            if af.params.args.len() > 1 {
                return Err(format!("{} with several arguments is not supported", fname.to_uppercase()));
            }
            if af.params.distinct && kind == AggKind::CountStar {
                return Err("COUNT(DISTINCT *) is not valid: name the column".into());
            }
            distinct.push(af.params.distinct && !matches!(kind, AggKind::Min | AggKind::Max));
            // `f(x) FILTER (WHERE p)`: f over `CASE WHEN p THEN x END` (the built-in
            // aggregates skip nulls); `COUNT(*) FILTER (WHERE p)` counts `CASE WHEN p THEN 1 END`
            let (kind, arg) = match (&af.params.filter, kind) {
                (None, AggKind::CountStar) => (AggKind::CountStar, None),
                (None, k) => (k, Some(a0.ok_or("missing argument")?.clone())),
                (Some(p), AggKind::CountStar) => (AggKind::Count, Some(filtered(p, datafusion::logical_expr::lit(1i64)))),
                (Some(p), k) => (k, Some(filtered(p, a0.ok_or("missing argument")?.clone()))),
            };
            args.push(arg.map(|a| phys_exprs(std::slice::from_ref(&a), in_schema).map(|mut v| v.remove(0))).transpose()?);
            kinds.push(kind);
        }
        if windowed.is_some() && l.updating.is_some() {
            return Err(format!("a window aggregation over an updating input (from {}) is not supported", l.updating.clone().unwrap_or_default()));
        }
        let desc = format!(
            "{}(groupBy=[{}], select=[{}])",
            if proc_window.is_some() { "ProcTimeWindowAggregate" } else if windowed.is_some() { "WindowAggregate" } else { "GroupAggregate" },
            agg.group_expr.iter().map(|e| e.schema_name().to_string()).collect::<Vec<_>>().join(", "),
            agg.aggr_expr.iter().map(|e| e.schema_name().to_string()).collect::<Vec<_>>().join(", ")
        );
        let mut args = args;
        let mut key_exprs = key_exprs;
        if let Some((s, e)) = session {
            // sessions merge: the key is the group without the bounds, which travel as arguments
            args.push(Some(phys_exprs(std::slice::from_ref(&key_exprs[s]), in_schema)?.remove(0)));
            args.push(Some(phys_exprs(std::slice::from_ref(&key_exprs[e]), in_schema)?.remove(0)));
            key_exprs = key_exprs.into_iter().enumerate().filter(|(i, _)| *i != s && *i != e).map(|(_, k)| k).collect();
        }
        if let Some((_, s, e)) = proc_window {
            // windows by the aggregation's clock: the key is the group without the bounds
            key_exprs = key_exprs.into_iter().enumerate().filter(|(i, _)| *i != s && *i != e).map(|(_, k)| k).collect();
        }
        let key_rows = KeyRows { name: format!("{desc}: keys"), keys: phys_exprs(&key_exprs, in_schema)?, args };
        let spec = Arc::new(AggSpec { name: desc.clone(), aggs: kinds, distinct, out_schema: nullable(agg.schema.as_arrow()), window_end: windowed });
        let kuid = self.uid("agg-keys", &desc);
        let keyed = self.par(l.stream.flat_map(move |b, out| key_rows.run(b, out)).uid(&kuid).name(&format!("{desc}: keys")));
        let auid = self.uid(if proc_window.is_some() { "proctime-window-agg" } else if session.is_some() { "session-agg" } else if windowed.is_some() { "window-agg" } else { "group-agg" }, &desc);
        let keyed = keyed.key_by(|r: &crate::ops::KeyedRow| r.key.clone());
        let out = match (session, proc_window) {
            (_, Some((kind, s, e))) => keyed.process(proc_window::ProcWindowAgg::new(spec, kind, s, e)),
            (Some((s, e)), None) => keyed.process(crate::session::SessionAgg::new(spec, s, e)),
            (None, None) => keyed.process(AggFunction { out: crate::rows::Output::new(spec.out_schema.clone(), &spec.name), spec, state: None }),
        };
        let out = self.par(out.uid(&auid).name(&desc));
        let n_out = agg.schema.fields().len();
        // SELECT DISTINCT (no aggregates) over an append-only input only ever inserts
        let insert_only = windowed.is_some() || (agg.aggr_expr.is_empty() && l.updating.is_none());
        let updating = if insert_only { None } else { Some(desc) };
        // a window aggregation's window bounds (group columns first in its output)
        // stay the bounds of its final rows; nothing else keeps a window property
        let mut win = vec![None; n_out];
        if windowed.is_some() {
            for (i, w) in win_in_key.iter().enumerate() {
                win[i] = WinCol::in_final_rows(*w);
            }
        }
        Ok(Lowered { stream: out, updating, win })
    }
}

/// A table's WATERMARK expression.
#[derive(Clone, Debug)]
enum Watermark {
    /// `rowtime + offset` (ms; `rowtime - INTERVAL '5' SECOND` is -5000): computed
    /// from the batch's greatest rowtime
    Offset(i64),
    /// any other expression, evaluated over every row
    Expr(Arc<dyn PhysicalExpr>),
}

/// The engine source of a SQL table: reads batches, evaluates computed columns,
/// stamps each batch with its greatest rowtime and emits the watermark the
/// table's WATERMARK expression gives (the greatest over the rows seen so far).
struct SqlSource {
    inner: Box<dyn BatchSource>,
    computed: Calc,
    watermark: Option<(usize, Watermark)>,
    emitted: i64,
    name: String,
    splits: SplitWatermarks,
}

/// Per-split watermarks, for sources whose batches each come from one split
/// ([`BatchSource::batch_split`], e.g. Kafka partitions): the subtask's watermark is
/// the least of its splits' (each the greatest its rows gave), leaving out splits
/// without records for the idle timeout; so a partition read ahead of another does
/// not make the other's records late.
struct SplitWatermarks {
    idle: Option<std::time::Duration>,
    started: std::time::Instant,
    /// split → (its watermark, when it last had records)
    by_split: std::collections::HashMap<u64, (i64, std::time::Instant)>,
}

impl SplitWatermarks {
    fn new(idle: Option<std::time::Duration>) -> Self {
        SplitWatermarks { idle, started: std::time::Instant::now(), by_split: std::collections::HashMap::new() }
    }

    /// Split `split` gave watermark `w` (if any); the watermark of the live splits now
    /// (`None`: some live split has none yet, or every split is idle).
    fn observe(&mut self, split: u64, w: Option<i64>, live: &[u64]) -> Option<i64> {
        let now = std::time::Instant::now();
        let e = self.by_split.entry(split).or_insert((i64::MIN, now));
        e.1 = now;
        if let Some(w) = w {
            e.0 = e.0.max(w);
        }
        let idle = |last: std::time::Instant| self.idle.is_some_and(|t| now.duration_since(last) >= t);
        let mut min: Option<i64> = None;
        for s in live {
            let (w, last) = self.by_split.get(s).copied().unwrap_or((i64::MIN, self.started));
            if idle(last) {
                continue;
            }
            min = Some(min.map_or(w, |m: i64| m.min(w)));
        }
        self.by_split.retain(|s, _| live.contains(s));
        min.filter(|m| *m > i64::MIN)
    }
}

impl Source<ChangeBatch> for SqlSource {
    fn open(&mut self, ctx: &SourceContext) -> Result<(), ConnectorError> {
        self.inner.open(ctx)
    }
    fn poll(&mut self, out: &mut SourceOutput<'_, ChangeBatch>) -> Result<SourcePoll, ConnectorError> {
        if out.remaining() == 0 {
            return Ok(SourcePoll::Ready);
        }
        let Some(b) = self.inner.next_batch(1024)? else { return Ok(SourcePoll::Finished) };
        if b.num_rows() == 0 {
            return Ok(SourcePoll::Idle);
        }
        let name = if self.name.is_empty() { &self.computed.name } else { &self.name };
        let b = match self.computed.apply(ChangeBatch::inserts(b)).map_err(|e| ConnectorError::Other(format!("{name}: {e}")))? {
            Some(b) => b,
            None => return Ok(SourcePoll::Ready),
        };
        let mut ts = weir::record::NO_TIMESTAMP;
        if let Some((rt, wm)) = &self.watermark {
            ts = max_millis(b.rows.0.column(*rt)).map_err(ConnectorError::Other)?.unwrap_or(ts);
            let w = match wm {
                Watermark::Offset(offset) => (ts != weir::record::NO_TIMESTAMP).then(|| ts.saturating_add(*offset)),
                Watermark::Expr(wm) => {
                    let w = wm.evaluate(&b.rows.0).and_then(|v| v.into_array(b.num_rows())).map_err(|e| ConnectorError::Other(format!("watermark: {e}")))?;
                    max_millis(&w).map_err(ConnectorError::Other)?
                }
            };
            let w = match self.inner.batch_split() {
                Some((split, live)) => self.splits.observe(split, w, live),
                None => w,
            };
            if let Some(w) = w {
                self.emitted = self.emitted.max(w);
            }
        }
        out.collect_at(ts, b);
        if self.emitted > i64::MIN {
            out.emit_watermark(self.emitted);
        }
        Ok(SourcePoll::Ready)
    }
    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.inner.snapshot()
    }
    fn snapshot_for(&mut self, checkpoint_id: u64) -> Result<Vec<Vec<u8>>, ConnectorError> {
        self.inner.snapshot_for(checkpoint_id)
    }
    fn checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), ConnectorError> {
        self.inner.checkpoint_complete(checkpoint_id)
    }
    fn restore(&mut self, splits: Vec<Vec<u8>>) -> Result<(), ConnectorError> {
        self.inner.restore(splits)
    }
    fn redistribution(&self) -> weir::checkpoint::restore::Redistribution {
        self.inner.redistribution()
    }
}

#[cfg(test)]
mod split_watermark_tests {
    use super::SplitWatermarks;
    use std::time::Duration;

    #[test]
    fn the_watermark_is_the_least_of_the_live_splits_and_idle_splits_are_left_out() {
        let mut w = SplitWatermarks::new(None);
        // split 2 has no record yet: nothing advances
        assert_eq!(w.observe(1, Some(1000), &[1, 2]), None);
        // split 1 far ahead, split 2 behind: the least
        assert_eq!(w.observe(2, Some(200), &[1, 2]), Some(200));
        assert_eq!(w.observe(1, Some(5000), &[1, 2]), Some(200));
        assert_eq!(w.observe(2, Some(300), &[1, 2]), Some(300));
        // a split no longer read does not hold it back
        assert_eq!(w.observe(1, Some(6000), &[1]), Some(6000));
        // with an idle timeout, a split without records that long is left out
        let mut w = SplitWatermarks::new(Some(Duration::from_millis(50)));
        assert_eq!(w.observe(1, Some(1000), &[1, 2]), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(w.observe(1, Some(1100), &[1, 2]), Some(1100));
    }
}
