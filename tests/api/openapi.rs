//! The OpenAPI document (`docs/openapi.json`, served at `GET /openapi.json`): valid
//! OpenAPI 3.1 by the OpenAPI Initiative's own JSON Schema, every schema in it valid
//! JSON Schema 2020-12, every operation answered as documented, and a checker that
//! refuses an answer of the wrong shape. (Every other test's answers go through the
//! same checker: `tests/common/openapi.rs`.)

use serde_json::{json, Value};

use crate::common::openapi::{contract, Contract};
use crate::common::*;

/// The OAS 3.1 schema (2022-10-07) as the OpenAPI Initiative publishes it at
/// spec.openapis.org (Apache-2.0), copied unchanged.
const OAS_SCHEMA: &str = include_str!("../fixtures/openapi-3.1-schema.json");

/// Every `$ref` in `v`, with where it is.
fn refs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(r) = x.as_str() {
                        out.push((at.clone(), r));
                    }
                } else {
                    refs(x, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let doc = contract().doc();
    let oas: Value = serde_json::from_str(OAS_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&oas).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["openapi"], "3.1.0");

    // Every $ref names something, and every schema is valid JSON Schema 2020-12.
    let mut found = Vec::new();
    refs(doc, String::new(), &mut found);
    assert!(found.len() > 100, "{}", found.len());
    for (at, r) in &found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {r}"));
        assert!(doc.pointer(pointer).is_some(), "{at}: {r} names nothing");
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        let errors: Vec<String> = jsonschema::draft202012::meta::validate(schema)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }

    // The validator is not a check that cannot fail: a broken document is refused.
    let mut broken = doc.clone();
    broken["paths"]["/healthz"]["get"]["responses"]["200"] = json!({"content": {}});
    assert!(
        !validator.is_valid(&broken),
        "a response without description passed"
    );
    let mut broken = doc.clone();
    broken["openapi"] = json!("3.0.3");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn the_server_serves_the_document_it_is_checked_against() {
    let s = Server::start(&[]);
    let r = s.get("/openapi.json", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.body, include_bytes!("../../docs/openapi.json"));
    assert_eq!(r.header("Content-Security-Policy"), None);
}

#[test]
fn every_documented_operation_is_answered_as_documented() {
    let s = Server::start(&[]);
    let bearer = s.token("openapi@example.com");
    let paths = contract().doc()["paths"].as_object().unwrap();
    let mut asked = 0;
    for (template, item) in paths {
        let path = template.replace("{id}", "00000000-0000-4000-8000-000000000000");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if method == "PARAMETERS" {
                continue;
            }
            let auth = format!("Bearer {bearer}");
            let mut headers = vec![("Authorization", auth.as_str())];
            if method == "OPTIONS" {
                headers = vec![
                    ("Origin", "http://elsewhere.example"),
                    ("Access-Control-Request-Method", "POST"),
                ];
            }
            let body = (method == "POST").then_some("{}");
            if body.is_some() {
                headers.push(("Content-Type", "application/json"));
            }
            // The checker inside `request` fails the test on an undocumented answer.
            let r = s.request(&method, &path, &headers, body);
            assert!(
                ![404, 405].contains(&r.status) || template.contains('{'),
                "{method} {path}: {}",
                r.status
            );
            asked += 1;
        }
    }
    assert!(asked >= 45, "{asked}");
}

fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Resp {
    Resp {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn the_checker_refuses_an_answer_of_the_wrong_shape() {
    let c = Contract::new(contract().doc().clone());
    let status = "/api/v1/me/mfa/status";
    let good = r#"{"totpEnabled":true,"backupCodesRemaining":10,"passkeysCount":0}"#;
    assert_eq!(c.check("GET", status, &resp(200, &[JSON], good)), Ok(()));
    for (answer, why) in [
        (
            resp(
                200,
                &[JSON],
                r#"{"totpEnabled":"yes","backupCodesRemaining":10,"passkeysCount":0}"#,
            ),
            "type",
        ),
        (
            resp(200, &[JSON], r#"{"totpEnabled":true,"passkeysCount":0}"#),
            "missing key",
        ),
        (
            resp(
                200,
                &[JSON],
                r#"{"totpEnabled":true,"backupCodesRemaining":10,"passkeysCount":0,"x":1}"#,
            ),
            "extra key",
        ),
        (
            resp(
                200,
                &[JSON],
                r#"{"totpEnabled":true,"backupCodesRemaining":11,"passkeysCount":0}"#,
            ),
            "range",
        ),
        (
            resp(200, &[("Content-Type", "text/plain")], good),
            "media type",
        ),
        (resp(200, &[JSON], "not json"), "not JSON"),
        (
            resp(418, &[JSON], r#"{"error":"x"}"#),
            "undocumented status",
        ),
        (
            resp(401, &[JSON], r#"{"error":"x"}"#),
            "401 without Lexik's code",
        ),
    ] {
        assert!(c.check("GET", status, &answer).is_err(), "{why} passed");
    }
    // Required headers, and bodies where none is documented.
    let too_many = r#"{"error":"Too many failed login attempts. Try again later."}"#;
    assert!(c
        .check("POST", "/api/auth", &resp(429, &[JSON], too_many))
        .is_err());
    assert_eq!(
        c.check(
            "POST",
            "/api/auth",
            &resp(429, &[JSON, ("Retry-After", "7")], too_many)
        ),
        Ok(())
    );
    assert!(c
        .check(
            "POST",
            "/api/auth",
            &resp(429, &[JSON, ("Retry-After", "soon")], too_many)
        )
        .is_err());
    let gone = "/api/v1/me/passkeys/00000000-0000-4000-8000-000000000000";
    assert_eq!(c.check("DELETE", gone, &resp(204, &[], "")), Ok(()));
    assert!(c.check("DELETE", gone, &resp(204, &[JSON], "{}")).is_err());
    // Formats: a date-time that is not one.
    let created =
        r#"{"id":"00000000-0000-4000-8000-000000000000","name":"Passkey","createdAt":"yesterday"}"#;
    assert!(c
        .check(
            "POST",
            "/api/v1/passkey/register",
            &resp(201, &[JSON], created)
        )
        .is_err());
    // Paths and methods the document does not have.
    let nowhere = r#"{"error":"No such endpoint."}"#;
    assert_eq!(
        c.check("GET", "/nowhere", &resp(404, &[JSON], nowhere)),
        Ok(())
    );
    assert!(c
        .check("GET", "/nowhere", &resp(200, &[JSON], "{}"))
        .is_err());
    assert!(
        c.check("PUT", status, &resp(405, &[JSON], nowhere))
            .is_err(),
        "405 without Allow"
    );
    assert_eq!(
        c.check(
            "PUT",
            status,
            &resp(405, &[JSON, ("Allow", "GET")], nowhere)
        ),
        Ok(())
    );
    assert!(c.check("PUT", status, &resp(200, &[JSON], good)).is_err());
}
