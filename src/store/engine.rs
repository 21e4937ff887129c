//! What the queries need of an engine, and nothing more: run a statement, read its rows.
//! Every rule's SQL is written once (`queries.rs`) in one dialect, PostgreSQL's `$n`
//! parameters, and runs on either engine through [`Engine`]. SQLite's side rewrites `$n`
//! to `?n` by number ([`sqlite_params`]): SQLite would otherwise number `$n`-style
//! parameters by their first appearance, and a query that names `$2` before `$1` would
//! silently swap its arguments.
//!
//! Parameters and columns are the few types the schema has (integers, text, bytes,
//! booleans), typed even when NULL so PostgreSQL's checks of a parameter's type hold.

use crate::error::Error;

/// A statement's parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
    Bool(bool),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Bytes(Some(v))
    }
}

impl<'a> From<Option<&'a [u8]>> for Param<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        Param::Bytes(v)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Param<'a> {
    fn from(v: &'a [u8; N]) -> Self {
        Param::Bytes(Some(&v[..]))
    }
}

impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Bool(v)
    }
}

/// The parameters of a statement, each converted with `Param::from`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$($crate::store::engine::Param::from($p)),*]
    };
}
pub(super) use params;

/// One column of a row as the engine gives it, borrowed from the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'r> {
    Null,
    Int(i64),
    Text(&'r str),
    Bytes(&'r [u8]),
    // PostgreSQL's booleans; SQLite answers integers.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Bool(bool),
}

/// A row of a result.
pub(super) trait Row {
    /// Column `i` (from 0).
    fn value(&self, i: usize) -> Result<Value<'_>, Error>;
}

impl dyn Row + '_ {
    /// Column `i` as a `T`; a column of another type is a damaged row or a wrong query.
    pub(super) fn get<T: Column>(&self, i: usize) -> Result<T, Error> {
        let v = self.value(i)?;
        T::from_value(v).ok_or_else(|| {
            log::error!(
                "database error: column {i} holds {} where {} was expected",
                v.kind(),
                std::any::type_name::<T>()
            );
            Error::Internal
        })
    }
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Bool(_) => "a boolean",
        }
    }
}

/// A Rust type a column converts to.
pub(super) trait Column: Sized {
    fn from_value(v: Value<'_>) -> Option<Self>;
}

impl Column for i64 {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Int(n) => Some(n),
            _ => None,
        }
    }
}

/// SQLite has no boolean type: its comparisons answer 0 or 1.
impl Column for bool {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(b),
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            _ => None,
        }
    }
}

impl Column for String {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.to_string()),
            _ => None,
        }
    }
}

impl Column for Vec<u8> {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(b.to_vec()),
            _ => None,
        }
    }
}

impl<T: Column> Column for Option<T> {
    fn from_value(v: Value<'_>) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// Which SQL an engine speaks, for the few rules that differ ([`super::queries`] names
/// each one where it branches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    // Made only by the PostgreSQL engine, which a SQLite-only build leaves out.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// What takes each row of a result, in order.
pub(super) type Each<'a> = &'a mut dyn FnMut(&dyn Row) -> Result<(), Error>;

/// A connection, or a transaction on one, of either engine.
pub(super) trait Engine {
    fn dialect(&self) -> Dialect;

    /// Runs `sql`; how many rows it changed.
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, Error>;

    /// Runs `sql` and hands each row of its result to `each`, in order.
    fn query(&self, sql: &str, params: &[Param<'_>], each: Each<'_>) -> Result<(), Error>;
}

/// `sql` with each `$n` made `?n` (the same number), outside quoted strings and
/// identifiers. SQLite gives `?n` exactly the n-th argument.
pub(super) fn sqlite_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('?');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parameters_keep_their_numbers() {
        assert_eq!(
            sqlite_params("UPDATE t SET a = $2 WHERE id = $1 AND b < $2"),
            "UPDATE t SET a = ?2 WHERE id = ?1 AND b < ?2"
        );
        assert_eq!(sqlite_params("SELECT $10, $1"), "SELECT ?10, ?1");
    }

    #[test]
    fn quoted_dollars_and_lone_dollars_are_left_alone() {
        assert_eq!(
            sqlite_params("SELECT '$1', \"$2\", $3, '$', a$b FROM t"),
            "SELECT '$1', \"$2\", ?3, '$', a$b FROM t"
        );
        assert_eq!(
            sqlite_params("SELECT 'it''s $1', $1"),
            "SELECT 'it''s $1', ?1"
        );
    }

    #[test]
    fn columns_convert_only_to_their_own_type() {
        assert_eq!(i64::from_value(Value::Int(7)), Some(7));
        assert_eq!(i64::from_value(Value::Text("7")), None);
        assert_eq!(i64::from_value(Value::Null), None);
        assert_eq!(bool::from_value(Value::Int(1)), Some(true));
        assert_eq!(bool::from_value(Value::Int(0)), Some(false));
        assert_eq!(bool::from_value(Value::Int(2)), None);
        assert_eq!(bool::from_value(Value::Bool(true)), Some(true));
        assert_eq!(
            Option::<String>::from_value(Value::Text("a")),
            Some(Some("a".into()))
        );
        assert_eq!(Option::<String>::from_value(Value::Null), Some(None));
        assert_eq!(Option::<Vec<u8>>::from_value(Value::Text("a")), None);
        assert_eq!(
            Vec::<u8>::from_value(Value::Bytes(b"ab")),
            Some(b"ab".to_vec())
        );
    }
}
