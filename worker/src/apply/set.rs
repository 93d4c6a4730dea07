//! A reduced batch written with a few set-based statements (`unnest` arrays), one row per entity
//! per statement. The statements are the SQL form of `clerk_sync_core::mirror`'s rules.

use std::collections::{BTreeMap, HashMap, HashSet};

use clerk_sync_core::mirror::{OrgRow, Rank, UserRow, Version};
use clerk_sync_core::reduce::{Deletion, Reduced, Winner};
use clerk_sync_core::Millis;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::QueryScalar;
use sqlx::PgConnection;

use super::{sql, Intent};
use crate::Result;

/// A statement returning the clerk ids it changed, its parameters being bound.
type ScalarQuery<'q> = QueryScalar<'q, Postgres, String, PgArguments>;

/// Which rows each statement changed (by Clerk id).
#[derive(Debug, Default)]
pub(super) struct Changed {
    pub users: HashSet<String>,
    pub orgs: HashSet<String>,
    pub user_deletions: HashSet<String>,
    pub org_deletions: HashSet<String>,
    /// Membership rows changed, with the event their fields now come from (a row can change
    /// through its deletion alone and keep an older event's fields).
    pub memberships: HashMap<String, String>,
}

fn ids<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    keys.collect()
}

/// Writes a reduced batch. Each table's new rows are all inserted by its one upsert pass, in key
/// order (the deletions' placeholders included), before the deletion passes erase rows, and the
/// deletions' memberships are ended in one pass in key order: two batches then take any rows
/// they share in the same order and never deadlock on them.
pub(super) async fn write(conn: &mut PgConnection, r: &Reduced, intent: Intent) -> Result<Changed> {
    let mut changed = Changed::default();
    if !r.users.is_empty() || !r.user_deletions.is_empty() {
        (changed.users, changed.user_deletions) = upsert_users(conn, r).await?;
    }
    if !r.orgs.is_empty() || !r.org_deletions.is_empty() {
        (changed.orgs, changed.org_deletions) = upsert_orgs(conn, r).await?;
    }
    if !r.user_deletions.is_empty() {
        changed.user_deletions.extend(delete_users(conn, r).await?);
    }
    if !r.org_deletions.is_empty() {
        changed.org_deletions.extend(delete_orgs(conn, r).await?);
    }
    if !r.user_deletions.is_empty() || !r.org_deletions.is_empty() {
        cascade_deletions(conn, r).await?;
    }
    if !r.memberships.is_empty() {
        changed.memberships = upsert_memberships(conn, r, intent).await?;
    }
    Ok(changed)
}

/// A row offered to a table's upsert pass: a winner's row, or a deletion's placeholder (what a
/// deletion leaves where the table holds no row yet; where it does, the offer only locks it).
enum Offer<'a, R> {
    Row(&'a Winner<R>),
    Placeholder(&'a Deletion),
}

impl<'a, R> Offer<'a, R> {
    fn row(&self) -> Option<&'a R> {
        match self {
            Offer::Row(w) => Some(&w.row),
            Offer::Placeholder(_) => None,
        }
    }
}

/// Every row a batch may insert into a table, in key order: the winners, and a placeholder for
/// each deletion of an entity no winner covers. Inserting the deletions' placeholders in the
/// same sorted pass as everything else is what keeps two batches from deadlocking: one batch's
/// deletion of a user unknown so far and another's stub of that user (offered by a membership)
/// would otherwise take the same new rows in different passes, i.e. in different orders.
fn offers<'a, K: Ord + AsRef<str>, R>(
    winners: &'a BTreeMap<K, Winner<R>>,
    deletions: &'a BTreeMap<K, Deletion>,
) -> Vec<(&'a str, Offer<'a, R>)> {
    let mut offers: Vec<(&str, Offer<'_, R>)> = winners
        .iter()
        .map(|(k, w)| (k.as_ref(), Offer::Row(w)))
        .chain(
            deletions
                .iter()
                .filter(|(k, _)| !winners.contains_key(*k))
                .map(|(k, d)| (k.as_ref(), Offer::Placeholder(d))),
        )
        .collect();
    offers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    offers
}

/// The clerk ids an upsert pass changed, split into rows (winners) and deletions' placeholders.
fn split_changed<R>(
    offers: &[(&str, Offer<'_, R>)],
    changed: Vec<String>,
) -> (HashSet<String>, HashSet<String>) {
    let placeholders: HashSet<&str> = offers
        .iter()
        .filter(|(_, o)| matches!(o, Offer::Placeholder(_)))
        .map(|(k, _)| *k)
        .collect();
    changed
        .into_iter()
        .partition(|id| !placeholders.contains(id.as_str()))
}

/// Writes the batch's users: winners under the version guard, and a placeholder (a tombstone)
/// for each deleted user the table does not hold yet (the rows of the others are locked).
/// Returns the users changed and the deletions whose placeholder was inserted.
async fn upsert_users(
    conn: &mut PgConnection,
    r: &Reduced,
) -> Result<(HashSet<String>, HashSet<String>)> {
    let offers = offers(&r.users, &r.user_deletions);
    let text = |f: fn(&UserRow) -> Option<&str>| -> Vec<Option<&str>> {
        offers.iter().map(|(_, o)| o.row().and_then(f)).collect()
    };
    let columns = PlaceholderColumns::of(&offers, |u: &UserRow| (u.created_at, u.updated_at));
    let query = sqlx::query_scalar(sql::UPSERT_USERS)
        .bind(offers.iter().map(|(k, _)| *k).collect::<Vec<_>>())
        .bind(text(|u| u.email.as_deref()))
        .bind(text(|u| u.name.as_deref()))
        .bind(text(|u| u.first_name.as_deref()))
        .bind(text(|u| u.last_name.as_deref()))
        .bind(text(|u| u.username.as_deref()))
        .bind(text(|u| u.image_url.as_deref()))
        .bind(text(|u| u.external_id.as_deref()))
        .bind(
            offers
                .iter()
                .map(|(_, o)| o.row().map_or("{}", |u| u.public_metadata.as_str()))
                .collect::<Vec<&str>>(),
        );
    let changed: Vec<String> = columns.bind(query).fetch_all(&mut *conn).await?;
    Ok(split_changed(&offers, changed))
}

/// The columns a winner and a deletion's placeholder both fill, as the upsert binds them.
#[derive(Default)]
struct PlaceholderColumns<'a> {
    created_at: Vec<i64>,
    updated_at: Vec<i64>,
    rank: Vec<i16>,
    version_ms: Vec<i64>,
    event_ms: Vec<i64>,
    event_id: Vec<&'a str>,
    deleted_at: Vec<Option<i64>>,
}

impl<'a> PlaceholderColumns<'a> {
    /// The columns of every offer, a row's times read by `times`.
    fn of<R>(offers: &[(&str, Offer<'a, R>)], times: impl Fn(&R) -> (Millis, Millis)) -> Self {
        let mut columns = PlaceholderColumns::default();
        for (_, offer) in offers {
            match offer {
                Offer::Row(w) => {
                    let (created_at, updated_at) = times(&w.row);
                    columns.push_row(created_at, updated_at, &w.version);
                }
                Offer::Placeholder(d) => columns.push_placeholder(d),
            }
        }
        columns
    }

    /// Binds the columns, in this order, as the statement's next seven parameters.
    fn bind<'q>(&'q self, query: ScalarQuery<'q>) -> ScalarQuery<'q> {
        query
            .bind(&self.created_at)
            .bind(&self.updated_at)
            .bind(&self.rank)
            .bind(&self.version_ms)
            .bind(&self.event_ms)
            .bind(&self.event_id)
            .bind(&self.deleted_at)
    }

    fn push_row(&mut self, created_at: Millis, updated_at: Millis, v: &'a Version) {
        self.created_at.push(created_at.get());
        self.updated_at.push(updated_at.get());
        self.rank.push(v.rank.as_i16());
        self.version_ms.push(v.at.get());
        self.event_ms.push(v.event_at.get());
        self.event_id.push(v.event_id.as_str());
        self.deleted_at.push(None);
    }

    /// A deletion seen first leaves a placeholder: its time stands in for every time until a
    /// real version fills them, and it ranks below any version.
    fn push_placeholder(&mut self, d: &'a Deletion) {
        let at = d.at.get();
        self.created_at.push(at);
        self.updated_at.push(at);
        self.rank.push(Rank::Placeholder.as_i16());
        self.version_ms.push(at);
        self.event_ms.push(at);
        self.event_id.push(d.version.event_id.as_str());
        self.deleted_at.push(Some(at));
    }
}

/// Writes the batch's organizations as [`upsert_users`] writes users: winners under the version
/// guard, a placeholder for each deleted organization the table does not hold yet.
async fn upsert_orgs(
    conn: &mut PgConnection,
    r: &Reduced,
) -> Result<(HashSet<String>, HashSet<String>)> {
    let offers = offers(&r.orgs, &r.org_deletions);
    let text = |f: fn(&OrgRow) -> Option<&str>| -> Vec<Option<&str>> {
        offers.iter().map(|(_, o)| o.row().and_then(f)).collect()
    };
    let columns = PlaceholderColumns::of(&offers, |o: &OrgRow| (o.created_at, o.updated_at));
    let query = sqlx::query_scalar(sql::UPSERT_ORGS)
        .bind(offers.iter().map(|(k, _)| *k).collect::<Vec<_>>())
        .bind(text(|o| o.name.as_deref()))
        .bind(
            offers
                .iter()
                .map(|(_, o)| match o {
                    Offer::Row(w) => w.row.slug.as_deref(),
                    Offer::Placeholder(d) => d.slug.as_deref(),
                })
                .collect::<Vec<_>>(),
        )
        .bind(text(|o| o.image_url.as_deref()))
        .bind(
            offers
                .iter()
                .map(|(_, o)| o.row().map_or("{}", |o| o.public_metadata.as_str()))
                .collect::<Vec<&str>>(),
        );
    let changed: Vec<String> = columns.bind(query).fetch_all(&mut *conn).await?;
    Ok(split_changed(&offers, changed))
}

async fn delete_users(conn: &mut PgConnection, r: &Reduced) -> Result<HashSet<String>> {
    let clerk_ids = ids(r.user_deletions.keys().map(|k| k.as_str()));
    let at = deletion_times(&r.user_deletions);
    let event_ids: Vec<&str> = r
        .user_deletions
        .values()
        .map(|d| d.version.event_id.as_str())
        .collect();
    let changed: Vec<String> = sqlx::query_scalar(sql::DELETE_USERS)
        .bind(&clerk_ids)
        .bind(&at)
        .bind(&event_ids)
        .fetch_all(&mut *conn)
        .await?;
    Ok(changed.into_iter().collect())
}

async fn delete_orgs(conn: &mut PgConnection, r: &Reduced) -> Result<HashSet<String>> {
    let clerk_ids = ids(r.org_deletions.keys().map(|k| k.as_str()));
    let at = deletion_times(&r.org_deletions);
    let slugs: Vec<Option<&str>> = r
        .org_deletions
        .values()
        .map(|d| d.slug.as_deref())
        .collect();
    let event_ids: Vec<&str> = r
        .org_deletions
        .values()
        .map(|d| d.version.event_id.as_str())
        .collect();
    let changed: Vec<String> = sqlx::query_scalar(sql::DELETE_ORGS)
        .bind(&clerk_ids)
        .bind(&at)
        .bind(&slugs)
        .bind(&event_ids)
        .fetch_all(&mut *conn)
        .await?;
    Ok(changed.into_iter().collect())
}

fn deletion_times<K>(deletions: &BTreeMap<K, Deletion>) -> Vec<i64> {
    deletions.values().map(|d| d.at.get()).collect()
}

/// Ends the memberships of the batch's deleted users and organizations, each at the earliest
/// of those deletions, in one statement that locks them in key order first: a batch deleting
/// users and another deleting an organization they belong to meet on the same memberships,
/// and would deadlock if each took them in its own order (by user, by organization).
async fn cascade_deletions(conn: &mut PgConnection, r: &Reduced) -> Result<()> {
    sqlx::query(sql::CASCADE_DELETIONS)
        .bind(ids(r.user_deletions.keys().map(|k| k.as_str())))
        .bind(deletion_times(&r.user_deletions))
        .bind(ids(r.org_deletions.keys().map(|k| k.as_str())))
        .bind(deletion_times(&r.org_deletions))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn upsert_memberships(
    conn: &mut PgConnection,
    r: &Reduced,
    intent: Intent,
) -> Result<HashMap<String, String>> {
    let changes: Vec<_> = r.memberships.values().collect();
    let statement = match intent {
        Intent::Commit => sql::UPSERT_MEMBERSHIPS,
        Intent::DryRun => sql::UPSERT_MEMBERSHIPS_DRY_RUN,
    };
    let changed: Vec<(String, String)> = sqlx::query_as(statement)
        .bind(ids(changes.iter().map(|c| c.row.clerk_id.as_str())))
        .bind(ids(changes.iter().map(|c| c.row.user_id.as_str())))
        .bind(ids(changes.iter().map(|c| c.row.org_id.as_str())))
        .bind(
            changes
                .iter()
                .map(|c| c.row.role.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|c| array_literal(&c.row.permissions))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|c| c.row.created_at.get())
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|c| c.row.updated_at.get())
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|c| c.deleted_at.map(Millis::get))
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|c| c.version.event_at.get())
                .collect::<Vec<_>>(),
        )
        .bind(
            changes
                .iter()
                .map(|c| c.version.event_id.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await?;
    Ok(changed.into_iter().collect())
}

/// A Postgres array literal (`{"a","b"}`): one text per row, cast to text[] by the statement
/// (unnest cannot take an array of arrays of different lengths).
fn array_literal(items: &[String]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for ch in item.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::array_literal;

    #[test]
    fn permissions_become_array_literals_with_quotes_and_backslashes_escaped() {
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(
            array_literal(&["org:sys_memberships:read".into(), r#"a"b\c"#.into()]),
            r#"{"org:sys_memberships:read","a\"b\\c"}"#
        );
    }
}
