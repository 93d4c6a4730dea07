use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::wire::{WireDeleted, WireMembership, WireOrg, WirePublicUserData, WireUser};
use crate::{Envelope, Error, EventId, MembershipId, Millis, OrgId, Result, UserId};

/// Where an event came from and when Clerk says it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// The Svix message id: the same on every retry and resend of one message.
    pub id: EventId,
    /// The envelope `timestamp`: for deletions, the time of the deletion.
    pub timestamp: Millis,
}

/// A Clerk webhook decoded into what it means for the synced tables.
#[derive(Clone, Debug, PartialEq)]
pub enum ClerkEvent {
    UserUpserted(User),
    UserDeleted(UserDeleted),
    OrgUpserted(Organization),
    OrgDeleted(OrgDeleted),
    MembershipUpserted(Membership),
    MembershipDeleted(MembershipDeleted),
    /// A type the sync does not mirror (sessions, invitations, billing…): acknowledged, unused.
    Ignored {
        event_type: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    /// The address whose id is `primary_email_address_id`, never simply the first one.
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub external_id: Option<String>,
    pub public_metadata: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl User {
    /// "first last", trimmed; `None` when both are empty.
    pub fn name(&self) -> Option<String> {
        full_name(self.first_name.as_deref(), self.last_name.as_deref())
    }
}

pub(crate) fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let joined = format!(
        "{} {}",
        first.unwrap_or("").trim(),
        last.unwrap_or("").trim()
    );
    let trimmed = joined.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDeleted {
    pub id: UserId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Organization {
    pub id: OrgId,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub image_url: Option<String>,
    pub public_metadata: Value,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgDeleted {
    pub id: OrgId,
    pub slug: Option<String>,
}

/// What a membership event tells about its user: enough for a stub row until `user.*` arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserStub {
    pub id: UserId,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
    /// The user's identifier (an email address, phone number or username).
    pub identifier: Option<String>,
}

impl UserStub {
    /// The identifier is used as the stub's email only when it looks like one.
    pub fn email(&self) -> Option<String> {
        self.identifier.clone().filter(|i| i.contains('@'))
    }

    pub fn name(&self) -> Option<String> {
        full_name(self.first_name.as_deref(), self.last_name.as_deref())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Membership {
    pub id: MembershipId,
    pub user: UserStub,
    /// The full organization object every membership event carries.
    pub org: Organization,
    /// `org:admin`, `org:member` or a custom `org:<key>`; the legacy `admin` and `basic_member`
    /// are normalised to `org:admin` and `org:member`.
    pub role: String,
    pub permissions: Vec<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// `organizationMembership.deleted`: the full membership; the deletion time is the envelope's.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipDeleted(pub Membership);

impl ClerkEvent {
    /// Decodes a verified body. `event_id` comes from the `svix-id` header (the body has none).
    pub fn decode(event_id: EventId, body: &[u8]) -> Result<(EventMeta, ClerkEvent)> {
        let envelope = Envelope::parse(body)?;
        Self::from_envelope(event_id, envelope)
    }

    pub fn from_envelope(event_id: EventId, envelope: Envelope) -> Result<(EventMeta, ClerkEvent)> {
        let Envelope {
            event_type,
            timestamp,
            data,
        } = envelope;
        let timestamp = timestamp.map(Millis::from_clerk);
        let event = match event_type.as_str() {
            "user.created" | "user.updated" => {
                ClerkEvent::UserUpserted(user(data_as::<WireUser>(&event_type, data)?)?)
            }
            "user.deleted" => {
                let wire = data_as::<WireDeleted>(&event_type, data)?;
                ClerkEvent::UserDeleted(UserDeleted {
                    id: UserId::parse(wire.id)?,
                })
            }
            "organization.created" | "organization.updated" => {
                ClerkEvent::OrgUpserted(organization(data_as::<WireOrg>(&event_type, data)?)?)
            }
            "organization.deleted" => {
                let wire = data_as::<WireDeleted>(&event_type, data)?;
                ClerkEvent::OrgDeleted(OrgDeleted {
                    id: OrgId::parse(wire.id)?,
                    slug: wire.slug,
                })
            }
            "organizationMembership.created" | "organizationMembership.updated" => {
                ClerkEvent::MembershipUpserted(membership(data_as(&event_type, data)?)?)
            }
            "organizationMembership.deleted" => ClerkEvent::MembershipDeleted(MembershipDeleted(
                membership(data_as(&event_type, data)?)?,
            )),
            _ => ClerkEvent::Ignored { event_type },
        };
        let needs_timestamp = !matches!(event, ClerkEvent::Ignored { .. });
        let timestamp = match timestamp {
            Some(t) => t,
            None if needs_timestamp => {
                return Err(Error::MissingField {
                    event_type: event_name(&event).to_owned(),
                    field: "timestamp",
                })
            }
            None => Millis::from_raw(0),
        };
        Ok((
            EventMeta {
                id: event_id,
                timestamp,
            },
            event,
        ))
    }
}

fn event_name(event: &ClerkEvent) -> &str {
    match event {
        ClerkEvent::UserUpserted(_) => "user.updated",
        ClerkEvent::UserDeleted(_) => "user.deleted",
        ClerkEvent::OrgUpserted(_) => "organization.updated",
        ClerkEvent::OrgDeleted(_) => "organization.deleted",
        ClerkEvent::MembershipUpserted(_) => "organizationMembership.updated",
        ClerkEvent::MembershipDeleted(_) => "organizationMembership.deleted",
        ClerkEvent::Ignored { event_type } => event_type,
    }
}

fn data_as<T: DeserializeOwned>(event_type: &str, data: Map<String, Value>) -> Result<T> {
    serde_path_to_error::deserialize(Value::Object(data)).map_err(|e| Error::InvalidData {
        event_type: event_type.to_owned(),
        source: crate::JsonProblem::new(format!("data.{}", e.path()), e.inner()),
    })
}

fn metadata(value: Option<Value>) -> Value {
    match value {
        Some(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

fn user(wire: WireUser) -> Result<User> {
    let email = wire
        .primary_email_address_id
        .as_deref()
        .and_then(|primary| {
            wire.email_addresses
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|e| e.id == primary)
                .map(|e| e.email_address.clone())
        });
    Ok(User {
        id: UserId::parse(wire.id)?,
        email,
        first_name: wire.first_name,
        last_name: wire.last_name,
        username: wire.username,
        image_url: wire.image_url,
        external_id: wire.external_id,
        public_metadata: metadata(wire.public_metadata),
        created_at: Millis::from_clerk(wire.created_at),
        updated_at: Millis::from_clerk(wire.updated_at),
    })
}

fn organization(wire: WireOrg) -> Result<Organization> {
    Ok(Organization {
        id: OrgId::parse(wire.id)?,
        name: wire.name,
        slug: wire.slug,
        image_url: wire.image_url,
        public_metadata: metadata(wire.public_metadata),
        created_at: Millis::from_clerk(wire.created_at),
        updated_at: Millis::from_clerk(wire.updated_at),
    })
}

fn stub(wire: WirePublicUserData) -> Result<UserStub> {
    Ok(UserStub {
        id: UserId::parse(wire.user_id)?,
        first_name: wire.first_name,
        last_name: wire.last_name,
        image_url: wire.image_url,
        identifier: wire.identifier,
    })
}

fn normalise_role(role: String) -> String {
    match role.as_str() {
        "admin" => "org:admin".to_owned(),
        "basic_member" => "org:member".to_owned(),
        _ => role,
    }
}

fn membership(wire: WireMembership) -> Result<Membership> {
    Ok(Membership {
        id: MembershipId::parse(wire.id)?,
        user: stub(wire.public_user_data)?,
        org: organization(wire.organization)?,
        role: normalise_role(wire.role),
        permissions: wire.permissions.unwrap_or_default(),
        created_at: Millis::from_clerk(wire.created_at),
        updated_at: Millis::from_clerk(wire.updated_at),
    })
}
