//! `docs/openapi.json` as a contract: every answer a test receives through
//! [`super::request`] is checked against the document's response for that path, method
//! and status — the status must be listed, its required headers present and valid, its
//! body of the listed media type and, for JSON, valid against the schema (JSON Schema
//! 2020-12, formats checked, by the `jsonschema` crate). So the document cannot drift
//! from what the server answers.
//!
//! What the document cannot say as an operation is said here, once: a path that is in
//! none of its path items answers the `NotFound` response (or, for a CORS preflight on
//! an `/api/` path, `Forbidden`), and a method a path item does not have answers
//! `MethodNotAllowed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

use super::Resp;

/// The document and its compiled schemas.
pub struct Contract {
    doc: Value,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The repository's document, read once.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let text = include_str!("../../docs/openapi.json");
        Contract::new(serde_json::from_str(text).expect("docs/openapi.json is not JSON"))
    })
}

impl Contract {
    pub fn new(doc: Value) -> Contract {
        Contract {
            doc,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Follows a local `$ref` (`#/components/...`), if `v` is one.
    fn resolve<'a>(&'a self, v: &'a Value) -> Result<&'a Value, String> {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r
                    .strip_prefix('#')
                    .ok_or_else(|| format!("non-local $ref {r}"))?;
                self.doc
                    .pointer(pointer)
                    .ok_or_else(|| format!("$ref {r} names nothing"))
            }
            None => Ok(v),
        }
    }

    /// The path item whose template matches `path` (a literal path before a template).
    fn path_item(&self, path: &str) -> Option<(&str, &Value)> {
        let paths = self.doc["paths"].as_object()?;
        if let Some((k, v)) = paths.get_key_value(path) {
            return Some((k, v));
        }
        let segments: Vec<&str> = path.split('/').collect();
        paths.iter().map(|(k, v)| (k.as_str(), v)).find(|(k, _)| {
            let t: Vec<&str> = k.split('/').collect();
            t.len() == segments.len()
                && t.iter().zip(&segments).all(|(t, s)| {
                    if t.starts_with('{') && t.ends_with('}') {
                        !s.is_empty()
                    } else {
                        t == s
                    }
                })
        })
    }

    /// A validator for `schema` (found at `key` in the document), with the document's
    /// components beside it so that its `$ref`s resolve.
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.compiled.lock().unwrap().get(key) {
            return Ok(v.clone());
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let v = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("{key}: the schema does not compile: {e}"))?;
        let v = Arc::new(v);
        self.compiled
            .lock()
            .unwrap()
            .insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// The documented response `response` for `resp`: required headers, media type,
    /// body.
    fn check_response(&self, at: &str, response: &Value, resp: &Resp) -> Result<(), String> {
        let response = self.resolve(response)?;
        if let Some(headers) = response.get("headers").and_then(Value::as_object) {
            for (name, h) in headers {
                let h = self.resolve(h)?;
                let Some(value) = resp.header(name) else {
                    if h["required"] == true {
                        return Err(format!("{at}: the required header {name} is missing"));
                    }
                    continue;
                };
                let as_json = value
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(value));
                let v = self.validator(&format!("{at} header {name}"), &h["schema"])?;
                if let Err(e) = v.validate(&as_json) {
                    return Err(format!("{at}: header {name}: {value:?}: {e}"));
                }
            }
        }
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return match resp.body.is_empty() {
                true => Ok(()),
                false => Err(format!(
                    "{at}: documented without a body, but one came: {}",
                    resp.text()
                )),
            };
        };
        let ctype = resp.header("Content-Type").unwrap_or("");
        let Some(media) = content.get(ctype) else {
            return Err(format!(
                "{at}: Content-Type {ctype:?} is not one of {:?}",
                content.keys().collect::<Vec<_>>()
            ));
        };
        if ctype != "application/json" {
            return Ok(());
        }
        let body: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("{at}: the body is not JSON ({e}): {}", resp.text()))?;
        let v = self.validator(at, &media["schema"])?;
        let errors: Vec<String> = v
            .iter_errors(&body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        match errors.is_empty() {
            true => Ok(()),
            false => Err(format!("{at}: {}\nbody: {body}", errors.join("; "))),
        }
    }

    /// Checks one answer to `method target`.
    pub fn check(&self, method: &str, target: &str, resp: &Resp) -> Result<(), String> {
        let path = target.split(['?', '#']).next().unwrap_or("");
        let status = resp.status.to_string();
        let responses = &self.doc["components"]["responses"];
        let Some((template, item)) = self.path_item(path) else {
            let preflight = method == "OPTIONS" && path.starts_with("/api/");
            let expected = match (resp.status, preflight) {
                (404, _) => "NotFound",
                (403, true) => "Forbidden",
                // A listed origin's preflight passes on any API path, so that its page
                // sees the 404 of a path mfad does not have rather than a CORS failure.
                (204, true) => "Preflight",
                _ => {
                    return Err(format!(
                        "{method} {path} is in no path item, so it must answer 404, not {status}"
                    ))
                }
            };
            return self.check_response(
                &format!("{method} {path} {status}"),
                &responses[expected],
                resp,
            );
        };
        let at = format!("{method} {template} {status}");
        let Some(operation) = item.get(method.to_ascii_lowercase()) else {
            if resp.status != 405 {
                return Err(format!(
                    "{at}: the method is not documented, so it must answer 405"
                ));
            }
            return self.check_response(&at, &responses["MethodNotAllowed"], resp);
        };
        let Some(response) = operation["responses"].get(&status) else {
            return Err(format!(
                "{at}: status {status} is not documented for this operation: {}",
                resp.text()
            ));
        };
        self.check_response(&at, response, resp)
    }
}
