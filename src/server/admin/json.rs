//! JSON in and out of the admin API: the error shape, and reading request
//! fields so that every mistake names the field it is about.
//!
//! Bodies are read into a `serde_json::Value` and taken apart field by field
//! rather than derived, because serde's messages name the field only when it
//! is missing ("invalid type: integer, expected a string" says nothing of
//! where), and every admin error must say which field is wrong.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::super::Body;
use super::super::exchange::full;

/// An admin API error: status, a stable code, a message, and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// `400 invalid_request` about one field.
    pub(crate) fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
            field: Some(field),
        }
    }

    pub(crate) fn not_found(what: impl Into<String>, field: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: what.into(),
            field,
        }
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid admin token: `Authorization: Bearer cdnadm_…`",
        )
    }

    pub(crate) fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this admin token's role may not do this",
        )
    }

    /// The store failed: nothing was done; a retry may succeed.
    pub(crate) fn store(e: &crate::store::StoreError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("{e}"),
        )
    }

    pub(crate) fn into_response(self) -> hyper::Response<Body> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(f) = self.field {
            error["field"] = Value::from(f);
        }
        respond(self.status, &json!({ "error": error }))
    }
}

/// A JSON response; `cache-control: no-store`, since some carry a secret
/// shown once (a new key).
pub(crate) fn respond(status: StatusCode, body: &Value) -> hyper::Response<Body> {
    let mut resp = hyper::Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A request body's top-level object, read field by field.
#[derive(Debug)]
pub(crate) struct Fields(Map<String, Value>);

impl Fields {
    /// Parses `body` as a JSON object whose keys are all in `known`. An empty
    /// body is an empty object.
    pub(crate) fn parse(body: &[u8], known: &[&str]) -> Result<Fields, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields(Map::new()));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let Value::Object(map) = value else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be a JSON object",
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "unknown field `{}`; known fields: {}",
                    printable(unknown),
                    known.join(", ")
                ),
            ));
        }
        Ok(Fields(map))
    }

    /// A required non-empty string.
    pub(crate) fn string(&self, name: &'static str) -> Result<&str, ApiError> {
        self.opt_string(name)?
            .ok_or_else(|| ApiError::field(name, format!("`{name}` is required")))
    }

    /// An optional non-empty string (`null` is absent).
    pub(crate) fn opt_string(&self, name: &'static str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => {
                Err(ApiError::field(name, format!("`{name}` must not be empty")))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::field(
                name,
                format!("`{name}` must be a string, not {}", kind(other)),
            )),
        }
    }

    /// An optional non-negative integer.
    pub(crate) fn opt_u64(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                ApiError::field(name, format!("`{name}` must be a non-negative integer"))
            }),
            Some(other) => Err(ApiError::field(
                name,
                format!("`{name}` must be an integer, not {}", kind(other)),
            )),
        }
    }

    /// An optional list of non-empty strings.
    pub(crate) fn opt_strings(&self, name: &'static str) -> Result<Option<Vec<String>>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(ApiError::field(
                        name,
                        format!("`{name}` must be a list of non-empty strings"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(ApiError::field(
                name,
                format!("`{name}` must be a list of strings, not {}", kind(other)),
            )),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A client-sent name, safe to repeat in a message: at most 64 characters,
/// control characters replaced.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mistake_names_its_field() {
        let f = Fields::parse(
            br#"{"tenant": 5, "models": ["a", 3], "rpm": -1}"#,
            &["tenant", "models", "rpm"],
        )
        .unwrap();
        assert_eq!(f.string("tenant").unwrap_err().field, Some("tenant"));
        assert_eq!(f.opt_strings("models").unwrap_err().field, Some("models"));
        assert_eq!(f.opt_u64("rpm").unwrap_err().field, Some("rpm"));
        let f = Fields::parse(b"{}", &["model"]).unwrap();
        let e = f.string("model").unwrap_err();
        assert_eq!(
            (e.status, e.field),
            (StatusCode::BAD_REQUEST, Some("model"))
        );
    }

    #[test]
    fn unknown_fields_non_objects_and_bad_json_are_refused() {
        let e = Fields::parse(br#"{"tenat": "a"}"#, &["tenant"]).unwrap_err();
        assert!(e.message.contains("`tenat`"), "{}", e.message);
        assert!(Fields::parse(b"[1]", &[]).is_err());
        assert!(Fields::parse(b"{", &[]).is_err());
        assert!(Fields::parse(b"  ", &["a"]).is_ok());
    }
}
