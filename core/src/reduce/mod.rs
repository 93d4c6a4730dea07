//! Reducing a batch to one change per entity before writing it.
//!
//! Because the rules in [`crate::mirror`] converge whatever the order, a batch can be applied as
//! "the newest version of each row, then the earliest deletion of each entity" without changing
//! the result; this is what lets the worker write a batch with a few set-based statements (each
//! row at most once per statement, as Postgres requires of `ON CONFLICT`).

mod scan;

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::mirror::{Generation, MembershipRow, OrgRow, Rank, UserRow, Version};
use crate::{ClerkEvent, EventMeta, Millis, OrgId, Organization, UserId};
use scan::{
    keep_earliest, keep_greater, keep_member, Best, Borrowed, Gone, Member, Table, UserSource,
};

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
    /// For each event of the batch, the index of the event whose change won for the event's own
    /// entity (the event itself when it won, or for an ignored type).
    pub winner_of: Vec<usize>,
}

/// Reduces a batch of decoded events (owned, or borrowed from the records they came in).
pub fn reduce<E: Borrow<(EventMeta, ClerkEvent)>>(events: &[E]) -> Reduced {
    // Keys and versions are borrowed while scanning (a hash lookup per event, no allocation);
    // rows are built once per winner at the end, into ordered maps: the writes then touch rows
    // in key order, so concurrent batches lock them in the same order.
    let mut users: Table<&str, Best<'_, UserSource<'_>>> = Table::new();
    let mut orgs: Table<&str, Best<'_, &Organization>> = Table::new();
    let mut user_deletions: Table<&str, Gone<'_, UserId>> = Table::new();
    let mut org_deletions: Table<&str, Gone<'_, OrgId>> = Table::new();
    let mut memberships: Table<(&str, &str), Member<'_>> = Table::new();
    // Each event's slot in its own entity's table.
    let mut slot_of = Vec::with_capacity(events.len());
    for (index, (meta, event)) in events
        .iter()
        .map(Borrow::<(EventMeta, ClerkEvent)>::borrow)
        .enumerate()
    {
        let slot = match event {
            ClerkEvent::UserUpserted(user) => users.offer(
                user.id.as_str(),
                Best {
                    source: UserSource::Full(user),
                    version: Borrowed::new(Rank::Full, user.updated_at, meta),
                    index,
                },
                keep_greater,
            ),
            ClerkEvent::UserDeleted(d) => user_deletions.offer(
                d.id.as_str(),
                Gone {
                    id: &d.id,
                    meta,
                    slug: None,
                    index,
                },
                keep_earliest,
            ),
            ClerkEvent::OrgUpserted(org) => orgs.offer(
                org.id.as_str(),
                Best {
                    source: org,
                    version: Borrowed::new(Rank::Full, org.updated_at, meta),
                    index,
                },
                keep_greater,
            ),
            ClerkEvent::OrgDeleted(d) => org_deletions.offer(
                d.id.as_str(),
                Gone {
                    id: &d.id,
                    meta,
                    slug: d.slug.as_ref(),
                    index,
                },
                keep_earliest,
            ),
            ClerkEvent::MembershipUpserted(m)
            | ClerkEvent::MembershipDeleted(crate::MembershipDeleted(m)) => {
                orgs.offer(
                    m.org.id.as_str(),
                    Best {
                        source: &m.org,
                        version: Borrowed::new(Rank::Stub, m.org.updated_at, meta),
                        index,
                    },
                    keep_greater,
                );
                users.offer(
                    m.user.id.as_str(),
                    Best {
                        source: UserSource::Stub(&m.user, meta.timestamp),
                        version: Borrowed::new(Rank::Stub, meta.timestamp, meta),
                        index,
                    },
                    keep_greater,
                );
                let own_deletion =
                    matches!(event, ClerkEvent::MembershipDeleted(_)).then_some(meta.timestamp);
                memberships.offer(
                    (m.user.id.as_str(), m.org.id.as_str()),
                    Member {
                        membership: m,
                        generation: (m.created_at, &m.id),
                        version: Borrowed::new(Rank::Full, m.updated_at, meta),
                        deleted_at: own_deletion,
                        index,
                    },
                    keep_member,
                )
            }
            ClerkEvent::Ignored { .. } => index,
        };
        slot_of.push(slot);
    }
    let winner_of = events
        .iter()
        .map(Borrow::<(EventMeta, ClerkEvent)>::borrow)
        .zip(&slot_of)
        .enumerate()
        .map(|(index, ((_, event), &slot))| match event {
            ClerkEvent::UserUpserted(_) => users.index_of(slot),
            ClerkEvent::UserDeleted(_) => user_deletions.index_of(slot),
            ClerkEvent::OrgUpserted(_) => orgs.index_of(slot),
            ClerkEvent::OrgDeleted(_) => org_deletions.index_of(slot),
            ClerkEvent::MembershipUpserted(_) | ClerkEvent::MembershipDeleted(_) => {
                memberships.index_of(slot)
            }
            ClerkEvent::Ignored { .. } => index,
        })
        .collect();
    Reduced {
        users: users
            .into_sorted()
            .map(|w| {
                let row = match w.source {
                    UserSource::Full(user) => UserRow::from_user(user),
                    UserSource::Stub(stub, at) => UserRow::from_stub(stub, at),
                };
                (row.clerk_id.clone(), winner(row, w.version, w.index))
            })
            .collect(),
        orgs: orgs
            .into_sorted()
            .map(|w| {
                let row = OrgRow::from_org(w.source);
                (row.clerk_id.clone(), winner(row, w.version, w.index))
            })
            .collect(),
        user_deletions: user_deletions
            .into_sorted()
            .map(|g| (g.id.clone(), deletion(&g)))
            .collect(),
        org_deletions: org_deletions
            .into_sorted()
            .map(|g| (g.id.clone(), deletion(&g)))
            .collect(),
        memberships: memberships
            .into_sorted()
            .map(|c| {
                let m = c.membership;
                let change = MembershipChange {
                    row: MembershipRow::from_membership(m),
                    generation: Generation {
                        created_at: m.created_at,
                        id: m.id.clone(),
                    },
                    version: c.version.owned(),
                    deleted_at: c.deleted_at,
                    index: c.index,
                };
                ((m.user.id.clone(), m.org.id.clone()), change)
            })
            .collect(),
        winner_of,
    }
}

fn deletion<I>(g: &Gone<'_, I>) -> Deletion {
    Deletion {
        at: g.meta.timestamp,
        version: Version::placeholder(g.meta),
        slug: g.slug.cloned(),
        index: g.index,
    }
}

fn winner<R>(row: R, version: Borrowed<'_>, index: usize) -> Winner<R> {
    Winner {
        row,
        version: version.owned(),
        index,
    }
}
