//! The rows of the three synced tables and the versions that order their changes: the types
//! the reference model ([`crate::mirror`]) and the batch reduction ([`crate::reduce`]) share,
//! in one home both import (neither imports the other's types).

use crate::{
    EventId, EventMeta, JsonText, Membership, MembershipId, Millis, OrgId, Organization, User,
    UserId, UserStub,
};

/// Where a row's fields came from. A higher rank always wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rank {
    /// Created by a deletion that arrived before anything else about the entity.
    Placeholder = -1,
    /// Built from the copy of a user or organization that a membership event carries.
    Stub = 0,
    /// Clerk's own object from a `user.*` or `organization.*` event.
    Full = 1,
}

impl Rank {
    pub fn as_i16(self) -> i16 {
        self as i16
    }
}

/// The version of a row's fields: compared field by field, in this order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub rank: Rank,
    /// Clerk's `updated_at` (for stubs and placeholders: the envelope timestamp).
    pub at: Millis,
    pub event_at: Millis,
    pub event_id: EventId,
}

impl Version {
    pub fn full(updated_at: Millis, meta: &EventMeta) -> Self {
        Self::new(Rank::Full, updated_at, meta)
    }

    pub fn stub(at: Millis, meta: &EventMeta) -> Self {
        Self::new(Rank::Stub, at, meta)
    }

    pub fn placeholder(meta: &EventMeta) -> Self {
        Self::new(Rank::Placeholder, meta.timestamp, meta)
    }

    pub(crate) fn new(rank: Rank, at: Millis, meta: &EventMeta) -> Self {
        Version {
            rank,
            at,
            event_at: meta.timestamp,
            event_id: meta.id.clone(),
        }
    }
}

/// A membership's generation: a re-join is a new membership with a later `created_at`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation {
    pub created_at: Millis,
    pub id: MembershipId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    pub clerk_id: UserId,
    pub email: Option<String>,
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub external_id: Option<String>,
    pub public_metadata: JsonText,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

impl UserRow {
    pub fn from_user(user: &User) -> Self {
        UserRow {
            clerk_id: user.id.clone(),
            email: user.email.clone(),
            name: user.name(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            username: user.username.clone(),
            image_url: user.image_url.clone(),
            external_id: user.external_id.clone(),
            public_metadata: user.public_metadata.clone(),
            created_at: user.created_at,
            updated_at: user.updated_at,
            deleted_at: None,
        }
    }

    /// A stub has no Clerk times of its own: the membership event's timestamp stands in.
    pub fn from_stub(stub: &UserStub, at: Millis) -> Self {
        UserRow {
            clerk_id: stub.id.clone(),
            email: stub.email(),
            name: stub.name(),
            first_name: stub.first_name.clone(),
            last_name: stub.last_name.clone(),
            username: None,
            image_url: stub.image_url.clone(),
            external_id: None,
            public_metadata: JsonText::empty_object(),
            created_at: at,
            updated_at: at,
            deleted_at: None,
        }
    }

    pub(crate) fn placeholder(id: &UserId, at: Millis) -> Self {
        let mut row = UserRow::from_stub(
            &UserStub {
                id: id.clone(),
                first_name: None,
                last_name: None,
                image_url: None,
                identifier: None,
            },
            at,
        );
        row.deleted_at = Some(at);
        row
    }

    /// Erasure on deletion: only ids, times and the tombstone remain.
    pub(crate) fn erase(&mut self) {
        self.email = None;
        self.name = None;
        self.first_name = None;
        self.last_name = None;
        self.username = None;
        self.image_url = None;
        self.external_id = None;
        self.public_metadata = JsonText::empty_object();
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrgRow {
    pub clerk_id: OrgId,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub image_url: Option<String>,
    pub public_metadata: JsonText,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

impl OrgRow {
    pub fn from_org(org: &Organization) -> Self {
        OrgRow {
            clerk_id: org.id.clone(),
            name: org.name.clone(),
            slug: org.slug.clone(),
            image_url: org.image_url.clone(),
            public_metadata: org.public_metadata.clone(),
            created_at: org.created_at,
            updated_at: org.updated_at,
            deleted_at: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MembershipRow {
    pub clerk_id: MembershipId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub role: String,
    pub permissions: Vec<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

impl MembershipRow {
    pub fn from_membership(m: &Membership) -> Self {
        MembershipRow {
            clerk_id: m.id.clone(),
            user_id: m.user.id.clone(),
            org_id: m.org.id.clone(),
            role: m.role.clone(),
            permissions: m.permissions.clone(),
            created_at: m.created_at,
            updated_at: m.updated_at,
            deleted_at: None,
        }
    }
}

pub(crate) fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
