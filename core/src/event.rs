use crate::fields::{strip_nul, Object, RawEnvelope};
use crate::{Error, EventId, JsonText, MembershipId, Millis, OrgId, Result, UserId};

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
    pub public_metadata: JsonText,
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
    pub public_metadata: JsonText,
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
    /// Only the fields the mirror stores are read (see `core/src/fields.rs`): whatever an end user
    /// put elsewhere, at whatever depth, cannot make an event undecodable.
    pub fn decode(event_id: EventId, body: &[u8]) -> Result<(EventMeta, ClerkEvent)> {
        let RawEnvelope {
            event_type,
            timestamp,
            data,
        } = RawEnvelope::parse(body)?;
        let timestamp = timestamp.map(Millis::from_clerk);
        let data = || Object::parse(&event_type, "data", data);
        let event = match event_type.as_str() {
            "user.created" | "user.updated" => ClerkEvent::UserUpserted(user(&data()?)?),
            "user.deleted" => ClerkEvent::UserDeleted(UserDeleted {
                id: UserId::parse(data()?.required::<String>("id")?)?,
            }),
            "organization.created" | "organization.updated" => {
                ClerkEvent::OrgUpserted(organization(&data()?)?)
            }
            "organization.deleted" => {
                let data = data()?;
                ClerkEvent::OrgDeleted(OrgDeleted {
                    id: OrgId::parse(data.required::<String>("id")?)?,
                    slug: data.text("slug")?,
                })
            }
            "organizationMembership.created" | "organizationMembership.updated" => {
                ClerkEvent::MembershipUpserted(membership(&data()?)?)
            }
            "organizationMembership.deleted" => {
                ClerkEvent::MembershipDeleted(MembershipDeleted(membership(&data()?)?))
            }
            _ => ClerkEvent::Ignored {
                event_type: event_type.clone(),
            },
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

impl ClerkEvent {
    /// The latest time this event would write into any row's version (its `updated_at`s, and
    /// the envelope time that dates deletions and stubs). One in the future would outrank every
    /// real update until then, so the worker refuses it past a bounded clock skew. `None` for
    /// an ignored type, which writes nothing.
    pub fn newest_time(&self, meta: &EventMeta) -> Option<Millis> {
        let carried = match self {
            ClerkEvent::UserUpserted(u) => Some(u.updated_at),
            ClerkEvent::OrgUpserted(o) => Some(o.updated_at),
            ClerkEvent::MembershipUpserted(m)
            | ClerkEvent::MembershipDeleted(MembershipDeleted(m)) => {
                Some(m.updated_at.max(m.org.updated_at))
            }
            ClerkEvent::UserDeleted(_) | ClerkEvent::OrgDeleted(_) => None,
            ClerkEvent::Ignored { .. } => return None,
        };
        Some(carried.map_or(meta.timestamp, |t| t.max(meta.timestamp)))
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

/// An address of `email_addresses`; its other fields are skipped.
#[derive(serde::Deserialize)]
struct EmailAddress {
    id: String,
    email_address: String,
}

fn user(data: &Object<'_>) -> Result<User> {
    let primary = data.get::<String>("primary_email_address_id")?;
    let email = match primary {
        Some(primary) => data
            .get::<Vec<EmailAddress>>("email_addresses")?
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.id == primary)
            .map(|e| strip_nul(e.email_address)),
        None => None,
    };
    Ok(User {
        id: UserId::parse(data.required::<String>("id")?)?,
        email,
        first_name: data.text("first_name")?,
        last_name: data.text("last_name")?,
        username: data.text("username")?,
        image_url: data.text("image_url")?,
        external_id: data.text("external_id")?,
        public_metadata: data.metadata("public_metadata"),
        created_at: Millis::from_clerk(data.required("created_at")?),
        updated_at: Millis::from_clerk(data.required("updated_at")?),
    })
}

fn organization(data: &Object<'_>) -> Result<Organization> {
    Ok(Organization {
        id: OrgId::parse(data.required::<String>("id")?)?,
        name: data.text("name")?,
        slug: data.text("slug")?,
        image_url: data.text("image_url")?,
        public_metadata: data.metadata("public_metadata"),
        created_at: Millis::from_clerk(data.required("created_at")?),
        updated_at: Millis::from_clerk(data.required("updated_at")?),
    })
}

fn stub(data: &Object<'_>) -> Result<UserStub> {
    Ok(UserStub {
        id: UserId::parse(data.required::<String>("user_id")?)?,
        first_name: data.text("first_name")?,
        last_name: data.text("last_name")?,
        image_url: data.text("image_url")?,
        identifier: data.text("identifier")?,
    })
}

fn normalise_role(role: String) -> String {
    match role.as_str() {
        "admin" => "org:admin".to_owned(),
        "basic_member" => "org:member".to_owned(),
        _ => role,
    }
}

fn membership(data: &Object<'_>) -> Result<Membership> {
    Ok(Membership {
        id: MembershipId::parse(data.required::<String>("id")?)?,
        user: stub(&data.object("public_user_data")?)?,
        org: organization(&data.object("organization")?)?,
        role: normalise_role(strip_nul(data.required::<String>("role")?)),
        permissions: data
            .get::<Vec<String>>("permissions")?
            .unwrap_or_default()
            .into_iter()
            .map(strip_nul)
            .collect(),
        created_at: Millis::from_clerk(data.required("created_at")?),
        updated_at: Millis::from_clerk(data.required("updated_at")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: serde_json::Value) -> (EventMeta, ClerkEvent) {
        let id = EventId::parse("msg_1".to_owned()).expect("an id");
        ClerkEvent::decode(id, body.to_string().as_bytes()).expect("decodes")
    }

    #[test]
    fn the_newest_time_of_an_event_is_the_latest_it_would_write_into_a_version() {
        let org = serde_json::json!({"id": "org_1", "object": "organization", "name": "A",
            "created_at": 1, "updated_at": 9_000_000_000_000_i64});
        let (meta, event) = decoded(serde_json::json!({
            "type": "organizationMembership.updated", "timestamp": 1_754_560_800_000_i64,
            "data": {"id": "orgmem_1", "role": "org:member", "created_at": 1,
                "updated_at": 1_754_560_800_000_i64, "organization": org,
                "public_user_data": {"user_id": "user_1"}}}));
        // The embedded organization's far-future `updated_at` would version its stub.
        assert_eq!(
            event.newest_time(&meta).map(Millis::get),
            Some(9_000_000_000_000)
        );
        let (meta, event) = decoded(serde_json::json!({
            "type": "user.deleted", "timestamp": 1_754_560_800_000_i64,
            "data": {"id": "user_1", "deleted": true}}));
        assert_eq!(
            event.newest_time(&meta).map(Millis::get),
            Some(1_754_560_800_000)
        );
        let (meta, event) = decoded(serde_json::json!({
            "type": "session.created", "timestamp": 9_999_999_999_999_i64, "data": {}}));
        assert_eq!(
            event.newest_time(&meta),
            None,
            "an ignored type writes nothing"
        );
    }
}
