use std::fmt;

use crate::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Accepts any non-blank id; Clerk owns the format, we only refuse what cannot be a key.
            pub fn parse(raw: impl Into<String>) -> Result<Self> {
                let raw = raw.into();
                if raw.trim().is_empty() {
                    return Err(Error::EmptyId { field: $field });
                }
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A Clerk user id (`user_…`).
    UserId,
    "user id"
);
id_type!(
    /// A Clerk organization id (`org_…`).
    OrgId,
    "organization id"
);
id_type!(
    /// A Clerk organization membership id (`orgmem_…`).
    MembershipId,
    "membership id"
);
id_type!(
    /// The identity of one delivery: the Svix message id (`msg_…`), the same on every retry.
    EventId,
    "event id"
);
