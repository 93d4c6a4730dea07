//! Clerk's JSON as it arrives. Lenient on purpose: unknown fields are ignored and most fields may
//! be absent or null, because Clerk adds and changes fields over time.

use serde::Deserialize;
use serde_json::Value;

/// The outer object of every Clerk webhook.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub event_type: String,
    /// Milliseconds since the epoch (seconds in one published example; see [`crate::Millis`]).
    #[serde(default)]
    pub timestamp: Option<i64>,
    pub data: serde_json::Map<String, Value>,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> crate::Result<Self> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let envelope: Self = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            crate::Error::NotAnEnvelope(crate::JsonProblem::new(e.path().to_string(), e.inner()))
        })?;
        // Trailing bytes after the object make it no envelope either.
        json.end()
            .map_err(|e| crate::Error::NotAnEnvelope(crate::JsonProblem::new(String::new(), &e)))?;
        Ok(envelope)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUser {
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub image_url: Option<String>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub email_addresses: Option<Vec<WireEmail>>,
    pub primary_email_address_id: Option<String>,
    #[serde(default)]
    pub public_metadata: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireEmail {
    pub id: String,
    pub email_address: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireDeleted {
    pub id: String,
    pub slug: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireOrg {
    pub id: String,
    pub name: Option<String>,
    pub slug: Option<String>,
    pub image_url: Option<String>,
    #[serde(default)]
    pub public_metadata: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMembership {
    pub id: String,
    pub role: String,
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    pub organization: WireOrg,
    pub public_user_data: WirePublicUserData,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WirePublicUserData {
    pub user_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
    pub identifier: Option<String>,
}
