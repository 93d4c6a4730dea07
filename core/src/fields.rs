//! Reading the worker's events without building a tree of what the mirror does not store.
//!
//! `data` is read one level at a time: an object is a map from each key to its value's raw text
//! (the last of duplicate keys winning, as in routing), and only the fields the mirror stores are
//! deserialized. Everything else — `unsafe_metadata`, which a signed-in end user writes from the
//! browser, `private_metadata`, fields Clerk adds — is skipped by serde_json's scanner, which has
//! no recursion limit and costs one pass over the bytes whatever their depth.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{Error, JsonProblem, Result};

/// The outer object of a webhook, `data` left unread.
#[derive(Deserialize)]
pub(crate) struct RawEnvelope<'a> {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(borrow)]
    pub data: &'a RawValue,
}

impl<'a> RawEnvelope<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self> {
        let mut json = serde_json::Deserializer::from_slice(body);
        let envelope: Self = serde_path_to_error::deserialize(&mut json)
            .map_err(|e| Error::NotAnEnvelope(JsonProblem::new(e.path().to_string(), e.inner())))?;
        json.end()
            .map_err(|e| Error::NotAnEnvelope(JsonProblem::new(String::new(), &e)))?;
        if !envelope.data.get().starts_with('{') {
            return Err(Error::NotAnEnvelope(JsonProblem {
                path: "data".to_owned(),
                problem: "wrong type or value, expected a map".to_owned(),
            }));
        }
        Ok(envelope)
    }
}

/// One JSON object: its keys and their values' raw text, for reading fields by name.
pub(crate) struct Object<'a> {
    event_type: &'a str,
    /// Where the object is, e.g. `data.organization`, for errors.
    path: String,
    fields: HashMap<String, &'a RawValue>,
}

impl<'a> Object<'a> {
    /// `raw` as an object; `path` names it in errors.
    pub fn parse(event_type: &'a str, path: &str, raw: &'a RawValue) -> Result<Self> {
        let fields = serde_json::from_str::<HashMap<String, &'a RawValue>>(raw.get())
            .map_err(|e| invalid(event_type, path.to_owned(), &e))?;
        Ok(Object {
            event_type,
            path: path.to_owned(),
            fields,
        })
    }

    fn field_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// A field, absent or `null` as `None`. Errors name the field, and the path inside it only
    /// through names the mirror's own types declare (never a key from the body).
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let Some(raw) = self.fields.get(name) else {
            return Ok(None);
        };
        let mut json = serde_json::Deserializer::from_str(raw.get());
        serde_path_to_error::deserialize::<_, Option<T>>(&mut json).map_err(|e| {
            let inner = e.path().to_string();
            let path = if inner.is_empty() || inner == "." {
                self.field_path(name)
            } else {
                format!("{}.{inner}", self.field_path(name))
            };
            invalid(self.event_type, path, e.inner())
        })
    }

    /// A field that must be there.
    pub fn required<T: DeserializeOwned>(&self, name: &'static str) -> Result<T> {
        self.get(name)?.ok_or_else(|| {
            invalid_problem(
                self.event_type,
                JsonProblem {
                    path: self.field_path(name),
                    problem: format!("missing field `{name}`"),
                },
            )
        })
    }

    /// A text field an end user may have typed: NUL characters removed (Postgres's `text`
    /// cannot hold them) and lone UTF-16 surrogates, which no Rust string can hold, replaced by
    /// U+FFFD. Any other type than a string or `null` is an error.
    pub fn text(&self, name: &str) -> Result<Option<String>> {
        match self.fields.get(name).map(|raw| raw.get()) {
            None | Some("null") => Ok(None),
            Some(raw) => match lenient_string(raw) {
                Some(text) => Ok(Some(text)),
                None => Ok(self.get::<String>(name)?.map(strip_nul)),
            },
        }
    }

    /// A nested object.
    pub fn object(&self, name: &'static str) -> Result<Object<'a>> {
        match self.fields.get(name) {
            Some(raw) => Object::parse(self.event_type, &self.field_path(name), raw),
            None => Err(invalid_problem(
                self.event_type,
                JsonProblem {
                    path: self.field_path(name),
                    problem: format!("missing field `{name}`"),
                },
            )),
        }
    }

    /// Stored JSON (`public_metadata`) as its text ([`crate::JsonText`]): an object, anything
    /// else as `{}`, NUL escapes removed. Never built into a tree, so any depth costs one scan.
    pub fn metadata(&self, name: &str) -> crate::JsonText {
        match self.fields.get(name) {
            Some(raw) => crate::JsonText::from_scanned(raw.get()),
            None => crate::JsonText::empty_object(),
        }
    }
}

fn invalid(event_type: &str, path: String, e: &serde_json::Error) -> Error {
    invalid_problem(event_type, JsonProblem::new(path, e))
}

fn invalid_problem(event_type: &str, source: JsonProblem) -> Error {
    Error::InvalidData {
        event_type: event_type.to_owned(),
        source,
    }
}

/// `s` without NUL characters, which Postgres's text types refuse.
pub fn strip_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s
    }
}

/// The text of a JSON string literal (`raw` as serde_json's scanner accepted it), NUL removed and
/// lone surrogates replaced by U+FFFD; `None` when `raw` is no string literal.
fn lenient_string(raw: &str) -> Option<String> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c != '\0' {
                out.push(c);
            }
            continue;
        }
        let unescaped = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate: a pair only if a low one follows at once.
                    let mut ahead = chars.clone();
                    let low = (ahead.next() == Some('\\') && ahead.next() == Some('u'))
                        .then(|| hex4(&mut ahead))
                        .flatten()
                        .filter(|low| (0xDC00..0xE000).contains(low));
                    match low {
                        Some(low) => {
                            chars = ahead;
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                        }
                        None => '\u{FFFD}',
                    }
                } else {
                    char::from_u32(unit).unwrap_or('\u{FFFD}')
                }
            }
            _ => return None,
        };
        if unescaped != '\0' {
            out.push(unescaped);
        }
    }
    Some(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut unit = 0;
    for _ in 0..4 {
        unit = unit * 16 + chars.next()?.to_digit(16)?;
    }
    Some(unit)
}

#[cfg(test)]
mod tests {
    use super::lenient_string;

    #[test]
    fn nul_is_removed_from_stored_json_strings_and_keys() {
        let body = format!(
            r#"{{"type":"user.updated","timestamp":1,"data":{{"id":"user_1","created_at":1,"updated_at":1,"public_metadata":{}}}}}"#,
            r#"{"ro\u0000le":["ad\u0000min"]}"#
        );
        let (_, event) =
            crate::ClerkEvent::decode(crate::EventId::parse("m").expect("id"), body.as_bytes())
                .expect("decodes");
        let crate::ClerkEvent::UserUpserted(user) = event else {
            panic!("{event:?}")
        };
        assert_eq!(
            user.public_metadata.to_value(),
            Some(serde_json::json!({"role": ["admin"]}))
        );
    }

    #[test]
    fn a_typed_name_keeps_every_character_but_nul_and_lone_surrogates_become_replacement_characters(
    ) {
        let cases = [
            (r#""Ada""#, "Ada"),
            (r#""A\u0000da""#, "Ada"),
            (r#""A\nb\t\"q\" \\ \/""#, "A\nb\t\"q\" \\ /"),
            (r#""\ud83d\ude00""#, "\u{1F600}"),
            (r#""x\ud800y""#, "x\u{FFFD}y"),
            (r#""x\udc00""#, "x\u{FFFD}"),
            (r#""\ud800\u0041""#, "\u{FFFD}A"),
            (r#""\u202eevil\u001b[31m""#, "\u{202E}evil\u{1b}[31m"),
            (r#""é€""#, "é€"),
        ];
        for (raw, text) in cases {
            assert_eq!(lenient_string(raw).as_deref(), Some(text), "{raw}");
        }
        assert_eq!(lenient_string("12"), None);
        assert_eq!(lenient_string(r#""\x""#), None);
    }
}
