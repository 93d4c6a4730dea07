//! Stored JSON (`public_metadata`) kept as its text from the webhook to the database: never
//! built into a tree, so its depth costs nothing here (no recursion to overflow, no limit of
//! serde_json's) and is bounded only by Postgres's `jsonb` parser.

use std::fmt;

use serde_json::Value;

/// A JSON object as text: validated by serde_json's scanner when the event was read, with every
/// `\u0000` escape removed (`jsonb` cannot hold NUL).
#[derive(Clone)]
pub struct JsonText(Box<str>);

impl JsonText {
    /// `{}`.
    pub fn empty_object() -> Self {
        JsonText("{}".into())
    }

    /// The text of a value serde_json's scanner accepted: an object as it came (NUL escapes
    /// removed), anything else as `{}`.
    pub(crate) fn from_scanned(raw: &str) -> Self {
        if raw.starts_with('{') {
            JsonText(without_nul_escapes(raw).into())
        } else {
            Self::empty_object()
        }
    }

    /// A tree written out (tests and the reference model).
    pub fn from_value(value: &Value) -> Self {
        match value {
            Value::Object(_) => JsonText(value.to_string().into()),
            _ => Self::empty_object(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// As a tree, when serde_json can build one (not deeper than 128 levels).
    pub fn to_value(&self) -> Option<Value> {
        serde_json::from_str(&self.0).ok()
    }
}

impl Default for JsonText {
    fn default() -> Self {
        Self::empty_object()
    }
}

/// Equal when they mean the same JSON (key order and spacing aside); texts too deep for a tree
/// compare as text.
impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        if self.0 == other.0 {
            return true;
        }
        match (self.to_value(), other.to_value()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `raw` (valid JSON) without `\u0000` escapes. Inside a string every backslash starts an escape,
/// so `\\u0000` (a backslash, then the text `u0000`) is kept.
fn without_nul_escapes(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains("\\u0000") {
        return raw.into();
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_string = !in_string;
                out.push(c);
            }
            '\\' if in_string => {
                if let Some(after) = chars.as_str().strip_prefix("u0000") {
                    chars = after.chars();
                } else {
                    out.push(c);
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_go_and_an_escaped_backslash_before_u0000_stays() {
        let cases = [
            (r#"{"a\u0000b":"c\u0000"}"#, r#"{"ab":"c"}"#),
            (r#"{"a":"\\u0000"}"#, r#"{"a":"\\u0000"}"#),
            (r#"{"a":"\\\u0000"}"#, r#"{"a":"\\"}"#),
            (r#"{"a":"\"\u0000\""}"#, r#"{"a":"\"\""}"#),
            (r#"{"a":[1,{"b":"é"}]}"#, r#"{"a":[1,{"b":"é"}]}"#),
        ];
        for (raw, expected) in cases {
            assert_eq!(JsonText::from_scanned(raw).as_str(), expected, "{raw}");
        }
        assert_eq!(JsonText::from_scanned("[1]").as_str(), "{}");
        assert_eq!(JsonText::from_scanned("null").as_str(), "{}");
    }

    #[test]
    fn the_same_json_in_another_order_or_spacing_is_equal() {
        let a = JsonText::from_scanned(r#"{"b": 2, "a": [1, 2]}"#);
        let b = JsonText::from_value(&serde_json::json!({"a": [1, 2], "b": 2}));
        assert_eq!(a, b);
        assert_ne!(a, JsonText::empty_object());
    }
}
