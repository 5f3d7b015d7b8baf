//! Input messages → pairs, and pairs + model outputs → output messages.

use serde_json::{Map, Value};

/// Where a field is read from: a top-level name (`text`) or a JSON pointer
/// (`/pair/left`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A field name, or a JSON pointer when it starts with `/`.
    pub fn new(spec: &str) -> Self {
        Self(spec.to_string())
    }

    /// The value at this path in `object`.
    pub fn get<'a>(&self, object: &'a Value) -> Option<&'a Value> {
        if self.0.starts_with('/') {
            object.pointer(&self.0)
        } else {
            object.get(&self.0)
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which fields hold the texts and the id.
#[derive(Debug, Clone)]
pub struct FieldMapping {
    pub a: FieldPath,
    pub b: FieldPath,
    pub id: FieldPath,
}

/// A message that parsed: its JSON object and the two texts.
#[derive(Debug, Clone, PartialEq)]
pub struct PairMessage {
    pub object: Map<String, Value>,
    pub a: String,
    pub b: String,
}

/// Why a message goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error("empty payload")]
    EmptyPayload,
    #[error("payload is not valid UTF-8 (byte {0})")]
    NotUtf8(usize),
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload is JSON but not an object")]
    NotAnObject,
    #[error("field {0} is missing")]
    MissingField(String),
    #[error("field {0} is not a string")]
    NotAString(String),
}

impl BadMessage {
    /// A short machine-readable reason code, sent as the `crossflow.error.code` header.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyPayload => "empty_payload",
            Self::NotUtf8(_) => "not_utf8",
            Self::InvalidJson(_) => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingField(_) => "missing_field",
            Self::NotAString(_) => "not_a_string",
        }
    }
}

/// Parses one payload.
pub fn parse(payload: Option<&[u8]>, fields: &FieldMapping) -> Result<PairMessage, BadMessage> {
    let bytes = payload
        .filter(|p| !p.is_empty())
        .ok_or(BadMessage::EmptyPayload)?;
    let text = std::str::from_utf8(bytes).map_err(|e| BadMessage::NotUtf8(e.valid_up_to()))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| BadMessage::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(BadMessage::NotAnObject);
    }
    let text_field = |path: &FieldPath| match path.get(&value) {
        None | Some(Value::Null) => Err(BadMessage::MissingField(path.to_string())),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(BadMessage::NotAString(path.to_string())),
    };
    let (a, b) = (text_field(&fields.a)?, text_field(&fields.b)?);
    let Value::Object(object) = value else {
        return Err(BadMessage::NotAnObject);
    };
    Ok(PairMessage { object, a, b })
}

/// Model outputs for one pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrichment {
    pub cross_score: Option<f32>,
    pub nli_label: Option<String>,
    pub nli_probs: Option<Vec<(String, f32)>>,
    pub is_paraphrase: Option<bool>,
}

/// The output payload: the input object plus the enrichment fields.
pub fn render(mut message: Map<String, Value>, enrichment: &Enrichment) -> Vec<u8> {
    let number = |x: f32| serde_json::Number::from_f64(x as f64).map_or(Value::Null, Value::Number);
    if let Some(score) = enrichment.cross_score {
        message.insert("cross_score".into(), number(score));
    }
    if let Some(label) = &enrichment.nli_label {
        message.insert("nli_label".into(), Value::String(label.clone()));
    }
    if let Some(probs) = &enrichment.nli_probs {
        let probs = probs
            .iter()
            .map(|(label, p)| (label.clone(), number(*p)))
            .collect();
        message.insert("nli_probs".into(), Value::Object(probs));
    }
    if let Some(flag) = enrichment.is_paraphrase {
        message.insert("is_paraphrase".into(), Value::Bool(flag));
    }
    serde_json::to_vec(&Value::Object(message)).expect("a JSON object always serializes")
}

/// The id of a message (`None` when absent): the output key of a keyless input.
pub fn message_id(message: &PairMessage, fields: &FieldMapping) -> Option<String> {
    let value = Value::Object(message.object.clone());
    fields.id.get(&value).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> FieldMapping {
        FieldMapping {
            a: FieldPath::new("a"),
            b: FieldPath::new("/pair/b"),
            id: FieldPath::new("id"),
        }
    }

    #[test]
    fn fields_are_names_or_pointers() {
        let parsed = parse(
            Some(br#"{"id": 7, "a": "x", "pair": {"b": "y"}}"#),
            &fields(),
        )
        .unwrap();
        assert_eq!((parsed.a.as_str(), parsed.b.as_str()), ("x", "y"));
        assert_eq!(message_id(&parsed, &fields()).as_deref(), Some("7"));
    }

    #[test]
    fn bad_payloads_have_reasons() {
        let f = fields();
        assert_eq!(parse(None, &f), Err(BadMessage::EmptyPayload));
        assert_eq!(parse(Some(b""), &f), Err(BadMessage::EmptyPayload));
        assert_eq!(parse(Some(b"\xff\xfe"), &f), Err(BadMessage::NotUtf8(0)));
        assert!(matches!(
            parse(Some(b"{nope"), &f),
            Err(BadMessage::InvalidJson(_))
        ));
        assert_eq!(parse(Some(b"[1, 2]"), &f), Err(BadMessage::NotAnObject));
        assert_eq!(
            parse(Some(br#"{"a": 1, "pair": {"b": "y"}}"#), &f),
            Err(BadMessage::NotAString("a".into()))
        );
        assert_eq!(
            parse(Some(br#"{"a": "x"}"#), &f),
            Err(BadMessage::MissingField("/pair/b".into()))
        );
        assert_eq!(
            parse(Some(br#"{"a": null, "pair": {"b": "y"}}"#), &f)
                .unwrap_err()
                .code(),
            "missing_field"
        );
    }

    #[test]
    fn output_keeps_the_input_and_adds_fields() {
        let parsed = parse(
            Some(br#"{"id": "k", "a": "x", "pair": {"b": "y"}, "extra": [1]}"#),
            &fields(),
        )
        .unwrap();
        let enrichment = Enrichment {
            cross_score: Some(0.5),
            nli_label: Some("entailment".into()),
            nli_probs: Some(vec![("entailment".into(), 0.75), ("neutral".into(), 0.25)]),
            is_paraphrase: Some(true),
        };
        let out: Value = serde_json::from_slice(&render(parsed.object, &enrichment)).unwrap();
        assert_eq!(out["extra"], serde_json::json!([1]));
        assert_eq!(out["cross_score"], 0.5);
        assert_eq!(out["nli_probs"]["neutral"], 0.25);
        assert_eq!(out["is_paraphrase"], true);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Reads a parse result: a pair, or a dead-letter reason with a code.
        fn outcome(payload: &[u8]) -> String {
            match parse(Some(payload), &fields()) {
                Ok(pair) => {
                    let out = render(pair.object, &Enrichment::default());
                    serde_json::from_slice::<Value>(&out).expect("output is JSON");
                    "pair".into()
                }
                Err(bad) => format!("{}: {bad}", bad.code()),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn arbitrary_bytes_give_a_pair_or_a_reason(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
                outcome(&payload);
            }

            #[test]
            fn any_unicode_texts_and_ids_round_trip(a in "\\PC*", b in "\\PC*", id in any::<i64>()) {
                let message = serde_json::json!({"id": id, "a": a, "pair": {"b": b}});
                let parsed = parse(Some(&serde_json::to_vec(&message).unwrap()), &fields()).unwrap();
                prop_assert_eq!((parsed.a, parsed.b), (a, b));
            }

            #[test]
            fn deep_nesting_is_a_reason_not_a_stack_overflow(depth in 1usize..100_000) {
                let payload = format!(r#"{{"a": "x", "pair": {{"b": "y"}}, "deep": {}{}}}"#, "[".repeat(depth), "]".repeat(depth));
                let result = outcome(payload.as_bytes());
                prop_assert!(result == "pair" || result.starts_with("invalid_json"), "{}", result);
            }
        }

        #[test]
        fn a_huge_field_is_a_pair() {
            let message = serde_json::json!({"a": "word ".repeat(2_000_000), "pair": {"b": "y"}});
            assert_eq!(outcome(&serde_json::to_vec(&message).unwrap()), "pair");
        }
    }
}
