//! The query language: one aggregate over one column, optionally filtered by a comparison on
//! another, e.g. `SELECT avg(x) FROM y WHERE z < 321`.

use std::fmt;

use lemal_contracts::tx::Operation;

/// A comparison operator of the WHERE clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
}

impl Cmp {
    /// Whether `a cmp b` holds.
    pub fn holds(self, a: i64, b: i64) -> bool {
        match self {
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
        }
    }
}

/// A WHERE clause: `column cmp value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// The filtered column.
    pub column: String,
    /// The operator.
    pub cmp: Cmp,
    /// The constant.
    pub value: i64,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The aggregate.
    pub operation: Operation,
    /// The aggregated column (`*` for count).
    pub column: String,
    /// The table name (informational: each data provider holds its own table).
    pub table: String,
    /// The optional filter.
    pub filter: Option<Filter>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SELECT {}({}) FROM {}", self.operation.as_str(), self.column, self.table)?;
        if let Some(w) = &self.filter {
            write!(f, " WHERE {} {} {}", w.column, w.cmp.as_str(), w.value)?;
        }
        Ok(())
    }
}

/// Why a query did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse query: {0} (expected e.g. `SELECT avg(x) FROM y WHERE z < 321`)")]
pub struct ParseError(String);

fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if "()<>=!".contains(c) {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            if ["<=", ">=", "!=", "<>"].contains(&two.as_str()) {
                out.push(two);
                i += 1;
            } else {
                out.push(c.to_string());
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn ident(t: &str) -> Result<String, ParseError> {
    let ok = !t.is_empty()
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !t.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(t.to_owned())
    } else {
        Err(ParseError(format!("bad identifier {t:?}")))
    }
}

/// Parse `SELECT op(column) FROM table [WHERE column cmp integer]` (keywords case-insensitive).
pub fn parse(s: &str) -> Result<Query, ParseError> {
    let t = tokens(s.trim().trim_end_matches(';'));
    let kw = |i: usize, k: &str| t.get(i).is_some_and(|x| x.eq_ignore_ascii_case(k));
    if !kw(0, "select")
        || t.get(2).map(String::as_str) != Some("(")
        || t.get(4).map(String::as_str) != Some(")")
        || !kw(5, "from")
    {
        return Err(ParseError("expected SELECT op(column) FROM table".into()));
    }
    let operation = match t[1].to_ascii_lowercase().as_str() {
        "sum" => Operation::Sum,
        "count" => Operation::Count,
        "avg" | "mean" => Operation::Avg,
        "variance" | "var" => Operation::Variance,
        other => return Err(ParseError(format!("unknown aggregate {other:?}"))),
    };
    let column =
        if t[3] == "*" && operation == Operation::Count { "*".into() } else { ident(&t[3])? };
    let table = ident(t.get(6).ok_or_else(|| ParseError("missing table".into()))?)?;
    let filter = match t.len() {
        7 => None,
        11 if kw(7, "where") => {
            let cmp = match t[9].as_str() {
                "<" => Cmp::Lt,
                "<=" => Cmp::Le,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                "=" => Cmp::Eq,
                "!=" | "<>" => Cmp::Ne,
                other => return Err(ParseError(format!("unknown comparison {other:?}"))),
            };
            let value =
                t[10].parse().map_err(|_| ParseError(format!("bad integer {:?}", t[10])))?;
            Some(Filter { column: ident(&t[8])?, cmp, value })
        }
        _ => return Err(ParseError("expected an optional WHERE column cmp integer".into())),
    };
    Ok(Query { operation, column, table, filter })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reports_example() {
        let q = parse("SELECT avg(x) FROM y WHERE z < 321").expect("parses");
        assert_eq!(q.operation, Operation::Avg);
        assert_eq!(q.column, "x");
        assert_eq!(q.table, "y");
        assert_eq!(q.filter, Some(Filter { column: "z".into(), cmp: Cmp::Lt, value: 321 }));
        assert_eq!(q.to_string(), "SELECT avg(x) FROM y WHERE z < 321");
    }

    #[test]
    fn parses_variants_and_rejects_garbage() {
        assert!(parse("select count(*) from t").is_ok());
        assert!(parse("SELECT variance(age) FROM people WHERE score>=-5;").is_ok());
        assert_eq!(
            parse("SELECT sum(a) FROM b WHERE c<>3").map(|q| q.filter.map(|f| f.cmp)),
            Ok(Some(Cmp::Ne))
        );
        for bad in [
            "",
            "SELECT",
            "SELECT max(x) FROM y",
            "SELECT avg(x) FROM",
            "SELECT avg(x) FROM y WHERE z < a",
            "SELECT avg(1x) FROM y",
            "SELECT avg(x) FROM y WHERE z ~ 3",
            "SELECT sum(*) FROM y",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
