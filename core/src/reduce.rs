//! Reducing a batch to one change per entity before writing it.
//!
//! Because the rules in [`crate::mirror`] converge whatever the order, a batch can be applied as
//! "the newest version of each row, then the earliest deletion of each entity" without changing
//! the result; this is what lets the worker write a batch with a few set-based statements (each
//! row at most once per statement, as Postgres requires of `ON CONFLICT`).

use std::collections::BTreeMap;

use crate::mirror::{Generation, MembershipRow, OrgRow, UserRow, Version};
use crate::{ClerkEvent, EventMeta, Millis, OrgId, UserId};

/// The winning change for one row, and the index of the event it came from.
#[derive(Clone, Debug)]
pub struct Winner<R> {
    pub row: R,
    pub version: Version,
    pub index: usize,
}

/// An entity's earliest deletion in the batch.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub at: Millis,
    pub version: Version,
    pub slug: Option<String>,
    pub index: usize,
}

/// A membership's winning change: the newest generation, its newest version, its earliest own
/// deletion.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    pub row: MembershipRow,
    pub generation: Generation,
    pub version: Version,
    pub deleted_at: Option<Millis>,
    pub index: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Reduced {
    /// Clerk's own objects and membership stubs, the greater version winning.
    pub users: BTreeMap<UserId, Winner<UserRow>>,
    pub orgs: BTreeMap<OrgId, Winner<OrgRow>>,
    pub user_deletions: BTreeMap<UserId, Deletion>,
    pub org_deletions: BTreeMap<OrgId, Deletion>,
    pub memberships: BTreeMap<(UserId, OrgId), MembershipChange>,
}

fn keep_greater<K: Ord, R>(map: &mut BTreeMap<K, Winner<R>>, key: K, candidate: Winner<R>) {
    match map.get(&key) {
        Some(current) if current.version >= candidate.version => {}
        _ => {
            map.insert(key, candidate);
        }
    }
}

fn keep_earliest<K: Ord>(map: &mut BTreeMap<K, Deletion>, key: K, candidate: Deletion) {
    match map.get(&key) {
        Some(current) if (current.at, &current.version) <= (candidate.at, &candidate.version) => {}
        _ => {
            map.insert(key, candidate);
        }
    }
}

fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reduces a batch of decoded events.
pub fn reduce(events: &[(EventMeta, ClerkEvent)]) -> Reduced {
    let mut r = Reduced::default();
    for (index, (meta, event)) in events.iter().enumerate() {
        match event {
            ClerkEvent::UserUpserted(user) => keep_greater(
                &mut r.users,
                user.id.clone(),
                Winner {
                    row: UserRow::from_user(user),
                    version: Version::full(user.updated_at, meta),
                    index,
                },
            ),
            ClerkEvent::UserDeleted(d) => keep_earliest(
                &mut r.user_deletions,
                d.id.clone(),
                Deletion {
                    at: meta.timestamp,
                    version: Version::placeholder(meta),
                    slug: None,
                    index,
                },
            ),
            ClerkEvent::OrgUpserted(org) => keep_greater(
                &mut r.orgs,
                org.id.clone(),
                Winner {
                    row: OrgRow::from_org(org),
                    version: Version::full(org.updated_at, meta),
                    index,
                },
            ),
            ClerkEvent::OrgDeleted(d) => keep_earliest(
                &mut r.org_deletions,
                d.id.clone(),
                Deletion {
                    at: meta.timestamp,
                    version: Version::placeholder(meta),
                    slug: d.slug.clone(),
                    index,
                },
            ),
            ClerkEvent::MembershipUpserted(m)
            | ClerkEvent::MembershipDeleted(crate::MembershipDeleted(m)) => {
                let own_deletion =
                    matches!(event, ClerkEvent::MembershipDeleted(_)).then_some(meta.timestamp);
                keep_greater(
                    &mut r.orgs,
                    m.org.id.clone(),
                    Winner {
                        row: OrgRow::from_org(&m.org),
                        version: Version::stub(m.org.updated_at, meta),
                        index,
                    },
                );
                keep_greater(
                    &mut r.users,
                    m.user.id.clone(),
                    Winner {
                        row: UserRow::from_stub(&m.user, meta.timestamp),
                        version: Version::stub(meta.timestamp, meta),
                        index,
                    },
                );
                let candidate = MembershipChange {
                    row: MembershipRow::from_membership(m),
                    generation: Generation {
                        created_at: m.created_at,
                        id: m.id.clone(),
                    },
                    version: Version::full(m.updated_at, meta),
                    deleted_at: own_deletion,
                    index,
                };
                let key = (m.user.id.clone(), m.org.id.clone());
                match r.memberships.get_mut(&key) {
                    None => {
                        r.memberships.insert(key, candidate);
                    }
                    Some(current) if candidate.generation > current.generation => {
                        *current = candidate
                    }
                    Some(current) if candidate.generation == current.generation => {
                        let deleted_at = earliest(current.deleted_at, candidate.deleted_at);
                        if candidate.version > current.version {
                            *current = candidate;
                        }
                        current.deleted_at = deleted_at;
                    }
                    Some(_) => {}
                }
            }
            ClerkEvent::Ignored { .. } => {}
        }
    }
    r
}
