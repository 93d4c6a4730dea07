//! The upsert decision: given what is stored and an event, what changes.
//!
//! [`Mirror`] is the reference model of the three synced tables, in memory. The worker's SQL
//! implements exactly these rules, and the property tests check both against each other: any
//! delivery order, with any duplication, ends in the tables Clerk's own order produces.
//!
//! The rules:
//! - Each row's fields carry a [`Version`]; an event replaces them only when its version is
//!   greater. Versions compare by rank (a deletion placeholder < a stub < Clerk's own object),
//!   then Clerk's `updated_at`, then the envelope `timestamp`, then the event id: a total order,
//!   so equal `updated_at` values are settled deterministically (the later envelope wins, then
//!   the greater Svix message id).
//! - Deletion of a user or organization is final: `deleted_at` never returns to null, and is the
//!   earliest deletion time seen. A deleted user's personal data is erased and stays erased,
//!   whatever arrives later. A deleted organization keeps its last known name and slug.
//! - A membership row belongs to one (user, organization) pair. Its generation is the
//!   membership's (`created_at`, `orgmem_…` id): a newer generation (leaving and re-joining)
//!   replaces the row, an older one changes nothing. Within a generation the version rule holds,
//!   and `deleted_at` is the earliest of the membership's own deletion and the deletion of its
//!   user or organization.
//! - A membership event creates stub rows for its user and organization when they are missing;
//!   stubs rank below Clerk's own objects, so they never overwrite real data.

use std::collections::BTreeMap;

use crate::reduce::Reduced;
use crate::rows::earliest;
// The row and version types live in `rows.rs` (shared with `reduce`); named here too, where
// the rules that use them are.
pub use crate::rows::{Generation, MembershipRow, OrgRow, Rank, UserRow, Version};
use crate::{ClerkEvent, EventMeta, JsonText, Membership, Millis, OrgId, UserId};

/// The three tables, in memory, with the rules above.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    users: BTreeMap<UserId, (UserRow, Version)>,
    orgs: BTreeMap<OrgId, (OrgRow, Version)>,
    memberships: BTreeMap<(UserId, OrgId), (MembershipRow, Generation, Version)>,
}

impl Mirror {
    pub fn apply(&mut self, meta: &EventMeta, event: &ClerkEvent) {
        match event {
            ClerkEvent::UserUpserted(user) => self.upsert_user(
                UserRow::from_user(user),
                Version::full(user.updated_at, meta),
            ),
            ClerkEvent::UserDeleted(deleted) => self.delete_user(&deleted.id, meta),
            ClerkEvent::OrgUpserted(org) => {
                self.upsert_org(OrgRow::from_org(org), Version::full(org.updated_at, meta))
            }
            ClerkEvent::OrgDeleted(deleted) => {
                self.delete_org(&deleted.id, deleted.slug.clone(), meta)
            }
            ClerkEvent::MembershipUpserted(m) => self.upsert_membership(m, None, meta),
            ClerkEvent::MembershipDeleted(d) => {
                self.upsert_membership(&d.0, Some(meta.timestamp), meta)
            }
            ClerkEvent::Ignored { .. } => {}
        }
    }

    pub fn users(&self) -> BTreeMap<UserId, UserRow> {
        self.users
            .iter()
            .map(|(k, (row, _))| (k.clone(), row.clone()))
            .collect()
    }

    pub fn orgs(&self) -> BTreeMap<OrgId, OrgRow> {
        self.orgs
            .iter()
            .map(|(k, (row, _))| (k.clone(), row.clone()))
            .collect()
    }

    pub fn memberships(&self) -> BTreeMap<(UserId, OrgId), MembershipRow> {
        self.memberships
            .iter()
            .map(|(k, (row, _, _))| (k.clone(), row.clone()))
            .collect()
    }

    fn upsert_user(&mut self, mut incoming: UserRow, version: Version) {
        match self.users.get_mut(&incoming.clerk_id) {
            None => {
                self.users
                    .insert(incoming.clerk_id.clone(), (incoming, version));
            }
            Some((row, stored)) if version > *stored => {
                incoming.deleted_at = row.deleted_at;
                if incoming.deleted_at.is_some() {
                    incoming.erase();
                }
                *row = incoming;
                *stored = version;
            }
            Some(_) => {}
        }
    }

    fn delete_user(&mut self, id: &UserId, meta: &EventMeta) {
        self.place_user_deletion(id, meta.timestamp, Version::placeholder(meta));
        self.end_user(id, meta.timestamp);
    }

    /// A deletion of a user the table does not hold leaves a tombstone (a placeholder).
    fn place_user_deletion(&mut self, id: &UserId, at: Millis, version: Version) {
        self.users
            .entry(id.clone())
            .or_insert_with(|| (UserRow::placeholder(id, at), version));
    }

    /// The deletion itself: the earliest time kept, personal data erased, memberships ended.
    fn end_user(&mut self, id: &UserId, at: Millis) {
        if let Some((row, _)) = self.users.get_mut(id) {
            row.deleted_at = earliest(row.deleted_at, Some(at));
            row.erase();
        }
        self.end_memberships(|r| &r.user_id == id, at);
    }

    fn end_memberships(&mut self, of: impl Fn(&MembershipRow) -> bool, at: Millis) {
        for (row, _, _) in self.memberships.values_mut().filter(|(r, _, _)| of(r)) {
            row.deleted_at = earliest(row.deleted_at, Some(at));
        }
    }

    fn upsert_org(&mut self, mut incoming: OrgRow, version: Version) {
        match self.orgs.get_mut(&incoming.clerk_id) {
            None => {
                self.orgs
                    .insert(incoming.clerk_id.clone(), (incoming, version));
            }
            Some((row, stored)) if version > *stored => {
                incoming.deleted_at = row.deleted_at;
                *row = incoming;
                *stored = version;
            }
            Some(_) => {}
        }
    }

    fn delete_org(&mut self, id: &OrgId, slug: Option<String>, meta: &EventMeta) {
        self.place_org_deletion(id, slug, meta.timestamp, Version::placeholder(meta));
        self.end_org(id, meta.timestamp);
    }

    /// A deletion of an organization the table does not hold leaves a tombstone that keeps the
    /// slug the deletion names.
    fn place_org_deletion(
        &mut self,
        id: &OrgId,
        slug: Option<String>,
        at: Millis,
        version: Version,
    ) {
        self.orgs.entry(id.clone()).or_insert_with(|| {
            let row = OrgRow {
                clerk_id: id.clone(),
                name: None,
                slug,
                image_url: None,
                public_metadata: JsonText::empty_object(),
                created_at: at,
                updated_at: at,
                deleted_at: Some(at),
            };
            (row, version)
        });
    }

    fn end_org(&mut self, id: &OrgId, at: Millis) {
        if let Some((row, _)) = self.orgs.get_mut(id) {
            row.deleted_at = earliest(row.deleted_at, Some(at));
        }
        self.end_memberships(|r| &r.org_id == id, at);
    }

    fn upsert_membership(&mut self, m: &Membership, deleted_at: Option<Millis>, meta: &EventMeta) {
        self.upsert_org(
            OrgRow::from_org(&m.org),
            Version::stub(m.org.updated_at, meta),
        );
        self.upsert_user(
            UserRow::from_stub(&m.user, meta.timestamp),
            Version::stub(meta.timestamp, meta),
        );
        let generation = Generation {
            created_at: m.created_at,
            id: m.id.clone(),
        };
        let version = Version::full(m.updated_at, meta);
        self.put_membership(
            MembershipRow::from_membership(m),
            generation,
            version,
            deleted_at,
        );
    }

    /// A membership row under the generation and version rules; `deleted_at` is its own
    /// deletion, to which its user's and organization's are added.
    fn put_membership(
        &mut self,
        mut incoming: MembershipRow,
        generation: Generation,
        version: Version,
        deleted_at: Option<Millis>,
    ) {
        let cascaded = [
            deleted_at,
            self.orgs
                .get(&incoming.org_id)
                .and_then(|(o, _)| o.deleted_at),
            self.users
                .get(&incoming.user_id)
                .and_then(|(u, _)| u.deleted_at),
        ]
        .into_iter()
        .fold(None, earliest);
        incoming.deleted_at = cascaded;
        let key = (incoming.user_id.clone(), incoming.org_id.clone());
        match self.memberships.get_mut(&key) {
            None => {
                self.memberships
                    .insert(key, (incoming, generation, version));
            }
            Some(entry) if generation > entry.1 => *entry = (incoming, generation, version),
            Some((row, stored_generation, stored)) if generation == *stored_generation => {
                let deleted_at = earliest(row.deleted_at, cascaded);
                if version > *stored {
                    *row = incoming;
                    *stored = version;
                }
                row.deleted_at = deleted_at;
            }
            Some(_) => {}
        }
    }

    /// Writes a reduced batch as the worker's SQL does (`worker/src/apply/set.rs::write`): each
    /// table's winners and deletions' tombstones, then the deletions, then the memberships. The
    /// property test `reduce_matches_mirror` checks this equals applying the batch's events one
    /// by one, which is what makes writing a batch reduced correct.
    pub fn apply_reduced(&mut self, r: &Reduced) {
        for (id, w) in &r.users {
            self.upsert_user(w.row.clone(), w.version.clone());
            debug_assert_eq!(&w.row.clerk_id, id);
        }
        for (id, d) in &r.user_deletions {
            self.place_user_deletion(id, d.at, d.version.clone());
        }
        for w in r.orgs.values() {
            self.upsert_org(w.row.clone(), w.version.clone());
        }
        for (id, d) in &r.org_deletions {
            self.place_org_deletion(id, d.slug.clone(), d.at, d.version.clone());
        }
        for (id, d) in &r.user_deletions {
            self.end_user(id, d.at);
        }
        for (id, d) in &r.org_deletions {
            self.end_org(id, d.at);
        }
        for m in r.memberships.values() {
            self.put_membership(
                m.row.clone(),
                m.generation.clone(),
                m.version.clone(),
                m.deleted_at,
            );
        }
    }
}
