//! Flink's legacy group windows: `GROUP BY k, TUMBLE(ts, size)` (also
//! `HOP(ts, slide, size)`, `SESSION(ts, gap)`) with the auxiliary functions
//! `TUMBLE_START(ts, size)`, `TUMBLE_END(...)`, `TUMBLE_ROWTIME(...)` (and the `HOP_`
//! and `SESSION_` ones) in the select list and HAVING.
//!
//! They are rewritten (on the parsed statement) into the windowing TVFs they mean,
//! which lower onto the same window operators: the FROM relation becomes a window
//! placeholder over it (as `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))`), the group
//! window becomes `window_start, window_end`, `*_START` is `window_start`, `*_END`
//! `window_end` and `*_ROWTIME` `window_end - INTERVAL '1' MILLISECOND` (the window's
//! last millisecond, as Flink's). A derived table in FROM is registered as a view
//! first; a join in FROM is not supported (write it in a view).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr, Spanned, TableAlias, TableFactor, visit_expressions_mut};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::script::{Pos, WindowCall, WindowKind, parse_interval_ms};
use crate::SqlError;

/// What the rewrite needs from the compiler.
pub(crate) trait Host {
    /// A new placeholder table name for a window call.
    fn placeholder(&mut self) -> String;
    /// Registers the window placeholder `call.placeholder` over `call.table`.
    fn window(&mut self, call: WindowCall) -> Result<(), SqlError>;
    /// Registers the derived table `q` (the FROM of a group window) as a view; its name.
    fn derived(&mut self, q: Query, pos: Pos) -> Result<String, SqlError>;
}

/// Rewrites the legacy group windows of `q` (and of its subqueries in FROM and WITH)
/// into window TVF placeholders registered with `host`. `fallback`: the position of
/// errors whose syntax has no position.
pub(crate) fn rewrite_query(q: &mut Query, host: &mut dyn Host, fallback: Pos) -> Result<(), SqlError> {
    if let Some(with) = &mut q.with {
        for cte in &mut with.cte_tables {
            rewrite_query(&mut cte.query, host, fallback)?;
        }
    }
    set_expr(&mut q.body, host, fallback)
}

fn set_expr(s: &mut SetExpr, host: &mut dyn Host, fallback: Pos) -> Result<(), SqlError> {
    match s {
        SetExpr::Select(sel) => select(sel, host, fallback),
        SetExpr::Query(q) => rewrite_query(q, host, fallback),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr(left, host, fallback)?;
            set_expr(right, host, fallback)
        }
        _ => Ok(()),
    }
}

fn factor(f: &mut TableFactor, host: &mut dyn Host, fallback: Pos) -> Result<(), SqlError> {
    match f {
        TableFactor::Derived { subquery, .. } => rewrite_query(subquery, host, fallback),
        TableFactor::NestedJoin { table_with_joins, .. } => {
            factor(&mut table_with_joins.relation, host, fallback)?;
            for j in &mut table_with_joins.joins {
                factor(&mut j.relation, host, fallback)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The group window functions and the prefix of their auxiliary functions.
const WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];
const AUX: [&str; 4] = ["START", "END", "ROWTIME", "PROCTIME"];

/// Where the parsed `e` starts (`fallback` when the parser recorded no position).
pub(crate) fn pos_of(e: &impl Spanned, fallback: Pos) -> Pos {
    let s = e.span().start;
    if s.line == 0 { fallback } else { Pos { line: s.line as usize, column: s.column as usize } }
}

pub(crate) fn err(pos: Pos, message: impl Into<String>) -> SqlError {
    SqlError { pos, statement: None, message: message.into() }
}

/// The upper-cased name of a call to a one-part function name, and its plain arguments.
fn call(e: &Expr) -> Option<(String, Vec<&Expr>)> {
    let Expr::Function(f) = e else { return None };
    let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else { return None };
    let FunctionArguments::List(list) = &f.args else { return None };
    let args = list.args.iter().map(|a| match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    });
    Some((name.value.to_ascii_uppercase(), args.collect::<Option<Vec<_>>>()?))
}

/// A group window of a GROUP BY: the function, its arguments (as written, to match
/// the auxiliary functions'), the time column (with its qualifier) and the window.
struct GroupWindow {
    function: String,
    args: Vec<String>,
    qualifier: Vec<Ident>,
    time_col: String,
    kind: WindowKind,
    pos: Pos,
}

fn group_window(e: &Expr, fallback: Pos) -> Result<Option<GroupWindow>, SqlError> {
    let Some((function, args)) = call(e) else { return Ok(None) };
    if !WINDOWS.contains(&function.as_str()) {
        return Ok(None);
    }
    let pos = pos_of(e, fallback);
    let bad = |m: &str| err(pos, format!("GROUP BY {function}(...): {m}"));
    let (qualifier, time_col) = match args.first() {
        Some(Expr::Identifier(id)) => (Vec::new(), id.value.clone()),
        Some(Expr::CompoundIdentifier(ids)) if ids.len() > 1 => (ids[..ids.len() - 1].to_vec(), ids[ids.len() - 1].value.clone()),
        _ => return Err(bad("the first argument must be the time attribute column")),
    };
    let iv: Vec<i64> = args[1..].iter().map(|a| parse_interval_ms(&a.to_string()).ok_or_else(|| bad(&format!("expected INTERVAL 'n' UNIT, found {a}")))).collect::<Result<_, _>>()?;
    let kind = match (function.as_str(), iv.as_slice()) {
        ("TUMBLE", [size]) => WindowKind::Tumble { size: *size },
        ("HOP", [slide, size]) if size % slide == 0 => WindowKind::Hop { slide: *slide, size: *size },
        ("HOP", [_, _]) => return Err(bad("the size must be a multiple of the slide")),
        ("SESSION", [gap]) => WindowKind::Session { gap: *gap },
        ("TUMBLE", _) => return Err(bad("expected (time column, INTERVAL size)")),
        ("HOP", _) => return Err(bad("expected (time column, INTERVAL slide, INTERVAL size)")),
        _ => return Err(bad("expected (time column, INTERVAL gap)")),
    };
    if iv.iter().any(|v| *v <= 0) {
        return Err(bad("window sizes must be positive"));
    }
    Ok(Some(GroupWindow { function, args: args.iter().map(|a| norm(&a.to_string())).collect(), qualifier, time_col, kind, pos }))
}

/// Text compared case-insensitively and without whitespace.
fn norm(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase()
}

/// `TUMBLE_START` → (`TUMBLE`, `START`), for the known windows and suffixes.
fn aux_name(name: &str) -> Option<(&'static str, &'static str)> {
    WINDOWS.iter().find_map(|w| {
        let rest = name.strip_prefix(w)?.strip_prefix('_')?;
        AUX.iter().find(|a| **a == rest).map(|a| (*w, *a))
    })
}

/// The column `window_<what>` of the placeholder (qualified as the time column is).
fn window_col(w: &GroupWindow, what: &str) -> Expr {
    let col = Ident::new(format!("window_{what}"));
    if w.qualifier.is_empty() {
        Expr::Identifier(col)
    } else {
        Expr::CompoundIdentifier(w.qualifier.iter().cloned().chain(std::iter::once(col)).collect())
    }
}

/// Replaces the auxiliary functions in `e` (of group window `w`, if there is one).
fn replace_aux(e: &mut Expr, w: Option<&GroupWindow>, fallback: Pos) -> Result<(), SqlError> {
    let r = visit_expressions_mut(e, |x| {
        let Some((name, args)) = call(x) else { return ControlFlow::Continue(()) };
        let Some((window, suffix)) = aux_name(&name) else { return ControlFlow::Continue(()) };
        let pos = pos_of(x, fallback);
        let Some(w) = w else {
            return ControlFlow::Break(err(pos, format!("{name}(...) needs a GROUP BY {window}(...) group window")));
        };
        if w.function != window {
            return ControlFlow::Break(err(pos, format!("{name}(...) does not belong to the group window GROUP BY {}(...)", w.function)));
        }
        let given: Vec<String> = args.iter().map(|a| norm(&a.to_string())).collect();
        if given != w.args {
            return ControlFlow::Break(err(pos, format!("{name}(...) must take the arguments of GROUP BY {}(...)", w.function)));
        }
        *x = match suffix {
            "START" => window_col(w, "start"),
            "END" => window_col(w, "end"),
            "ROWTIME" => {
                let one_ms = Parser::new(&GenericDialect {}).try_with_sql("INTERVAL '1' MILLISECOND").and_then(|mut p| p.parse_expr());
                match one_ms {
                    Ok(ms) => Expr::BinaryOp { left: Box::new(window_col(w, "end")), op: datafusion::sql::sqlparser::ast::BinaryOperator::Minus, right: Box::new(ms) },
                    Err(e) => return ControlFlow::Break(err(pos, format!("internal: {e}"))),
                }
            }
            _ => return ControlFlow::Break(err(pos, format!("{name} is not supported yet"))),
        };
        ControlFlow::Continue(())
    });
    match r {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn select(sel: &mut Select, host: &mut dyn Host, fallback: Pos) -> Result<(), SqlError> {
    for twj in &mut sel.from {
        factor(&mut twj.relation, host, fallback)?;
        for j in &mut twj.joins {
            factor(&mut j.relation, host, fallback)?;
        }
    }
    let mut found: Option<(usize, GroupWindow)> = None;
    if let GroupByExpr::Expressions(exprs, _) = &sel.group_by {
        for (i, e) in exprs.iter().enumerate() {
            if let Some(w) = group_window(e, fallback)? {
                if let Some((_, first)) = &found {
                    return Err(err(w.pos, format!("a GROUP BY takes one group window ({}(...) is one already)", first.function)));
                }
                found = Some((i, w));
            }
        }
    }
    let w = found.as_ref().map(|(_, w)| w);
    for item in &mut sel.projection {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            replace_aux(e, w, fallback)?;
        }
    }
    for e in sel.having.iter_mut().chain(sel.qualify.iter_mut()) {
        replace_aux(e, w, fallback)?;
    }
    let Some((at, w)) = found else { return Ok(()) };
    // the FROM relation: one table, view or derived table
    let [twj] = sel.from.as_mut_slice() else {
        return Err(err(w.pos, format!("GROUP BY {}(...) needs one table in FROM (write a join in a view, or use the window TVFs)", w.function)));
    };
    if !twj.joins.is_empty() {
        return Err(err(w.pos, format!("GROUP BY {}(...) over a join is not supported: write the join in a view, or use the window TVFs", w.function)));
    }
    let placeholder = host.placeholder();
    let table = match &mut twj.relation {
        TableFactor::Table { name, alias, args: None, .. } => {
            let Some(ObjectNamePart::Identifier(last)) = name.0.last() else {
                return Err(err(w.pos, format!("GROUP BY {}(...): unexpected FROM {name}", w.function)));
            };
            let table = last.value.clone();
            // the placeholder keeps the table's name as the qualifier of its columns
            if alias.is_none() {
                *alias = Some(TableAlias { explicit: true, name: last.clone(), columns: Vec::new(), at: None });
            }
            *name = ObjectName::from(vec![Ident::new(placeholder.clone())]);
            table
        }
        TableFactor::Derived { lateral: false, subquery, alias, .. } => {
            let table = host.derived((**subquery).clone(), w.pos)?;
            let text = match alias {
                // (an alias displays with its AS when it was written with one)
                Some(a) => format!("{placeholder} {}", TableAlias { explicit: true, ..a.clone() }),
                None => placeholder.clone(),
            };
            let parsed = Parser::new(&GenericDialect {}).try_with_sql(&text).and_then(|mut p| p.parse_table_factor());
            twj.relation = parsed.map_err(|e| err(w.pos, format!("internal: {e}")))?;
            table
        }
        other => return Err(err(w.pos, format!("GROUP BY {}(...) over {other} is not supported: FROM must be a table, a view or a subquery", w.function))),
    };
    if let GroupByExpr::Expressions(exprs, _) = &mut sel.group_by {
        exprs.splice(at..at + 1, [window_col(&w, "start"), window_col(&w, "end")]);
    }
    host.window(WindowCall { kind: w.kind, table, time_col: w.time_col.clone(), placeholder, pos: w.pos })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;

    #[derive(Default)]
    struct Recorder {
        calls: Vec<WindowCall>,
        derived: Vec<String>,
    }

    impl Host for Recorder {
        fn placeholder(&mut self) -> String {
            format!("__window_{}", self.calls.len())
        }
        fn window(&mut self, call: WindowCall) -> Result<(), SqlError> {
            self.calls.push(call);
            Ok(())
        }
        fn derived(&mut self, q: Query, _pos: Pos) -> Result<String, SqlError> {
            self.derived.push(q.to_string());
            Ok(format!("__derived_{}", self.derived.len()))
        }
    }

    fn rewrite(sql: &str) -> Result<(String, Recorder), SqlError> {
        let mut stmts = Parser::new(&GenericDialect {}).try_with_sql(sql).and_then(|mut p| p.parse_statements()).unwrap();
        let Statement::Query(q) = &mut stmts[0] else { panic!("a query") };
        let mut r = Recorder::default();
        rewrite_query(q, &mut r, Pos::default())?;
        Ok((q.to_string(), r))
    }

    #[test]
    fn session_group_window_becomes_a_window_placeholder() {
        let (q, r) = rewrite(
            "SELECT B.bidder, count(*), SESSION_START(B.dateTime, INTERVAL '10' SECOND) AS s, SESSION_END(B.dateTime, interval '10'  second) FROM bid B GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND)",
        )
        .unwrap();
        assert_eq!(q, "SELECT B.bidder, count(*), B.window_start AS s, B.window_end FROM __window_0 B GROUP BY B.bidder, B.window_start, B.window_end");
        assert_eq!(r.calls[0].kind, WindowKind::Session { gap: 10_000 });
        assert_eq!((r.calls[0].table.as_str(), r.calls[0].time_col.as_str()), ("bid", "dateTime"));
    }

    #[test]
    fn tumble_and_hop_with_rowtime_over_tables_and_subqueries() {
        let (q, r) = rewrite("SELECT TUMBLE_ROWTIME(ts, INTERVAL '1' MINUTE), COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE) HAVING TUMBLE_END(ts, INTERVAL '1' MINUTE) > TIMESTAMP '2024-01-01 00:00:00'").unwrap();
        assert_eq!(q, "SELECT window_end - INTERVAL '1' MILLISECOND, COUNT(*) FROM __window_0 AS t GROUP BY window_start, window_end HAVING window_end > TIMESTAMP '2024-01-01 00:00:00'");
        assert_eq!(r.calls[0].kind, WindowKind::Tumble { size: 60_000 });
        let (q, r) = rewrite("SELECT k, HOP_START(x.ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND) FROM (SELECT k, ts FROM t WHERE k > 0) x GROUP BY HOP(x.ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND), k").unwrap();
        assert_eq!(q, "SELECT k, x.window_start FROM __window_0 AS x GROUP BY x.window_start, x.window_end, k");
        assert_eq!(r.calls[0].table, "__derived_1");
        assert_eq!(r.derived, vec!["SELECT k, ts FROM t WHERE k > 0"]);
    }

    #[test]
    fn mismatched_auxiliary_functions_are_errors() {
        let e = rewrite("SELECT TUMBLE_START(ts, INTERVAL '1' MINUTE) FROM t GROUP BY SESSION(ts, INTERVAL '1' MINUTE)").err().unwrap();
        assert!(e.message.contains("TUMBLE_START(...) does not belong to the group window GROUP BY SESSION(...)"), "{e}");
        assert_eq!(e.pos, Pos { line: 1, column: 8 });
        let e = rewrite("SELECT TUMBLE_END(ts, INTERVAL '2' MINUTE) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE)").err().unwrap();
        assert!(e.message.contains("must take the arguments"), "{e}");
        let e = rewrite("SELECT TUMBLE_END(ts, INTERVAL '2' MINUTE) FROM t GROUP BY k").err().unwrap();
        assert!(e.message.contains("needs a GROUP BY TUMBLE(...) group window"), "{e}");
        let e = rewrite("SELECT COUNT(*) FROM a JOIN b ON a.k = b.k GROUP BY TUMBLE(a.ts, INTERVAL '1' MINUTE)").err().unwrap();
        assert!(e.message.contains("over a join is not supported"), "{e}");
        assert!(rewrite("SELECT COUNT(*) FROM t GROUP BY HOP(ts, INTERVAL '3' SECOND, INTERVAL '10' SECOND)").is_err());
        assert!(rewrite("SELECT COUNT(*) FROM t GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE), SESSION(ts, INTERVAL '1' MINUTE)").is_err());
        // no group window, no rewrite
        let (q, r) = rewrite("SELECT k, COUNT(*) FROM t GROUP BY k").unwrap();
        assert_eq!((q.as_str(), r.calls.len()), ("SELECT k, COUNT(*) FROM t GROUP BY k", 0));
    }
}
