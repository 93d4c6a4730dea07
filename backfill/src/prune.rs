//! What `--prune` may delete: rows live here that Clerk did not list, each confirmed absent
//! with a direct request, within the safety bounds; and the synthetic deletions that delete
//! them through the worker, as Clerk's own would.

use std::collections::{BTreeMap, BTreeSet};

use crate::Result;
use clerk_sync_core::Secret;
use serde_json::{json, Value};

use super::api::ClerkApi;
use super::drift::{DriftDb, Ids, MembershipEventRow, TableDrift};
use super::RESOURCES;

/// `--prune` and its bounds.
#[derive(Clone, Debug)]
pub struct PruneConfig {
    pub database_url: Secret,
    /// Rows deleted per table at most; `None`: 1% of the table's live rows, at least one.
    pub max_prune: Option<u64>,
    /// Prune even when the listing looks truncated or more than the bound would go.
    pub force: bool,
}

impl PruneConfig {
    pub fn bound(&self, live_rows: u64) -> u64 {
        self.max_prune.unwrap_or((live_rows / 100).max(1))
    }
}

/// What the listing returned, per resource in [`RESOURCES`] order.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListingFacts {
    pub listed: [u64; 3],
    pub totals: [Option<u64>; 3],
}

/// Why pruning would be unsafe, if it would be (ignored with `--force`).
fn refusal(
    facts: &ListingFacts,
    drift: &[TableDrift],
    unlisted: &[usize; 3],
    config: &PruneConfig,
) -> Option<String> {
    for (i, table) in drift.iter().enumerate() {
        let resource = RESOURCES[i].0;
        let listed = facts.listed[i];
        if let Some(total) = facts.totals[i].filter(|total| listed < *total) {
            return Some(format!(
                "Clerk listed {listed} {resource} but counts {total}: the listing looks truncated; run again, or pass --force"
            ));
        }
        if listed == 0 && table.live_rows > 0 {
            return Some(format!(
                "Clerk listed no {resource} while {} holds {} live rows: is CLERK_SECRET_KEY the key of this instance? Pass --force if Clerk really has none",
                table.table, table.live_rows
            ));
        }
        let bound = config.bound(table.live_rows);
        if unlisted[i] as u64 > bound {
            return Some(format!(
                "{} live {} rows were not listed by Clerk, more than --max-prune {bound}: check the instance, then raise --max-prune or pass --force",
                unlisted[i], table.table
            ));
        }
    }
    None
}

/// The rows `--prune` deletes, confirmed one by one; the refusal instead when unsafe.
/// Fills each table's `deleted`.
pub async fn confirm(
    db: &mut DriftDb,
    api: &mut ClerkApi,
    facts: &ListingFacts,
    drift: &mut [TableDrift],
    config: &PruneConfig,
) -> Result<Plan> {
    // Users and organizations first: their deletion ends their memberships (the cascade), so
    // those need no confirmation or event of their own.
    let unlisted_first = [drift[0].unlisted.len(), drift[1].unlisted.len(), 0];
    if !config.force {
        if let Some(reason) = refusal(facts, drift, &unlisted_first, config) {
            return Ok(Plan::refused(reason));
        }
    }
    let orgs = absent(api, "/v1/organizations", &drift[0].unlisted).await?;
    let users = absent(api, "/v1/users", &drift[1].unlisted).await?;
    let owners = db.membership_owners(&drift[2].unlisted).await?;
    let (cascaded, own): (Vec<_>, Vec<_>) = owners
        .into_iter()
        .partition(|(_, org, user)| orgs.contains(org) || users.contains(user));
    let unlisted = [orgs.len(), users.len(), own.len()];
    if !config.force {
        if let Some(reason) = refusal(facts, drift, &unlisted, config) {
            return Ok(Plan::refused(reason));
        }
    }
    let memberships = absent_memberships(api, &own).await?;
    let mut ended: Vec<String> = cascaded.into_iter().map(|(id, _, _)| id).collect();
    ended.extend(memberships.iter().cloned());
    ended.sort();
    for (table, deleted) in drift.iter_mut().zip([&orgs, &users]) {
        table.deleted = every(deleted.iter().cloned().collect());
    }
    drift[2].deleted = every(ended);
    Ok(Plan {
        refused: None,
        orgs: orgs.into_iter().collect(),
        users: users.into_iter().collect(),
        memberships: memberships.into_iter().collect(),
    })
}

fn every(ids: Vec<String>) -> Ids {
    Ids {
        count: ids.len() as u64,
        ids,
    }
}

/// The deletions to publish, or why there are none.
#[derive(Debug, Default)]
pub struct Plan {
    pub refused: Option<String>,
    pub orgs: Vec<String>,
    pub users: Vec<String>,
    /// Memberships ended on their own (not by their user's or organization's deletion).
    pub memberships: Vec<String>,
}

impl Plan {
    fn refused(reason: String) -> Self {
        Plan {
            refused: Some(reason),
            ..Plan::default()
        }
    }

    /// The synthetic deletions, dated `at`, as `(event id, event type, body)`.
    pub async fn events(
        &self,
        db: &mut DriftDb,
        at: i64,
    ) -> Result<Vec<(String, &'static str, Vec<u8>)>> {
        let mut events = Vec::new();
        for (ids, event_type, object) in [
            (&self.orgs, "organization.deleted", "organization"),
            (&self.users, "user.deleted", "user"),
        ] {
            for id in ids {
                let data = json!({"id": id, "object": object, "deleted": true});
                events.push((
                    event_id(id, at),
                    event_type,
                    envelope(event_type, at, &data.to_string()),
                ));
            }
        }
        for id in &self.memberships {
            // Gone since it was measured (a live event ended it): nothing to do.
            if let Some(row) = db.membership_event_data(id).await? {
                events.push((
                    event_id(id, at),
                    "organizationMembership.deleted",
                    envelope("organizationMembership.deleted", at, &membership_data(row)),
                ));
            }
        }
        Ok(events)
    }
}

/// The same deletion found twice has one id: a re-run's duplicate is one event to the worker.
fn event_id(clerk_id: &str, at: i64) -> String {
    format!("prune_{clerk_id}_{at}")
}

fn envelope(event_type: &str, at: i64, data: &str) -> Vec<u8> {
    let head = json!({"type": event_type, "object": "event", "timestamp": at});
    splice(&head, "data", data).into_bytes()
}

/// `object` serialised with one more member whose value is JSON text already (stored
/// metadata, at whatever depth Postgres kept it, is never parsed into a tree).
fn splice(object: &Value, key: &str, raw: &str) -> String {
    let mut text = object.to_string();
    text.pop(); // the closing brace
    if text.len() > 1 {
        text.push(',');
    }
    text.push_str(&Value::from(key).to_string());
    text.push(':');
    text.push_str(raw);
    text.push('}');
    text
}

/// A membership as Clerk's webhook carries it, from its rows: the stub user and organization
/// it also writes are what the tables hold already.
fn membership_data(row: MembershipEventRow) -> String {
    let organization = json!({"object": "organization", "id": row.org_id, "name": row.org_name,
        "slug": row.org_slug, "image_url": row.org_image_url, "created_at": row.org_created_ms,
        "updated_at": row.org_updated_ms});
    let data = json!({"object": "organization_membership", "id": row.id, "role": row.role,
        "permissions": row.permissions, "created_at": row.created_ms, "updated_at": row.updated_ms,
        "public_user_data": {"user_id": row.user_id, "first_name": row.first_name,
            "last_name": row.last_name, "image_url": row.image_url, "identifier": row.email}});
    splice(
        &data,
        "organization",
        &splice(&organization, "public_metadata", &row.org_public_metadata),
    )
}

/// Those of `ids` that `GET {listing}/{id}` answers 404 for.
async fn absent(api: &mut ClerkApi, listing: &str, ids: &[String]) -> Result<BTreeSet<String>> {
    let mut gone = BTreeSet::new();
    for id in ids {
        match api.get(&format!("{listing}/{}", segment(id)), &[]).await? {
            None => {
                gone.insert(id.clone());
            }
            Some(_) => {
                tracing::info!(clerk_id = %id, "not listed, but Clerk has it: left alone");
            }
        }
    }
    Ok(gone)
}

/// Those of `(membership, organization, user)` whose user is not in the organization's own
/// membership listing (or whose organization Clerk no longer has).
async fn absent_memberships(
    api: &mut ClerkApi,
    memberships: &[(String, String, String)],
) -> Result<BTreeSet<String>> {
    let mut by_org: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (id, org, user) in memberships {
        by_org.entry(org).or_default().push((id, user));
    }
    let mut gone = BTreeSet::new();
    for (org, members) in by_org {
        let listing = format!("/v1/organizations/{}/memberships", segment(org));
        let mut present = BTreeSet::new();
        let mut offset = 0u64;
        loop {
            let query = [("limit", "500".to_owned()), ("offset", offset.to_string())];
            let Some(body) = api.get(&listing, &query).await? else {
                break; // the organization is gone, and every membership with it
            };
            let items = body["data"].as_array().cloned().unwrap_or_default();
            present.extend(
                items
                    .iter()
                    .filter_map(|m| m["public_user_data"]["user_id"].as_str())
                    .map(str::to_owned),
            );
            offset += items.len() as u64;
            if items.len() < 500 {
                break;
            }
        }
        gone.extend(
            members
                .into_iter()
                .filter(|(_, user)| !present.contains(*user))
                .map(|(id, _)| id.to_owned()),
        );
    }
    Ok(gone)
}

/// A Clerk id as one path segment: an id from the tables never changes the path it is in.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_with_path_characters_stays_one_segment() {
        assert_eq!(segment("user_2abc"), "user_2abc");
        assert_eq!(segment("../v1/x?y"), "..%2Fv1%2Fx%3Fy");
    }

    #[test]
    fn raw_json_is_spliced_in_as_one_member() {
        let text = splice(&json!({"a": 1}), "m", r#"{"deep":[[[]]]}"#);
        let back: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, json!({"a": 1, "m": {"deep": [[[]]]}}));
        assert_eq!(splice(&json!({}), "m", "1"), r#"{"m":1}"#);
    }

    /// Clerk's times are milliseconds (smaller numbers would be read as seconds).
    const T: i64 = 1_754_560_800_000;

    #[test]
    fn a_synthetic_membership_deletion_decodes_to_the_rows_it_was_built_from() {
        let row = MembershipEventRow {
            id: "orgmem_1".into(),
            role: "org:admin".into(),
            permissions: vec!["org:sys_profile:read".into()],
            created_ms: T + 1_000,
            updated_ms: T + 2_000,
            user_id: "user_1".into(),
            first_name: Some("Ada".into()),
            last_name: None,
            image_url: None,
            email: Some("ada@example.com".into()),
            org_id: "org_1".into(),
            org_name: Some("Acme".into()),
            org_slug: Some("acme".into()),
            org_image_url: None,
            org_public_metadata: r#"{"plan":"team"}"#.into(),
            org_created_ms: T + 500,
            org_updated_ms: T + 600,
        };
        let body = envelope(
            "organizationMembership.deleted",
            T + 9_000,
            &membership_data(row),
        );
        let id = clerk_sync_core::EventId::parse("prune_orgmem_1_9000").expect("id");
        let (meta, event) = clerk_sync_core::ClerkEvent::decode(id, &body).expect("decodes");
        assert_eq!(meta.timestamp.get(), T + 9_000);
        let clerk_sync_core::ClerkEvent::MembershipDeleted(deleted) = event else {
            panic!("a membership deletion: {event:?}");
        };
        let m = deleted.0;
        assert_eq!((m.id.as_str(), m.role.as_str()), ("orgmem_1", "org:admin"));
        assert_eq!(
            (m.created_at.get(), m.updated_at.get()),
            (T + 1_000, T + 2_000)
        );
        assert_eq!(m.user.email().as_deref(), Some("ada@example.com"));
        assert_eq!(m.org.public_metadata.as_str(), r#"{"plan":"team"}"#);
        assert_eq!(
            (m.org.created_at.get(), m.org.updated_at.get()),
            (T + 500, T + 600)
        );
    }
}
