//! `GET /api/openapi.json` against the real router: every route `api::routes` registers is
//! described and every described operation is routed, and the documented example requests get
//! the documented answers from the real server.
//!
//! The route list is read from `src/api/mod.rs` itself (its `Route::new()` blocks, their
//! `.at(path, method(handler)…)` calls and the `.nest(prefix, block)` that mounts each), so a
//! route added there without a description here fails this test by name.

mod common;

use std::collections::BTreeSet;

use common::{AUTH_KEY, Server};
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// (method, OpenAPI path) of every route `api::routes` registers, catch-alls left out.
fn routed() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/api/mod.rs");
    let start = source
        .find("pub fn routes(")
        .expect("api::routes in src/api/mod.rs");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("end of api::routes")];
    let blocks = route_blocks(body);
    let mut routes = BTreeSet::new();
    for block in &blocks {
        let prefix = mount_prefix(block, &blocks);
        for (path, methods) in &block.routes {
            if path.ends_with("/*") {
                continue;
            }
            let full = format!("{}{}", prefix.trim_end_matches('/'), openapi_path(path));
            for method in methods {
                routes.insert((method.clone(), full.clone()));
            }
        }
    }
    routes
}

/// One `Route::new()…` chain: the variable it is bound to (none for the returned one), its
/// `.at` routes and the blocks it `.nest`s.
struct Block {
    name: Option<String>,
    routes: Vec<(String, Vec<String>)>,
    nests: Vec<(String, String)>,
}

fn route_blocks(body: &str) -> Vec<Block> {
    let starts: Vec<usize> = body.match_indices("Route::new()").map(|(i, _)| i).collect();
    let mut blocks = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(body.len());
        let line_start = body[..start].rfind('\n').map_or(0, |i| i + 1);
        let name = body[line_start..start]
            .trim()
            .strip_prefix("let ")
            .and_then(|rest| rest.split('=').next())
            .map(|name| name.trim().to_string());
        let text = &body[start..end];
        let calls = |method: &str| -> Vec<Vec<String>> {
            text.match_indices(method)
                .map(|(i, _)| call_args(&text[i + method.len()..]))
                .collect()
        };
        let routes = calls(".at(")
            .into_iter()
            .map(|args| (literal(&args[0]), methods_in(&args[1..].join(","))))
            .collect();
        let nests = calls(".nest(")
            .into_iter()
            .map(|args| (literal(&args[0]), args[1].trim().to_string()))
            .collect();
        blocks.push(Block {
            name,
            routes,
            nests,
        });
    }
    blocks
}

/// The top-level, comma-separated arguments of a call whose `(` was just consumed.
fn call_args(text: &str) -> Vec<String> {
    let (mut depth, mut args, mut current) = (0usize, Vec::new(), String::new());
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => break,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                args.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    args.push(current);
    args.retain(|a| !a.trim().is_empty());
    args
}

fn literal(arg: &str) -> String {
    let arg = arg.trim();
    assert!(
        arg.starts_with('"') && arg.ends_with('"'),
        "api::routes: expected a string literal path, found `{arg}`; teach tests/openapi.rs"
    );
    arg.trim_matches('"').to_string()
}

/// `get(a).post(b)` → ["get", "post"]: a method name right before `(`, not part of a longer
/// name or a path (`groups::delete)` is a handler, not a method).
fn methods_in(handlers: &str) -> Vec<String> {
    let bytes = handlers.as_bytes();
    METHODS
        .iter()
        .filter(|m| {
            handlers.match_indices(&format!("{m}(")).any(|(i, _)| {
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || b"_:".contains(&bytes[i - 1]))
            })
        })
        .map(|m| m.to_string())
        .collect()
}

/// Where a block is mounted: the prefixes of the `.nest` chain up to the returned block.
fn mount_prefix(block: &Block, blocks: &[Block]) -> String {
    let Some(name) = &block.name else {
        return String::new();
    };
    let (parent, prefix) = blocks
        .iter()
        .find_map(|b| {
            b.nests
                .iter()
                .find(|(_, target)| target == name || target.starts_with(&format!("{name}.")))
                .map(|(prefix, _)| (b, prefix.clone()))
        })
        .unwrap_or_else(|| panic!("api::routes: `{name}` is never nested"));
    format!(
        "{}{}",
        mount_prefix(parent, blocks).trim_end_matches('/'),
        prefix
    )
}

/// `/groups/:id` → `/groups/{id}`.
fn openapi_path(path: &str) -> String {
    path.split('/')
        .map(|part| match part.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let methods = item.as_object().expect("path item").keys();
            methods.map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

async fn document(server: &Server) -> Value {
    let resp = server
        .client
        .get(server.url("/api/openapi.json"))
        .bearer_auth(AUTH_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("a JSON document")
}

#[test]
fn the_route_reader_understands_api_routes() {
    let routes = routed();
    for expected in [
        ("get", "/health"),
        ("post", "/api/auth/login"),
        ("get", "/api/groups"),
        ("post", "/api/groups"),
        ("delete", "/api/groups/{id}/sub-groups/{sub_id}"),
        ("get", "/proxy/{group}/api/integration/info"),
    ] {
        let route = (expected.0.to_string(), expected.1.to_string());
        assert!(
            routes.contains(&route),
            "{expected:?} not read from api/mod.rs: {routes:?}"
        );
    }
    assert!(
        !routes
            .iter()
            .any(|(_, p)| p.contains('*') || p.contains("//")),
        "{routes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let server = Server::start().await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.0.3");
    let routes = routed();
    let described = documented(&doc);
    let undocumented: Vec<_> = routes.difference(&described).collect();
    assert!(
        undocumented.is_empty(),
        "routes in src/api/mod.rs missing from src/api/openapi.rs: {undocumented:?}"
    );
    let unrouted: Vec<_> = described.difference(&routes).collect();
    assert!(
        unrouted.is_empty(),
        "operations in src/api/openapi.rs that src/api/mod.rs does not route: {unrouted:?}"
    );

    // The live router agrees: no documented operation meets the catch-all or a 405.
    for (method, path) in &described {
        let url = server.url(
            &path
                .replace("{group}", "nosuchgroup")
                .replace("{id}", "999999")
                .replace("{sub_id}", "999998"),
        );
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = server
            .client
            .request(method.clone(), url)
            .bearer_auth(AUTH_KEY)
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !body.contains(r#"{"error":"Not Found"}"#),
            "{method} {path} is not routed: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_needs_auth_key_and_is_well_formed() {
    let server = Server::start().await;
    let anonymous = server
        .client
        .get(server.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let doc = document(&server).await;
    let ops = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values());
    let mut ids = BTreeSet::new();
    for op in ops {
        let id = op["operationId"].as_str().expect("operationId");
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        assert!(
            op["responses"]["200"].is_object(),
            "{id} documents no success"
        );
        let refs = op.to_string();
        for reference in refs.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            let pointer = target.trim_start_matches('#');
            assert!(
                !doc.pointer(pointer).unwrap_or(&Value::Null).is_null(),
                "{id}: dangling {target}"
            );
        }
    }
    // Structural slips a generator trips over: an enum that is not a list of values.
    let text = doc.to_string();
    assert!(!text.contains(r#""enum":null"#), "an enum is null");
    let schemas = doc["components"]["schemas"].to_string();
    for reference in schemas.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        assert!(
            doc.pointer(target.trim_start_matches('#')).is_some(),
            "dangling {target}"
        );
    }
}

/// The operation with this id: (method, path, operation).
fn operation<'a>(doc: &'a Value, id: &str) -> (String, String, &'a Value) {
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["operationId"] == id {
                return (method.clone(), path.clone(), op);
            }
        }
    }
    panic!("no operation {id}");
}

/// Sends operation `id` as documented: its path parameters' and body's examples.
async fn send_example(server: &Server, doc: &Value, id: &str, body: Option<Value>) -> (u16, Value) {
    let (method, mut path, op) = operation(doc, id);
    for param in op["parameters"].as_array().into_iter().flatten() {
        if param["in"] == "path" {
            let name = param["name"].as_str().unwrap();
            let value = param["example"].to_string().trim_matches('"').to_string();
            path = path.replace(&format!("{{{name}}}"), &value);
        }
    }
    let body = body.or_else(|| {
        op["requestBody"]["content"]["application/json"]["example"]
            .clone()
            .into()
    });
    let body = body.filter(|b| !b.is_null());
    server.api(&method.to_uppercase(), &path, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_examples_get_the_documented_answers() {
    let server = Server::start().await;
    let doc = document(&server).await;
    // In order: the create example makes group 1, which the later examples name.
    for id in [
        "createGroup",
        "listGroups",
        "listGroupsLight",
        "groupConfigOptions",
        "reorderGroups",
        "updateGroup",
        "copyGroup",
        "channelTypes",
        "addKeys",
        "listKeys",
        "getSettings",
        "updateSettings",
        "taskStatus",
        "groupStats",
    ] {
        let (status, body) = if id == "listKeys" {
            server.api("GET", "/api/keys?group_id=1", None).await
        } else {
            send_example(&server, &doc, id, None).await
        };
        let (_, _, op) = operation(&doc, id);
        assert_eq!(status, 200, "{id}: {body}");
        assert!(op["responses"]["200"].is_object(), "{id}");
        assert_eq!(body["code"], 0, "{id}: {body}");
        assert!(body["message"].is_string(), "{id}: {body}");
        let data_schema = &op["responses"]["200"]["content"]["application/json"]["schema"]["allOf"]
            [1]["properties"]["data"];
        assert_eq!(
            data_schema.is_null(),
            body.get("data").is_none(),
            "{id}: data documented as {data_schema}, got {body}"
        );
    }
    let copy = send_example(&server, &doc, "copyGroup", None).await;
    assert_eq!(copy.1["data"]["group"]["name"], "example-group_copy_2");

    // Refusals answer with a documented status and v1's error envelope.
    for (id, body, status, code) in [
        (
            "reorderGroups",
            json!({"items": []}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "copyGroup",
            json!({"copy_keys": "some"}),
            400,
            "VALIDATION_FAILED",
        ),
        (
            "createGroup",
            json!({"name": "example-group", "channel_type": "openai", "test_model": "m",
            "upstreams": [{"url": "http://127.0.0.1:9", "weight": 1}]}),
            409,
            "DUPLICATE_RESOURCE",
        ),
    ] {
        let got = send_example(&server, &doc, id, Some(body)).await;
        let (_, _, op) = operation(&doc, id);
        assert_eq!(
            (got.0, got.1["code"].as_str()),
            (status, Some(code)),
            "{id}: {}",
            got.1
        );
        assert!(
            op["responses"][status.to_string()].is_object(),
            "{id}: {status} is not documented"
        );
    }
    let login = send_example(&server, &doc, "login", None).await;
    assert_eq!(
        login.0, 401,
        "the example key is not the AUTH_KEY: {}",
        login.1
    );
    assert_eq!(login.1["success"], false);
    let login = send_example(&server, &doc, "login", Some(json!({"auth_key": AUTH_KEY}))).await;
    assert_eq!((login.0, &login.1["success"]), (200, &json!(true)));
}
