//! The OpenAI request fields cordon routes on, read without parsing the rest,
//! and the rewrite that sends the body on with the provider's model name.
//!
//! The body is split once into its top-level members, each kept as raw JSON
//! text; only `model` and `stream` are decoded. The forwarded body is the same
//! members in the same order, with `model` replaced (and, for streams,
//! `stream_options.include_usage` forced on so usage can be counted).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A request body split into top-level members.
pub struct Request<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The public model name asked for.
    pub model: Cow<'a, str>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Whether the client itself asked for the usage chunk of a stream.
    pub client_wants_usage: bool,
}

/// Why a body cannot be routed (a 400 `invalid_request`). The messages name
/// fields, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not a JSON object")]
    NotAnObject,
    #[error("request body has no `model` string")]
    MissingModel,
    #[error("`{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("`{0}` appears twice")]
    Duplicate(String),
}

// === impl Request ===

impl<'a> Request<'a> {
    /// Splits `body` into members and reads `model`, `stream` and
    /// `stream_options.include_usage`.
    pub fn parse(body: &'a [u8]) -> Result<Self, RequestError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let members = (&mut de)
            .deserialize_map(MembersVisitor)
            .map_err(|_| RequestError::NotAnObject)?;
        de.end().map_err(|_| RequestError::NotAnObject)?;

        let mut model = None;
        let mut stream = false;
        let mut client_wants_usage = false;
        let mut seen = [false; 3];
        for (k, v) in &members {
            let slot = match k.as_ref() {
                "model" => 0,
                "stream" => 1,
                "stream_options" => 2,
                _ => continue,
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(RequestError::Duplicate(k.to_string()));
            }
            match k.as_ref() {
                "model" => {
                    // Borrowed from the body unless it has escapes (serde
                    // always copies into a `Cow`).
                    let m: Cow<'a, str> = match serde_json::from_str::<&'a str>(v.get()) {
                        Ok(s) => Cow::Borrowed(s),
                        Err(_) => Cow::Owned(
                            serde_json::from_str::<String>(v.get())
                                .map_err(|_| RequestError::WrongType("model"))?,
                        ),
                    };
                    if m.is_empty() {
                        return Err(RequestError::MissingModel);
                    }
                    model = Some(m);
                }
                "stream" => {
                    stream = match v.get() {
                        "null" => false,
                        s => serde_json::from_str(s)
                            .map_err(|_| RequestError::WrongType("stream"))?,
                    }
                }
                "stream_options" => {
                    #[derive(serde::Deserialize)]
                    struct Opts {
                        include_usage: Option<bool>,
                    }
                    let o: Option<Opts> = serde_json::from_str(v.get())
                        .map_err(|_| RequestError::WrongType("stream_options"))?;
                    client_wants_usage = o.and_then(|o| o.include_usage).unwrap_or(false);
                }
                _ => {}
            }
        }
        Ok(Self {
            model: model.ok_or(RequestError::MissingModel)?,
            members,
            stream,
            client_wants_usage,
        })
    }

    /// The body to send upstream: every member as received, `model` set to
    /// `upstream_model`, and for streams `stream_options.include_usage = true`.
    pub fn forward_body(&self, upstream_model: &str) -> Vec<u8> {
        self.rewrite(upstream_model, true)
    }

    /// The body to send on unchanged but for `model` (e.g. an Anthropic
    /// Messages body to an Anthropic provider: no OpenAI `stream_options`).
    pub fn with_model(&self, upstream_model: &str) -> Vec<u8> {
        self.rewrite(upstream_model, false)
    }

    fn rewrite(&self, upstream_model: &str, openai_stream: bool) -> Vec<u8> {
        let usage = openai_stream && self.stream;
        let len: usize = self
            .members
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(len + upstream_model.len() + 48);
        out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for (k, v) in &self.members {
            sep(&mut out);
            write_json_string(&mut out, k);
            out.push(b':');
            match k.as_ref() {
                "model" => write_json_string(&mut out, upstream_model),
                "stream_options" if usage => {
                    out.extend_from_slice(&with_include_usage(v.get()));
                }
                _ => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        if usage && !self.members.iter().any(|(k, _)| k == "stream_options") {
            sep(&mut out);
            out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
        }
        out.push(b'}');
        out
    }
}

impl fmt::Debug for Request<'_> {
    /// Never prints the body: only the routing fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("model", &self.model)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// `stream_options` with `include_usage` set to true, other options kept.
fn with_include_usage(raw: &str) -> Vec<u8> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).unwrap_or_default();
    map.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    serde_json::to_vec(&map).unwrap_or_else(|_| br#"{"include_usage":true}"#.to_vec())
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(k) = map.next_key::<CowStr<'de>>()? {
            let v: &'de RawValue = map.next_value()?;
            out.push((k.0, v));
        }
        Ok(out)
    }
}

/// A key borrowed when it has no escapes, owned otherwise.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(body: &str, upstream: &str) -> serde_json::Value {
        let r = Request::parse(body.as_bytes()).unwrap();
        serde_json::from_slice(&r.forward_body(upstream)).unwrap()
    }

    #[test]
    fn reads_model_and_stream_and_keeps_everything_else() {
        let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \"there\""}],"temperature":0.2,"x":{"nested":{"model":"keep"}}}"#;
        let r = Request::parse(body.as_bytes()).unwrap();
        assert_eq!(r.model, "gpt-4o");
        assert!(!r.stream);
        let v = forwarded(body, "gpt-4o-2024-08-06");
        let mut expected: serde_json::Value = serde_json::from_str(body).unwrap();
        expected["model"] = "gpt-4o-2024-08-06".into();
        assert_eq!(v, expected);
    }

    #[test]
    fn streams_get_include_usage_without_losing_other_options() {
        let v = forwarded(r#"{"model":"m","stream":true}"#, "u");
        assert_eq!(v["stream_options"]["include_usage"], true);
        let body =
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"other":1}}"#;
        let r = Request::parse(body.as_bytes()).unwrap();
        assert!(!r.client_wants_usage);
        let v = forwarded(body, "u");
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true, "other": 1})
        );
        let r = Request::parse(
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(r.client_wants_usage);
        // Not a stream: stream_options untouched.
        let v = forwarded(
            r#"{"model":"m","stream_options":{"include_usage":false}}"#,
            "u",
        );
        assert_eq!(v["stream_options"]["include_usage"], false);
    }

    #[test]
    fn escaped_keys_and_models_round_trip() {
        let v = forwarded(r#"{"mo\u0064el":"a\u00e9","k\"":1}"#, "b\"c");
        assert_eq!(v["model"], "b\"c");
        assert_eq!(v["k\""], 1);
        // A model name with an escape is decoded; a plain one is borrowed
        // from the body.
        let r = Request::parse(br#"{"model":"a\u00e9\"b"}"#).unwrap();
        assert_eq!(r.model, "a\u{e9}\"b");
        let r = Request::parse(br#"{"model":"gpt-4o"}"#).unwrap();
        assert!(matches!(r.model, Cow::Borrowed("gpt-4o")));
    }

    #[test]
    fn bad_bodies_are_refused_without_echoing_content() {
        let cases: [(&str, RequestError); 7] = [
            ("", RequestError::NotAnObject),
            ("[1]", RequestError::NotAnObject),
            (r#"{"model":"m"} trailing"#, RequestError::NotAnObject),
            (r#"{"messages":[]}"#, RequestError::MissingModel),
            (r#"{"model":""}"#, RequestError::MissingModel),
            (r#"{"model":5}"#, RequestError::WrongType("model")),
            (
                r#"{"model":"m","stream":"yes"}"#,
                RequestError::WrongType("stream"),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(Request::parse(body.as_bytes()).err(), Some(want), "{body}");
        }
        let e = Request::parse(br#"{"model":"m","model":"n"}"#)
            .err()
            .unwrap();
        assert_eq!(e, RequestError::Duplicate("model".into()));
    }
}
