//! Reducing a batch to one change per entity before writing it.
//!
//! Because the rules in [`crate::mirror`] converge whatever the order, a batch can be applied as
//! "the newest version of each row, then the earliest deletion of each entity" without changing
//! the result; this is what lets the worker write a batch with a few set-based statements (each
//! row at most once per statement, as Postgres requires of `ON CONFLICT`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use crate::mirror::{Generation, MembershipRow, OrgRow, Rank, UserRow, Version};
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

#[derive(Default)]
struct Scan {
    users: HashMap<UserId, Winner<UserRow>>,
    orgs: HashMap<OrgId, Winner<OrgRow>>,
    user_deletions: HashMap<UserId, Deletion>,
    org_deletions: HashMap<OrgId, Deletion>,
    memberships: HashMap<(UserId, OrgId), MembershipChange>,
}

/// Keeps the candidate if its version is greater. The row and the owned key are only built for
/// a candidate that wins: most events in a large batch lose to a later one.
fn keep_greater<K: Hash + Eq + Clone, R>(
    map: &mut HashMap<K, Winner<R>>,
    key: &K,
    version: (Rank, Millis, &EventMeta),
    index: usize,
    row: impl FnOnce() -> R,
) {
    let (rank, at, meta) = version;
    let wins = map.get(key).is_none_or(|current| {
        let v = &current.version;
        (rank, at, meta.timestamp, &meta.id) > (v.rank, v.at, v.event_at, &v.event_id)
    });
    if wins {
        map.insert(
            key.clone(),
            Winner {
                row: row(),
                version: Version::new(rank, at, meta),
                index,
            },
        );
    }
}

fn keep_earliest<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, Deletion>,
    key: &K,
    meta: &EventMeta,
    slug: Option<&String>,
    index: usize,
) {
    let wins = map.get(key).is_none_or(|current| {
        (meta.timestamp, Rank::Placeholder, meta.timestamp, &meta.id)
            < (
                current.at,
                current.version.rank,
                current.version.event_at,
                &current.version.event_id,
            )
    });
    if wins {
        map.insert(
            key.clone(),
            Deletion {
                at: meta.timestamp,
                version: Version::placeholder(meta),
                slug: slug.cloned(),
                index,
            },
        );
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
    // Hash maps while scanning (a lookup per event), ordered maps in the result: the writes then
    // touch rows in key order, so concurrent batches lock them in the same order.
    let mut r = Scan::default();
    for (index, (meta, event)) in events.iter().enumerate() {
        match event {
            ClerkEvent::UserUpserted(user) => keep_greater(
                &mut r.users,
                &user.id,
                (Rank::Full, user.updated_at, meta),
                index,
                || UserRow::from_user(user),
            ),
            ClerkEvent::UserDeleted(d) => {
                keep_earliest(&mut r.user_deletions, &d.id, meta, None, index)
            }
            ClerkEvent::OrgUpserted(org) => keep_greater(
                &mut r.orgs,
                &org.id,
                (Rank::Full, org.updated_at, meta),
                index,
                || OrgRow::from_org(org),
            ),
            ClerkEvent::OrgDeleted(d) => {
                keep_earliest(&mut r.org_deletions, &d.id, meta, d.slug.as_ref(), index)
            }
            ClerkEvent::MembershipUpserted(m)
            | ClerkEvent::MembershipDeleted(crate::MembershipDeleted(m)) => {
                let own_deletion =
                    matches!(event, ClerkEvent::MembershipDeleted(_)).then_some(meta.timestamp);
                keep_greater(
                    &mut r.orgs,
                    &m.org.id,
                    (Rank::Stub, m.org.updated_at, meta),
                    index,
                    || OrgRow::from_org(&m.org),
                );
                keep_greater(
                    &mut r.users,
                    &m.user.id,
                    (Rank::Stub, meta.timestamp, meta),
                    index,
                    || UserRow::from_stub(&m.user, meta.timestamp),
                );
                let candidate = || MembershipChange {
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
                        r.memberships.insert(key, candidate());
                    }
                    Some(current) => {
                        let generation = (m.created_at, &m.id)
                            .cmp(&(current.generation.created_at, &current.generation.id));
                        let v = &current.version;
                        let newer = (Rank::Full, m.updated_at, meta.timestamp, &meta.id)
                            > (v.rank, v.at, v.event_at, &v.event_id);
                        match generation {
                            Ordering::Greater => *current = candidate(),
                            Ordering::Equal => {
                                let deleted_at = earliest(current.deleted_at, own_deletion);
                                if newer {
                                    *current = candidate();
                                }
                                current.deleted_at = deleted_at;
                            }
                            Ordering::Less => {}
                        }
                    }
                }
            }
            ClerkEvent::Ignored { .. } => {}
        }
    }
    Reduced {
        users: r.users.into_iter().collect(),
        orgs: r.orgs.into_iter().collect(),
        user_deletions: r.user_deletions.into_iter().collect(),
        org_deletions: r.org_deletions.into_iter().collect(),
        memberships: r.memberships.into_iter().collect(),
    }
}
