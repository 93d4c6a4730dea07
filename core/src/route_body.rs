//! Routing a webhook body without building a tree of it. Ingest needs three fields of a body it
//! otherwise passes on untouched; parsing all of it into a `serde_json::Value` was most of its
//! allocations. The fields are borrowed from the body (copied only when they hold escapes).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::routing::{decide, Fields};
use crate::{route, Envelope, Result, Route};

/// A body's event type and route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed<'a> {
    pub event_type: Cow<'a, str>,
    pub route: Route,
}

/// `route(&Envelope::parse(body)?)`, without the tree. Any body the quick read does not take
/// (a field of an unexpected type, a duplicate key, no JSON at all) goes through
/// [`Envelope::parse`] and [`route`], which decide it and word the error. The two agree on every
/// body a `serde_json::Value` can hold (a property test checks it); the quick read also takes
/// the few that one cannot (numbers beyond f64, lone UTF-16 surrogates in fields routing skips),
/// as the worker's decoder does.
pub fn route_body(body: &[u8]) -> Result<Routed<'_>> {
    if let Ok(head) = serde_json::from_slice::<Head<'_>>(body) {
        let data = &head.data;
        let fields = Fields {
            id: present(&data.id),
            org_id: data.organization.as_ref().and_then(|o| present(&o.value)),
            user_id: data
                .public_user_data
                .as_ref()
                .and_then(|u| present(&u.value)),
        };
        if let Ok(route) = decide(&head.event_type, fields) {
            return Ok(Routed {
                event_type: head.event_type,
                route,
            });
        }
    }
    let envelope = Envelope::parse(body)?;
    let route = route(&envelope)?;
    Ok(Routed {
        event_type: Cow::Owned(envelope.event_type),
        route,
    })
}

fn present<'a>(value: &'a Option<Cow<'_, str>>) -> Option<&'a str> {
    value.as_deref().filter(|s| !s.trim().is_empty())
}

/// The envelope, as [`Envelope`] declares it, with `data` read for routing only.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    // Read (not skipped) so that a body with a bad timestamp is left to `Envelope::parse`.
    #[serde(default)]
    #[allow(dead_code)]
    timestamp: Option<i64>,
    #[serde(borrow)]
    data: Data<'a>,
}

/// `data.id`, `data.organization.id`, `data.public_user_data.user_id`; the rest skipped.
#[derive(Default)]
struct Data<'a> {
    id: Option<Cow<'a, str>>,
    organization: Option<Field<'a, false>>,
    public_user_data: Option<Field<'a, true>>,
}

/// One string field of an object: `id` of `organization`, or `user_id` of `public_user_data`.
struct Field<'a, const USER_ID: bool> {
    value: Option<Cow<'a, str>>,
}

/// A string borrowed from the body when it holds no escapes (serde's own `Cow` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

fn text<'de: 'a, 'a, M: MapAccess<'de>>(map: &mut M) -> Result<Option<Cow<'a, str>>, M::Error> {
    Ok(map.next_value::<Option<Text<'a>>>()?.map(|t| t.0))
}

/// Objects only (a derived `Deserialize` would also take an array), the last of duplicate keys
/// winning, as in `serde_json::Map`; a field of another type than expected fails the quick read.
impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for DataVisitor<'a> {
            type Value = Data<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Data<'a>, M::Error> {
                let mut data = Data::default();
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.0.as_ref() {
                        "id" => data.id = text(&mut map)?,
                        "organization" => data.organization = map.next_value()?,
                        "public_user_data" => data.public_user_data = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(data)
            }
        }
        deserializer.deserialize_map(DataVisitor(PhantomData))
    }
}

impl<'de: 'a, 'a, const USER_ID: bool> Deserialize<'de> for Field<'a, USER_ID> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor<'a, const USER_ID: bool>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a, const USER_ID: bool> Visitor<'de> for FieldVisitor<'a, USER_ID> {
            type Value = Field<'a, USER_ID>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Field<'a, USER_ID>, M::Error> {
                let wanted = if USER_ID { "user_id" } else { "id" };
                let mut value = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.0 == wanted {
                        value = text(&mut map)?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Field { value })
            }
        }
        deserializer.deserialize_map(FieldVisitor::<USER_ID>(PhantomData))
    }
}
