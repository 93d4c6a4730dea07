//! Reducing a batch to one change per entity before writing it.
//!
//! Because the rules in [`crate::mirror`] converge whatever the order, a batch can be applied as
//! "the newest version of each row, then the earliest deletion of each entity" without changing
//! the result; this is what lets the worker write a batch with a few set-based statements (each
//! row at most once per statement, as Postgres requires of `ON CONFLICT`).

mod scan;

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::rows::{Generation, MembershipRow, OrgRow, Rank, UserRow, Version};
use crate::{ClerkEvent, EventMeta, Membership, Millis, OrgId, Organization, UserId};
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
    let events: Vec<&(EventMeta, ClerkEvent)> = events.iter().map(Borrow::borrow).collect();
    let mut scan = Scan::default();
    let slots: Vec<usize> = events
        .iter()
        .enumerate()
        .map(|(index, (meta, event))| scan.offer(index, meta, event))
        .collect();
    let winner_of = events
        .iter()
        .zip(&slots)
        .enumerate()
        .map(|(index, ((_, event), &slot))| scan.winner_of(index, event, slot))
        .collect();
    scan.build(winner_of)
}

/// The batch scanned: keys and versions borrowed (a hash lookup per event, no allocation);
/// rows are built once per winner at the end, into ordered maps, so that the writes touch rows
/// in key order and concurrent batches lock them in the same order.
#[derive(Default)]
struct Scan<'a> {
    users: Table<&'a str, Best<'a, UserSource<'a>>>,
    orgs: Table<&'a str, Best<'a, &'a Organization>>,
    user_deletions: Table<&'a str, Gone<'a, UserId>>,
    org_deletions: Table<&'a str, Gone<'a, OrgId>>,
    memberships: Table<(&'a str, &'a str), Member<'a>>,
}

impl<'a> Scan<'a> {
    /// Offers the event's change to its entity's table; returns its slot there.
    fn offer(&mut self, index: usize, meta: &'a EventMeta, event: &'a ClerkEvent) -> usize {
        match event {
            ClerkEvent::UserUpserted(user) => self.users.offer(
                user.id.as_str(),
                Best {
                    source: UserSource::Full(user),
                    version: Borrowed::new(Rank::Full, user.updated_at, meta),
                    index,
                },
                keep_greater,
            ),
            ClerkEvent::UserDeleted(d) => self.user_deletions.offer(
                d.id.as_str(),
                Gone {
                    id: &d.id,
                    meta,
                    slug: None,
                    index,
                },
                keep_earliest,
            ),
            ClerkEvent::OrgUpserted(org) => self.orgs.offer(
                org.id.as_str(),
                Best {
                    source: org,
                    version: Borrowed::new(Rank::Full, org.updated_at, meta),
                    index,
                },
                keep_greater,
            ),
            ClerkEvent::OrgDeleted(d) => self.org_deletions.offer(
                d.id.as_str(),
                Gone {
                    id: &d.id,
                    meta,
                    slug: d.slug.as_ref(),
                    index,
                },
                keep_earliest,
            ),
            ClerkEvent::MembershipUpserted(m) => self.offer_membership(index, meta, m, None),
            ClerkEvent::MembershipDeleted(crate::MembershipDeleted(m)) => {
                self.offer_membership(index, meta, m, Some(meta.timestamp))
            }
            ClerkEvent::Ignored { .. } => index,
        }
    }

    /// A membership event offers stubs of its organization and user, and its own change.
    fn offer_membership(
        &mut self,
        index: usize,
        meta: &'a EventMeta,
        m: &'a Membership,
        own_deletion: Option<Millis>,
    ) -> usize {
        self.orgs.offer(
            m.org.id.as_str(),
            Best {
                source: &m.org,
                version: Borrowed::new(Rank::Stub, m.org.updated_at, meta),
                index,
            },
            keep_greater,
        );
        self.users.offer(
            m.user.id.as_str(),
            Best {
                source: UserSource::Stub(&m.user, meta.timestamp),
                version: Borrowed::new(Rank::Stub, meta.timestamp, meta),
                index,
            },
            keep_greater,
        );
        self.memberships.offer(
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

    /// The index of the event whose change won for this event's entity.
    fn winner_of(&self, index: usize, event: &ClerkEvent, slot: usize) -> usize {
        match event {
            ClerkEvent::UserUpserted(_) => self.users.index_of(slot),
            ClerkEvent::UserDeleted(_) => self.user_deletions.index_of(slot),
            ClerkEvent::OrgUpserted(_) => self.orgs.index_of(slot),
            ClerkEvent::OrgDeleted(_) => self.org_deletions.index_of(slot),
            ClerkEvent::MembershipUpserted(_) | ClerkEvent::MembershipDeleted(_) => {
                self.memberships.index_of(slot)
            }
            ClerkEvent::Ignored { .. } => index,
        }
    }

    /// The winners' rows, built once each, in key order.
    fn build(self, winner_of: Vec<usize>) -> Reduced {
        Reduced {
            users: self
                .users
                .into_sorted()
                .map(|w| {
                    let row = match w.source {
                        UserSource::Full(user) => UserRow::from_user(user),
                        UserSource::Stub(stub, at) => UserRow::from_stub(stub, at),
                    };
                    (row.clerk_id.clone(), winner(row, w.version, w.index))
                })
                .collect(),
            orgs: self
                .orgs
                .into_sorted()
                .map(|w| {
                    let row = OrgRow::from_org(w.source);
                    (row.clerk_id.clone(), winner(row, w.version, w.index))
                })
                .collect(),
            user_deletions: self
                .user_deletions
                .into_sorted()
                .map(|g| (g.id.clone(), deletion(&g)))
                .collect(),
            org_deletions: self
                .org_deletions
                .into_sorted()
                .map(|g| (g.id.clone(), deletion(&g)))
                .collect(),
            memberships: self
                .memberships
                .into_sorted()
                .map(membership_change)
                .collect(),
            winner_of,
        }
    }
}

fn membership_change(c: Member<'_>) -> ((UserId, OrgId), MembershipChange) {
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
