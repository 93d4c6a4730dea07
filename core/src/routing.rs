use serde_json::{Map, Value};

use crate::{Envelope, Error, Result};

/// Which of the topics an event belongs to (its role; the names are in [`Topics`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TopicRole {
    Users,
    Organizations,
    Memberships,
    /// Types the sync does not mirror.
    Other,
}

impl TopicRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicRole::Users => "users",
            TopicRole::Organizations => "organizations",
            TopicRole::Memberships => "memberships",
            TopicRole::Other => "other",
        }
    }
}

/// Where ingest publishes an event: the stream and the record key that keeps one entity's
/// events in one partition, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub stream: TopicRole,
    /// `None` for [`TopicRole::Other`], whose events have no entity to order by.
    pub key: Option<String>,
}

fn str_at<'a>(data: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(data.get(*first)?, |v, p| v.get(p))
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Decides topic and key from the envelope alone, without decoding the whole event.
pub fn route(envelope: &Envelope) -> Result<Route> {
    let data = &envelope.data;
    decide(
        &envelope.event_type,
        Fields {
            id: str_at(data, &["id"]),
            org_id: str_at(data, &["organization", "id"]),
            user_id: str_at(data, &["public_user_data", "user_id"]),
        },
    )
}

/// The fields routing reads from `data`, blank ones already treated as absent.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Fields<'a> {
    pub id: Option<&'a str>,
    pub org_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// The routing decision, shared by [`route`] and [`crate::route_body`].
pub(crate) fn decide(event_type: &str, fields: Fields<'_>) -> Result<Route> {
    let family = event_type.split_once('.').map_or("", |(family, _)| family);
    let missing = |field| Error::MissingField {
        event_type: event_type.to_owned(),
        field,
    };
    let synced = matches!(
        event_type.rsplit_once('.').map(|(_, action)| action),
        Some("created" | "updated" | "deleted")
    );
    let (stream, key) = match family {
        "user" if synced => (
            TopicRole::Users,
            fields.id.ok_or_else(|| missing("data.id"))?.to_owned(),
        ),
        "organization" if synced => (
            TopicRole::Organizations,
            fields.id.ok_or_else(|| missing("data.id"))?.to_owned(),
        ),
        "organizationMembership" if synced => {
            let org = fields
                .org_id
                .ok_or_else(|| missing("data.organization.id"))?;
            let user = fields
                .user_id
                .ok_or_else(|| missing("data.public_user_data.user_id"))?;
            (TopicRole::Memberships, format!("{org}:{user}"))
        }
        _ => {
            return Ok(Route {
                stream: TopicRole::Other,
                key: None,
            })
        }
    };
    Ok(Route {
        stream,
        key: Some(key),
    })
}

/// Topic names for each stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub users: String,
    pub organizations: String,
    pub memberships: String,
    /// Events of types the sync ignores are published here only when it is set.
    pub other: Option<String>,
}

impl Topics {
    /// The default names, the one place they are written (flags, `dev` and tests use these).
    pub const DEFAULT_USERS: &'static str = "clerk.users";
    pub const DEFAULT_ORGANIZATIONS: &'static str = "clerk.organizations";
    pub const DEFAULT_MEMBERSHIPS: &'static str = "clerk.memberships";
    /// The dead-letter topic's default name.
    pub const DEFAULT_DLQ: &'static str = "clerk.dlq";
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            users: Self::DEFAULT_USERS.to_owned(),
            organizations: Self::DEFAULT_ORGANIZATIONS.to_owned(),
            memberships: Self::DEFAULT_MEMBERSHIPS.to_owned(),
            other: None,
        }
    }
}

impl Topics {
    pub fn for_stream(&self, stream: TopicRole) -> Option<&str> {
        match stream {
            TopicRole::Users => Some(&self.users),
            TopicRole::Organizations => Some(&self.organizations),
            TopicRole::Memberships => Some(&self.memberships),
            TopicRole::Other => self.other.as_deref(),
        }
    }

    /// The topics the worker consumes.
    pub fn synced(&self) -> Vec<String> {
        vec![
            self.users.clone(),
            self.organizations.clone(),
            self.memberships.clone(),
        ]
    }

    /// The same topics with a prefix: separate topic sets per environment or test.
    pub fn with_prefix(prefix: &str) -> Self {
        let base = Topics::default();
        Topics {
            users: format!("{prefix}{}", base.users),
            organizations: format!("{prefix}{}", base.organizations),
            memberships: format!("{prefix}{}", base.memberships),
            other: None,
        }
    }
}
