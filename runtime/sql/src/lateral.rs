//! `LATERAL TABLE(f(args)) AS t(c1, ...)`: table functions joined to the rows of the
//! relation before them (Flink's correlate), with `FROM x, LATERAL TABLE(...)`,
//! `[CROSS | INNER] JOIN LATERAL TABLE(...) [ON TRUE]` and
//! `LEFT JOIN LATERAL TABLE(...) ON TRUE`.
//!
//! They are rewritten on the parsed statement: the relation and the call become one
//! placeholder table (the relation's columns, then the function's), keeping the
//! relation's alias, and the function alias's qualifiers (`t.c1`, `t.*`) are
//! renamed to it. A derived table before the call is registered as a view first; a
//! call after a regular join is refused (write the join in a subquery).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, visit_expressions_mut,
};

use super::*;
use crate::group_window::{err, pos_of};
use crate::udtf::{Lateral, TableFunction};

/// A placeholder for a table function joined to the rows of `base`.
pub(super) struct LateralCall {
    pub base: String,
    pub op: Lateral,
}

/// A function alias and the relation alias its qualifier becomes, with the
/// function's columns (for `t.*`).
struct Rename {
    from: String,
    to: Ident,
    columns: Vec<String>,
}

/// The relation `f` leaves behind (an empty table name), to be folded.
fn take_factor(f: &mut TableFactor) -> TableFactor {
    let empty = TableFactor::Table { name: ObjectName(Vec::new()), alias: None, args: None, with_hints: Vec::new(), version: None, with_ordinality: false, partitions: Vec::new(), json_path: None, sample: None, index_hints: Vec::new() };
    std::mem::replace(f, empty)
}

fn is_lateral_call(f: &TableFactor) -> bool {
    matches!(f, TableFactor::Function { lateral: true, .. })
}

/// A sqlparser table factor `name AS alias`.
fn table_factor(name: &str, alias: &Ident) -> Result<TableFactor, String> {
    Parser::new(&GenericDialect {}).try_with_sql(&format!("{name} AS {alias}")).and_then(|mut p| p.parse_table_factor()).map_err(|e| format!("internal: {e}"))
}

impl Compiler<'_> {
    /// Rewrites the `LATERAL TABLE` calls of `q` (and of its subqueries in FROM and
    /// WITH) into placeholders.
    pub(super) fn laterals(&mut self, p: &Piece, q: &mut Query) -> Result<(), SqlError> {
        let fallback = script::pos_of(self.script, p.start);
        self.lateral_query(q, fallback)
    }

    fn lateral_query(&mut self, q: &mut Query, fb: script::Pos) -> Result<(), SqlError> {
        if let Some(with) = &mut q.with {
            for cte in &mut with.cte_tables {
                self.lateral_query(&mut cte.query, fb)?;
            }
        }
        self.lateral_set(&mut q.body, fb)
    }

    fn lateral_set(&mut self, s: &mut SetExpr, fb: script::Pos) -> Result<(), SqlError> {
        match s {
            SetExpr::Select(sel) => self.lateral_select(sel, fb),
            SetExpr::Query(q) => self.lateral_query(q, fb),
            SetExpr::SetOperation { left, right, .. } => {
                self.lateral_set(left, fb)?;
                self.lateral_set(right, fb)
            }
            _ => Ok(()),
        }
    }

    fn lateral_factor(&mut self, f: &mut TableFactor, fb: script::Pos) -> Result<(), SqlError> {
        match f {
            TableFactor::Derived { subquery, .. } => self.lateral_query(subquery, fb),
            TableFactor::NestedJoin { table_with_joins, .. } => {
                self.lateral_factor(&mut table_with_joins.relation, fb)?;
                for j in &mut table_with_joins.joins {
                    self.lateral_factor(&mut j.relation, fb)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn lateral_select(&mut self, sel: &mut Select, fb: script::Pos) -> Result<(), SqlError> {
        for twj in &mut sel.from {
            self.lateral_factor(&mut twj.relation, fb)?;
            for j in &mut twj.joins {
                self.lateral_factor(&mut j.relation, fb)?;
            }
        }
        let mut renames = Vec::new();
        // FROM x, LATERAL TABLE(...): fold into the item before it
        let mut i = 1;
        while i < sel.from.len() {
            if !is_lateral_call(&sel.from[i].relation) {
                i += 1;
                continue;
            }
            let call = sel.from.remove(i);
            if !call.joins.is_empty() || !sel.from[i - 1].joins.is_empty() {
                return Err(err(pos_of(&call.relation, fb), "LATERAL TABLE next to a JOIN is not supported yet: write the join in a subquery"));
            }
            let left = take_factor(&mut sel.from[i - 1].relation);
            sel.from[i - 1].relation = self.fold(left, call.relation, false, &mut renames, fb)?;
        }
        // x [LEFT] JOIN LATERAL TABLE(...) ON TRUE
        for twj in &mut sel.from {
            while twj.joins.first().is_some_and(|j| is_lateral_call(&j.relation)) {
                let j = twj.joins.remove(0);
                let pos = pos_of(&j.relation, fb);
                let on_true = |c: &JoinConstraint| match c {
                    JoinConstraint::None => true,
                    JoinConstraint::On(e) => e.to_string().eq_ignore_ascii_case("true"),
                    _ => false,
                };
                let outer = match &j.join_operator {
                    JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) if on_true(c) => false,
                    JoinOperator::Left(c) | JoinOperator::LeftOuter(c) if on_true(c) => true,
                    JoinOperator::CrossApply => false,
                    JoinOperator::OuterApply => true,
                    _ => return Err(err(pos, "a LATERAL TABLE join takes ON TRUE (filter the function's rows in WHERE) and is an inner, cross or LEFT join")),
                };
                let left = take_factor(&mut twj.relation);
                twj.relation = self.fold(left, j.relation, outer, &mut renames, fb)?;
            }
            if let Some(j) = twj.joins.iter().find(|j| is_lateral_call(&j.relation)) {
                return Err(err(pos_of(&j.relation, fb), "LATERAL TABLE after a JOIN is not supported yet: write the join in a subquery"));
            }
        }
        if renames.is_empty() {
            return Ok(());
        }
        // t.* (the function's columns) and t.c (renamed to the relation's alias)
        let mut items = Vec::with_capacity(sel.projection.len());
        for item in std::mem::take(&mut sel.projection) {
            if let SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) = &item
                && let [ObjectNamePart::Identifier(q)] = n.0.as_slice()
                && let Some(r) = renames.iter().find(|r| r.from == q.value)
            {
                items.extend(r.columns.iter().map(|c| SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(vec![r.to.clone(), Ident::new(c.clone())]))));
            } else {
                items.push(item);
            }
        }
        sel.projection = items;
        rename_qualifiers(&mut sel.projection, &renames);
        rename_qualifiers(&mut sel.selection, &renames);
        rename_qualifiers(&mut sel.group_by, &renames);
        rename_qualifiers(&mut sel.having, &renames);
        for twj in &mut sel.from {
            for j in &mut twj.joins {
                rename_qualifiers(&mut j.join_operator, &renames);
            }
        }
        Ok(())
    }

    /// The placeholder of `left` joined with the table function call `call`.
    fn fold(&mut self, left: TableFactor, call: TableFactor, outer: bool, renames: &mut Vec<Rename>, fb: script::Pos) -> Result<TableFactor, SqlError> {
        let pos = pos_of(&call, fb);
        let TableFactor::Function { name, mut args, alias: fn_alias, with_ordinality, .. } = call else { return Err(err(pos, "internal: not a LATERAL call")) };
        let e = |m: String| err(pos, m);
        if !name.to_string().eq_ignore_ascii_case("TABLE") || args.len() != 1 || with_ordinality {
            return Err(e(format!("LATERAL {name}(...) is not supported: call a table function as LATERAL TABLE(f(...)) AS t(c1, ...)")));
        }
        let (base, base_sql, alias) = match left {
            TableFactor::Table { name, alias, args: None, .. } => {
                let base = name.to_string().trim_matches('`').trim_matches('"').to_string();
                let alias = match alias {
                    Some(a) if a.columns.is_empty() => a.name,
                    Some(_) => return Err(e(format!("the columns of '{base}' cannot be renamed before a LATERAL TABLE"))),
                    None => match name.0.last() {
                        Some(ObjectNamePart::Identifier(id)) => id.clone(),
                        _ => return Err(e(format!("'{base}' needs an alias before a LATERAL TABLE"))),
                    },
                };
                (base, name.to_string(), alias)
            }
            TableFactor::Derived { lateral: false, subquery, alias: Some(a), .. } if a.columns.is_empty() => {
                let view = format!("__lateral_input_{}", self.next_window);
                self.next_window += 1;
                let plan = self.plan_view(Statement::Query(subquery)).map_err(e)?;
                self.register(&view, nullable(plan.schema().as_arrow())).map_err(e)?;
                self.catalog.insert(view.clone(), Entry::View(plan));
                (view.clone(), view, a.name)
            }
            _ => return Err(e("LATERAL TABLE follows a table or a subquery with an alias (FROM t AS x, LATERAL TABLE(...))".into())),
        };
        let base_schema = self.entry_schema(&base).ok_or_else(|| e(format!("LATERAL TABLE over '{base}': not a table or view")))?;
        // the call: TABLE(f(args))
        let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Function(f)))) = args.pop() else {
            return Err(e("LATERAL TABLE(...) takes a table function call, as LATERAL TABLE(f(x))".into()));
        };
        let fname = f.name.to_string();
        let func: Arc<dyn TableFunction> = self.udtfs.iter().find(|u| u.name().eq_ignore_ascii_case(&fname)).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.udtfs.iter().map(|u| u.name()).collect();
            e(format!("unknown table function '{fname}' (register it in CompileOptions::udtfs{})", if known.is_empty() { String::new() } else { format!("; known: {}", known.join(", ")) }))
        })?;
        let mut arg_exprs: Vec<SqlExpr> = match f.args {
            FunctionArguments::None => Vec::new(),
            FunctionArguments::List(l) => l
                .args
                .into_iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Ok(x),
                    other => Err(e(format!("{fname}: argument {other} is not supported (plain expressions only)"))),
                })
                .collect::<Result<_, _>>()?,
            FunctionArguments::Subquery(_) => return Err(e(format!("{fname}: a subquery argument is not supported"))),
        };
        rename_qualifiers(&mut arg_exprs, renames);
        // the arguments, planned over the relation's columns
        let select = if arg_exprs.is_empty() { "1".to_string() } else { arg_exprs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ") };
        let plan = parse_first(&format!("SELECT {select} FROM {base_sql} AS {alias}")).and_then(|stmt| self.plan_unoptimized(stmt)).map_err(|m| e(format!("{fname}: {m}")))?;
        let LogicalPlan::Projection(pr) = &plan else { return Err(e(format!("internal: {fname}: the arguments did not plan to a projection"))) };
        if pr.input.schema().fields().len() != base_schema.fields().len() {
            return Err(e(format!("internal: {fname}: the arguments' input is not '{base}'")));
        }
        let (arg_types, phys) = if arg_exprs.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            (pr.schema.fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>(), phys_exprs(&pr.expr, pr.input.schema()).map_err(|m| e(format!("{fname}: {m}")))?)
        };
        let mut fields = func.output(&arg_types).map_err(|m| e(format!("{fname}({}): {m}", arg_types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "))))?;
        let declared = fields.clone();
        if let Some(a) = &fn_alias
            && !a.columns.is_empty()
        {
            if a.columns.len() != fields.len() {
                return Err(e(format!("LATERAL TABLE({fname}(...)) AS {}: {} column names for the function's {} columns ({})", a.name, a.columns.len(), fields.len(), fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "))));
            }
            for (f, c) in fields.iter_mut().zip(&a.columns) {
                *f = f.clone().with_name(c.name.value.clone());
            }
        }
        if let Some(f) = fields.iter().find(|f| base_schema.field_with_name(f.name()).is_ok()) {
            return Err(e(format!("LATERAL TABLE({fname}(...)): its column '{}' is also a column of '{base}': rename it (AS t(...))", f.name())));
        }
        let mut all: Vec<Field> = base_schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        all.extend(fields.iter().map(|f| f.clone().with_nullable(true)));
        let schema = Arc::new(Schema::new(all));
        let shown = format!("{fname}({})", arg_exprs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "));
        let op = Lateral {
            name: format!("Correlate(table=[{shown}], joinType=[{}])", if outer { "LEFT" } else { "INNER" }),
            func,
            args: phys,
            fields: declared,
            outer,
            schema: schema.clone(),
        };
        let placeholder = format!("__lateral_{}", self.next_window);
        self.next_window += 1;
        self.register(&placeholder, schema).map_err(e)?;
        self.catalog.insert(placeholder.clone(), Entry::Lateral(Arc::new(LateralCall { base, op })));
        if let Some(a) = fn_alias {
            renames.push(Rename { from: a.name.value, to: alias.clone(), columns: fields.iter().map(|f| f.name().clone()).collect() });
        }
        table_factor(&placeholder, &alias).map_err(e)
    }
}

/// Renames the qualifiers `from.c` of `renames` in `node` to `to.c`.
fn rename_qualifiers<V: datafusion::sql::sqlparser::ast::VisitMut>(node: &mut V, renames: &[Rename]) {
    let _ = visit_expressions_mut(node, |x| {
        if let SqlExpr::CompoundIdentifier(ids) = x
            && ids.len() == 2
            && let Some(r) = renames.iter().find(|r| r.from == ids[0].value)
        {
            ids[0] = r.to.clone();
        }
        ControlFlow::<()>::Continue(())
    });
}
