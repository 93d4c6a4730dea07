//! Comparing the synced tables of two databases, e.g. a rebuild by `replay --into` against the
//! live tables: row by row by Clerk id, over the contract's columns. The internal `id`s (each
//! database generates its own) and the `sync_`/`synced_at` bookkeeping are left out.

use std::cmp::Ordering;
use std::collections::VecDeque;

use crate::{Error, Result};
use serde_json::{json, Value};
use sqlx::PgConnection;

/// One synced table: its rows as (key, contract columns), in byte order of the key.
struct Table {
    name: &'static str,
    query: &'static str,
}

const TABLES: [Table; 3] = [
    Table {
        name: "users",
        query: r#"SELECT clerk_id COLLATE "C" AS k, jsonb_build_object(
            'email', email, 'name', name, 'first_name', first_name, 'last_name', last_name,
            'username', username, 'image_url', image_url, 'external_id', external_id,
            'public_metadata', public_metadata, 'created_at', created_at,
            'updated_at', updated_at, 'deleted_at', deleted_at) AS v
            FROM users ORDER BY 1"#,
    },
    Table {
        name: "organizations",
        query: r#"SELECT clerk_id COLLATE "C" AS k, jsonb_build_object(
            'name', name, 'slug', slug, 'image_url', image_url,
            'public_metadata', public_metadata, 'created_at', created_at,
            'updated_at', updated_at, 'deleted_at', deleted_at) AS v
            FROM organizations ORDER BY 1"#,
    },
    // Keyed as its Kafka records are (organization:user), the user by Clerk id.
    Table {
        name: "org_memberships",
        query: r#"SELECT (m.org_id || ':' || u.clerk_id) COLLATE "C" AS k, jsonb_build_object(
            'clerk_id', m.clerk_id, 'role', m.role, 'permissions', m.permissions,
            'created_at', m.created_at, 'updated_at', m.updated_at,
            'deleted_at', m.deleted_at) AS v
            FROM org_memberships m JOIN users u ON u.id = m.user_id ORDER BY 1"#,
    },
];

/// Rows fetched per round trip: memory stays bounded whatever the tables hold.
const PAGE: usize = 2_000;

/// A row that is not the same on both sides.
#[derive(Clone, Debug, PartialEq)]
pub enum Difference {
    OnlyHere(String),
    OnlyThere(String),
    /// The columns that differ, each with its value here and there.
    Differs {
        key: String,
        columns: Vec<(String, Value, Value)>,
    },
}

/// One table compared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableReport {
    pub table: &'static str,
    pub rows_here: u64,
    pub rows_there: u64,
    pub only_here: u64,
    pub only_there: u64,
    pub differing: u64,
    /// The first differences, in key order (at most the `examples` asked for).
    pub examples: Vec<Difference>,
}

impl TableReport {
    pub fn differences(&self) -> u64 {
        self.only_here + self.only_there + self.differing
    }

    fn record(&mut self, difference: Difference, examples: usize) {
        match &difference {
            Difference::OnlyHere(_) => self.only_here += 1,
            Difference::OnlyThere(_) => self.only_there += 1,
            Difference::Differs { .. } => self.differing += 1,
        }
        if self.examples.len() < examples {
            self.examples.push(difference);
        }
    }
}

/// One side's rows of a table, read through a cursor a page at a time.
struct Side<'c> {
    conn: &'c mut PgConnection,
    rows: VecDeque<(String, Value)>,
    exhausted: bool,
    count: u64,
}

impl Side<'_> {
    async fn next(&mut self) -> Result<Option<(String, Value)>> {
        if self.rows.is_empty() && !self.exhausted {
            let page: Vec<(String, Value)> =
                sqlx::query_as(&format!("FETCH {PAGE} FROM clerk_sync_compare"))
                    .persistent(false)
                    .fetch_all(&mut *self.conn)
                    .await?;
            self.exhausted = page.len() < PAGE;
            self.rows.extend(page);
        }
        let row = self.rows.pop_front();
        self.count += u64::from(row.is_some());
        Ok(row)
    }
}

/// Opens a read-only snapshot: the three tables are read as of one moment on each side.
async fn snapshot(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL TIME ZONE 'UTC'")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn open<'c>(conn: &'c mut PgConnection, table: &Table) -> Result<Side<'c>> {
    sqlx::raw_sql(&format!(
        "DECLARE clerk_sync_compare NO SCROLL CURSOR FOR {}",
        table.query
    ))
    .execute(&mut *conn)
    .await?;
    Ok(Side {
        conn,
        rows: VecDeque::new(),
        exhausted: false,
        count: 0,
    })
}

async fn close(side: Side<'_>) -> Result<u64> {
    sqlx::raw_sql("CLOSE clerk_sync_compare")
        .execute(&mut *side.conn)
        .await?;
    Ok(side.count)
}

/// Compares every synced table of `here` with `there`, keeping up to `examples` differences
/// per table. Reads both in key order side by side, so memory does not grow with the tables.
/// `on_progress(table, rows read on the larger side)` after every page.
pub async fn compare(
    here: &mut PgConnection,
    there: &mut PgConnection,
    examples: usize,
    mut on_progress: impl FnMut(&str, u64),
) -> Result<Vec<TableReport>> {
    snapshot(here).await.map_err(|e| e.within("DATABASE_URL"))?;
    snapshot(there).await.map_err(|e| e.within("--with"))?;
    let mut reports = Vec::new();
    for table in &TABLES {
        reports.push(compare_table(here, there, table, examples, &mut on_progress).await?);
    }
    for conn in [here, there] {
        sqlx::raw_sql("ROLLBACK").execute(conn).await?;
    }
    Ok(reports)
}

/// One table of both sides, read in key order side by side.
async fn compare_table(
    here: &mut PgConnection,
    there: &mut PgConnection,
    table: &Table,
    examples: usize,
    on_progress: &mut impl FnMut(&str, u64),
) -> Result<TableReport> {
    let mut report = TableReport {
        table: table.name,
        ..TableReport::default()
    };
    let mut a = open(here, table)
        .await
        .map_err(|e| e.within(&format!("DATABASE_URL: reading {}", table.name)))?;
    let mut b = open(there, table)
        .await
        .map_err(|e| e.within(&format!("--with: reading {}", table.name)))?;
    let (mut x, mut y) = (a.next().await?, b.next().await?);
    let mut reported = 0;
    loop {
        let read = a.count.max(b.count);
        if read >= reported + PAGE as u64 {
            on_progress(table.name, read);
            reported = read;
        }
        let order = match (&x, &y) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((k, _)), Some((l, _))) => k.cmp(l),
        };
        match order {
            Ordering::Less => {
                let (key, _) = x.take().unwrap_or_default();
                report.record(Difference::OnlyHere(key), examples);
                x = a.next().await?;
            }
            Ordering::Greater => {
                let (key, _) = y.take().unwrap_or_default();
                report.record(Difference::OnlyThere(key), examples);
                y = b.next().await?;
            }
            Ordering::Equal => {
                let ((key, ours), (_, theirs)) =
                    (x.take().unwrap_or_default(), y.take().unwrap_or_default());
                let columns = differing_columns(&ours, &theirs);
                if !columns.is_empty() {
                    report.record(Difference::Differs { key, columns }, examples);
                }
                x = a.next().await?;
                y = b.next().await?;
            }
        }
    }
    report.rows_here = close(a).await?;
    report.rows_there = close(b).await?;
    Ok(report)
}

/// How many rows differ between the synced tables of two databases, given by URL (the
/// benchmarks' check that contenders end with the same rows).
pub async fn rows_differing(here: &str, there: &str) -> Result<u64> {
    use sqlx::Connection;
    let mut here = PgConnection::connect(here).await.map_err(Error::Database)?;
    let mut there = PgConnection::connect(there)
        .await
        .map_err(Error::Database)?;
    let reports = compare(&mut here, &mut there, 0, |_, _| {}).await?;
    Ok(reports.iter().map(TableReport::differences).sum())
}

impl TableReport {
    /// The report as `--json` prints it; `values` adds what differs (personal data).
    pub fn json(&self, values: bool) -> Value {
        let report = self;
        let examples: Vec<Value> = report
            .examples
            .iter()
            .map(|example| match example {
                Difference::OnlyHere(key) => json!({"kind": "only_here", "key": key}),
                Difference::OnlyThere(key) => json!({"kind": "only_there", "key": key}),
                Difference::Differs { key, columns } => {
                    let columns: Vec<Value> = columns
                        .iter()
                        .map(|(name, here, there)| {
                            if values {
                                json!({"column": name, "here": here, "there": there})
                            } else {
                                json!({"column": name})
                            }
                        })
                        .collect();
                    json!({"kind": "differs", "key": key, "columns": columns})
                }
            })
            .collect();
        json!({"table": report.table, "rows_here": report.rows_here, "rows_there": report.rows_there,
        "only_here": report.only_here, "only_there": report.only_there,
        "differing": report.differing, "examples": examples})
    }

    /// The report as text, a line per example; `values` adds what differs (personal data).
    pub fn text(&self, values: bool) -> String {
        let report = self;
        let mut out = format!(
            "{}: {} rows in DATABASE_URL, {} in --with",
            report.table, report.rows_here, report.rows_there
        );
        if report.differences() == 0 {
            out.push_str("; identical\n");
            return out;
        }
        let counts = [
            (report.only_here, "only in DATABASE_URL"),
            (report.only_there, "only in --with"),
            (report.differing, "differ"),
        ];
        for (n, what) in counts.iter().filter(|(n, _)| *n > 0) {
            out.push_str(&format!("; {n} {what}"));
        }
        out.push('\n');
        for example in &report.examples {
            let line = match example {
                Difference::OnlyHere(key) => format!("  only in DATABASE_URL  {key}"),
                Difference::OnlyThere(key) => format!("  only in --with        {key}"),
                Difference::Differs { key, columns } => {
                    let columns: Vec<String> = columns
                        .iter()
                        .map(|(name, here, there)| {
                            if values {
                                format!("{name}: {here} / {there}")
                            } else {
                                name.clone()
                            }
                        })
                        .collect();
                    format!("  differs               {key} ({})", columns.join(", "))
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        let listed = report.examples.len() as u64;
        if listed < report.differences() {
            out.push_str(&format!(
                "  … and {} more (--show N lists more)\n",
                report.differences() - listed
            ));
        }
        out
    }
}

/// A connection to a compared database given by `setting` (`DATABASE_URL`, `--with`), which
/// off loopback must verify the server's certificate.
pub async fn connect(url: &clerk_sync_core::Secret, setting: &str) -> Result<PgConnection> {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = url.expose().parse().map_err(|e| {
        Error::Database(e).within(&format!("{setting}: expected a postgres:// URL"))
    })?;
    crate::database::check_verified(&options, setting, false).map_err(Error::Refused)?;
    // The first page waits for the whole table to be sorted: not a slow statement to warn of.
    options
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| {
            Error::Database(e).within(&format!("{setting}: cannot connect to the database"))
        })
}

/// The columns whose values differ, in name order.
fn differing_columns(here: &Value, there: &Value) -> Vec<(String, Value, Value)> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        here.as_object().unwrap_or(&empty),
        there.as_object().unwrap_or(&empty),
    );
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (x, y) = (
                a.get(name).cloned().unwrap_or(Value::Null),
                b.get(name).cloned().unwrap_or(Value::Null),
            );
            (x != y).then(|| (name.clone(), x, y))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::differing_columns;

    #[test]
    fn only_the_columns_that_differ_are_named_and_key_order_does_not_matter() {
        let here = json!({"name": "Acme", "slug": "acme", "public_metadata": {"a": 1, "b": 2}});
        let there = json!({"public_metadata": {"b": 2, "a": 1}, "slug": "acme-2", "name": "Acme"});
        assert_eq!(
            differing_columns(&here, &there),
            vec![("slug".to_owned(), json!("acme"), json!("acme-2"))]
        );
    }
}
