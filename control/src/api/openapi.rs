//! `GET /api/openapi.json`: an OpenAPI 3.0 description of every route `api::routes` registers,
//! with v1's paths, field names, envelope and error codes, for scripts and API tools. v1 has no
//! such document; the console never asks for it. It needs AUTH_KEY like the rest of `/api`.
//!
//! The document is written here as data, not derived from the handlers: keep it in step with
//! `routes` in `api/mod.rs`. `tests/openapi.rs` fails, naming the route, when a route is
//! registered without being described here or described without being registered.

use std::sync::LazyLock;

use poem::{Response, handler};
use serde_json::{Map, Value, json};

/// Built once: the document never changes while the process runs.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document_json().to_string());

#[handler]
pub async fn document() -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(DOCUMENT.as_str())
}

fn document_json() -> Value {
    let mut paths = Paths::default();
    system_paths(&mut paths);
    group_paths(&mut paths);
    aggregate_paths(&mut paths);
    key_paths(&mut paths);
    key_task_paths(&mut paths);
    settings_paths(&mut paths);
    log_paths(&mut paths);
    dashboard_paths(&mut paths);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "gpt-load-rs admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "GPT-Load v1's admin API (`/api`), as gpt-load-rs serves it. Every \
                success is HTTP 200 `{code: 0, message, data}`; every error is \
                `{code: \"<STRING_CODE>\", message}`. Messages, and setting names and \
                descriptions, follow `Accept-Language` (zh-CN by default, en-US, ja-JP).",
        },
        "servers": [{"url": "/"}],
        "security": [
            {"bearer": []}, {"queryKey": []}, {"apiKeyHeader": []}, {"googApiKeyHeader": []},
        ],
        "tags": [
            {"name": "system"}, {"name": "groups"}, {"name": "aggregates"}, {"name": "keys"},
            {"name": "tasks"}, {"name": "settings"}, {"name": "logs"}, {"name": "dashboard"},
        ],
        "paths": paths.0,
        "components": components(),
    })
}

// ---- building blocks ------------------------------------------------------------------------

/// `paths` of the document, filled one operation at a time.
#[derive(Default)]
struct Paths(Map<String, Value>);

impl Paths {
    fn add(&mut self, method: &str, path: &str, op: Op) {
        let item = self.0.entry(path.to_string()).or_insert_with(|| json!({}));
        item[method] = op.0;
    }
}

/// One operation, built up field by field.
struct Op(Value);

impl Op {
    /// A protected `/api` operation: AUTH_KEY, `Accept-Language`, 401 and 500 answers.
    fn new(id: &str, tag: &str, summary: &str) -> Op {
        Op(json!({
            "operationId": id,
            "tags": [tag],
            "summary": summary,
            "parameters": [{"$ref": "#/components/parameters/AcceptLanguage"}],
            "responses": {
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "500": {"$ref": "#/components/responses/ServerError"},
            },
        }))
    }

    /// No AUTH_KEY (login, health, integration info).
    fn public(mut self) -> Op {
        self.0["security"] = json!([]);
        if let Some(responses) = self.0["responses"].as_object_mut() {
            responses.remove("401");
        }
        self
    }

    fn describe(mut self, text: &str) -> Op {
        self.0["description"] = json!(text);
        self
    }

    /// A path parameter: an id, `example` 1.
    fn path_id(self, name: &str) -> Op {
        self.param(json!({
            "name": name, "in": "path", "required": true,
            "schema": {"type": "integer", "minimum": 1}, "example": 1,
        }))
    }

    fn query(self, name: &str, required: bool, schema: Value, text: &str) -> Op {
        self.param(json!({
            "name": name, "in": "query", "required": required, "schema": schema,
            "description": text,
        }))
    }

    fn param(mut self, param: Value) -> Op {
        if let Some(params) = self.0["parameters"].as_array_mut() {
            params.push(param);
        }
        self
    }

    /// A JSON request body of component `schema`, with an example the tests send.
    /// The body may be left out (copy: a bare POST means the defaults).
    fn body_optional(mut self) -> Op {
        self.0["requestBody"]["required"] = json!(false);
        self
    }

    fn body(mut self, schema: &str, example: Value) -> Op {
        self.0["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": schema_ref(schema), "example": example}},
        });
        self
    }

    /// HTTP 200 with the envelope around `data` (`Value::Null`: no `data`).
    fn ok(self, data: Value) -> Op {
        let schema = match data {
            Value::Null => schema_ref("Envelope"),
            data => json!({
                "allOf": [schema_ref("Envelope"), {"type": "object", "properties": {"data": data}}],
            }),
        };
        let content = json!({"application/json": {"schema": schema}});
        self.response(200, json!({"description": "success", "content": content}))
    }

    /// HTTP 200 with a file instead of the envelope.
    fn file(self, media_type: &str, text: &str) -> Op {
        let content = json!({media_type: {"schema": {"type": "string"}}});
        self.response(200, json!({"description": text, "content": content}))
    }

    /// v1's error answers by status: 400, 404, 409.
    fn errors(mut self, statuses: &[u16]) -> Op {
        for status in statuses {
            let name = match status {
                400 => "BadRequest",
                404 => "NotFound",
                409 => "Conflict",
                _ => "ServerError",
            };
            let reference = json!({"$ref": format!("#/components/responses/{name}")});
            self = self.response(*status, reference);
        }
        self
    }

    fn response(mut self, status: u16, response: Value) -> Op {
        self.0["responses"][status.to_string()] = response;
        self
    }
}

/// Every property of `properties` also `null`: in a create or update body v1 reads `null` as
/// "not given".
fn nullable(mut properties: Value) -> Value {
    if let Some(map) = properties.as_object_mut() {
        for schema in map.values_mut() {
            schema["nullable"] = json!(true);
            // OpenAPI 3.0: an enum must list null itself for `nullable` to allow it.
            if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
                values.push(Value::Null);
            }
        }
    }
    properties
}

/// v1's paging: a value that is not a number ≥ 1 reads as the default (1), not an error.
fn page_number() -> Value {
    json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}], "default": 1})
}

/// v1's page size: 15 unless a number ≥ 1 is given; more than 1000 reads as 1000.
fn page_size() -> Value {
    json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}], "default": 15})
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array_of(name: &str) -> Value {
    json!({"type": "array", "items": schema_ref(name)})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

fn string() -> Value {
    json!({"type": "string"})
}

/// An object schema; `required` is left out when empty (OpenAPI 3.0 refuses `[]`).
fn object(properties: Value, required: &[&str]) -> Value {
    let mut schema = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

// ---- operations -----------------------------------------------------------------------------

fn system_paths(paths: &mut Paths) {
    let health = Op::new("health", "system", "Liveness").public().response(
        200,
        json!({"description": "alive", "content": {
            "application/json": {"schema": schema_ref("Health")}}}),
    );
    paths.add("get", "/health", health);
    let login = Op::new("login", "system", "Check AUTH_KEY (nothing is issued)")
        .public()
        .describe(
            "v1's own shape, not the envelope: 200/401 `{success, message}`, 400 for bad JSON.",
        )
        .body("LoginInput", json!({"auth_key": "your-auth-key"}));
    let result = json!({"application/json": {"schema": schema_ref("LoginResult")}});
    let login = login
        .response(
            200,
            json!({"description": "accepted", "content": result.clone()}),
        )
        .response(
            400,
            json!({"description": "not JSON", "content": result.clone()}),
        )
        .response(401, json!({"description": "wrong key", "content": result}));
    paths.add("post", "/api/auth/login", login);
    let key = json!({"type": "string"});
    let info = Op::new(
        "integrationInfo",
        "system",
        "Groups a proxy key may use (New API import)",
    )
    .public()
    .query("key", true, key.clone(), "a proxy key (global or group)")
    .ok(array_of("IntegrationGroup"))
    .errors(&[400]);
    paths.add("get", "/api/integration/info", info);
    let one = Op::new(
        "groupIntegrationInfo",
        "system",
        "The same for one group, paths relative",
    )
    .public()
    .param(json!({"name": "group", "in": "path", "required": true,
            "schema": {"type": "string"}, "example": "my-group"}))
    .query("key", true, key, "a proxy key (global or of this group)")
    .ok(array_of("IntegrationGroup"))
    .errors(&[400, 404]);
    paths.add("get", "/proxy/{group}/api/integration/info", one);
    let openapi = Op::new("openapi", "system", "This document (not enveloped)").response(
        200,
        json!({"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}),
    );
    paths.add("get", "/api/openapi.json", openapi);
    let status = Op::new(
        "taskStatus",
        "tasks",
        "The one background task (import, delete, validation)",
    )
    .describe(
        "A finished task's record stays for 60 minutes; `{is_running: false}` when there is none.",
    )
    .ok(schema_ref("TaskStatus"));
    paths.add("get", "/api/tasks/status", status);
    let encryption = Op::new(
        "encryptionStatus",
        "system",
        "Whether the stored keys match ENCRYPTION_KEY",
    )
    .describe(
        "v1's check on a sample of 20 stored keys. `scenario_type`: `data_not_encrypted` \
        (ENCRYPTION_KEY set, keys in plain text), `key_not_configured` (keys encrypted, no \
        ENCRYPTION_KEY), `key_mismatch` (encrypted with another key), or empty. The remedy is \
        `gpt-load migrate-keys` with the server stopped.",
    )
    .ok(json!({
        "type": "object",
        "properties": {
            "has_mismatch": {"type": "boolean"},
            "scenario_type": {
                "type": "string",
                "enum": ["", "data_not_encrypted", "key_not_configured", "key_mismatch"],
            },
            "message": {"type": "string"},
            "suggestion": {"type": "string"},
        },
    }));
    paths.add("get", "/api/dashboard/encryption-status", encryption);
}

fn group_paths(paths: &mut Paths) {
    let create = Op::new("createGroup", "groups", "Create a group")
        .body("GroupInput", group_example())
        .ok(schema_ref("Group"))
        .errors(&[400, 409]);
    let list = Op::new(
        "listGroups",
        "groups",
        "Every group, sort ascending then newest first",
    )
    .ok(array_of("Group"));
    paths.add("post", "/api/groups", create);
    paths.add("get", "/api/groups", list);
    let light = Op::new(
        "listGroupsLight",
        "groups",
        "Every group's id, name and display name",
    )
    .ok(array_of("GroupListItem"));
    paths.add("get", "/api/groups/list", light);
    let options = Op::new(
        "groupConfigOptions",
        "groups",
        "Settings a group may override",
    )
    .describe("`default_value` is the current system value, typed; names localised.")
    .ok(array_of("ConfigOption"));
    paths.add("get", "/api/groups/config-options", options);
    let reorder = Op::new("reorderGroups", "groups", "Save the order of moved groups")
        .describe("Not empty, ids above 0, sorts 0 or more, no id twice, every id a group; one transaction.")
        .body("ReorderInput", json!({"items": [{"id": 1, "sort": 10}]}))
        .ok(Value::Null)
        .errors(&[400]);
    paths.add("put", "/api/groups/reorder", reorder);
    let update = Op::new(
        "updateGroup",
        "groups",
        "Change a group (only the fields sent)",
    )
    .path_id("id")
    .body("GroupUpdate", json!({"display_name": "Renamed", "sort": 5}))
    .ok(schema_ref("Group"))
    .errors(&[400, 404, 409]);
    let delete = Op::new(
        "deleteGroup",
        "groups",
        "Delete a group, its keys and memberships",
    )
    .path_id("id")
    .ok(Value::Null)
    .errors(&[400, 404]);
    paths.add("put", "/api/groups/{id}", update);
    paths.add("delete", "/api/groups/{id}", delete);
    let copy = Op::new("copyGroup", "groups", "Copy a group, optionally with its keys")
        .describe("New name `{name}_copy`, `_copy_2`…; keys are imported by the background task (409 when it is busy).")
        .path_id("id")
        .body("CopyInput", json!({"copy_keys": "none"}))
        .body_optional()
        .ok(object(json!({"group": schema_ref("Group")}), &["group"]))
        .errors(&[400, 404, 409]);
    paths.add("post", "/api/groups/{id}/copy", copy);
    let stats = Op::new("groupStats", "groups", "A group's keys and request counts")
        .describe("Request windows end with the current hour; `failure_rate` is a fraction rounded to 4 places.")
        .path_id("id")
        .ok(schema_ref("GroupStats"))
        .errors(&[400, 404]);
    paths.add("get", "/api/groups/{id}/stats", stats);
    let channels = Op::new("channelTypes", "groups", "Channel types a group may use")
        .ok(json!({"type": "array", "items": string()}));
    paths.add("get", "/api/channel-types", channels);
}

fn aggregate_paths(paths: &mut Paths) {
    let list = Op::new(
        "listSubGroups",
        "aggregates",
        "An aggregate's members, heaviest first",
    )
    .path_id("id")
    .ok(array_of("SubGroup"))
    .errors(&[400, 404]);
    let add = Op::new("addSubGroups", "aggregates", "Add members to an aggregate")
        .path_id("id")
        .body(
            "AddSubGroupsInput",
            json!({"sub_groups": [{"group_id": 2, "weight": 10}]}),
        )
        .ok(Value::Null)
        .errors(&[400, 404, 409]);
    paths.add("get", "/api/groups/{id}/sub-groups", list);
    paths.add("post", "/api/groups/{id}/sub-groups", add);
    let weight = Op::new(
        "setSubGroupWeight",
        "aggregates",
        "Change a member's weight",
    )
    .path_id("id")
    .path_id("sub_id")
    .body("WeightInput", json!({"weight": 20}))
    .ok(Value::Null)
    .errors(&[400, 404]);
    paths.add("put", "/api/groups/{id}/sub-groups/{sub_id}/weight", weight);
    let remove = Op::new("removeSubGroup", "aggregates", "Remove a member")
        .path_id("id")
        .path_id("sub_id")
        .ok(Value::Null)
        .errors(&[400, 404]);
    paths.add("delete", "/api/groups/{id}/sub-groups/{sub_id}", remove);
    let parents = Op::new(
        "parentAggregates",
        "aggregates",
        "The aggregates a group belongs to",
    )
    .path_id("id")
    .ok(array_of("ParentAggregate"))
    .errors(&[400, 404]);
    paths.add("get", "/api/groups/{id}/parent-aggregate-groups", parents);
}

fn key_paths(paths: &mut Paths) {
    let status = json!({"type": "string", "enum": ["active", "invalid"]});
    let list = Op::new(
        "listKeys",
        "keys",
        "A page of a group's keys, most recently used first",
    )
    .query("group_id", true, integer(), "the group")
    .query("status", false, status, "only keys with this status")
    .query("key_value", false, string(), "exactly this key")
    .query("page", false, page_number(), "page, from 1")
    .query("page_size", false, page_size(), "keys per page")
    .ok(schema_ref("KeyPage"))
    .errors(&[400, 404]);
    paths.add("get", "/api/keys", list);
    let keys_text = json!({"group_id": 1, "keys_text": "sk-example-1\nsk-example-2"});
    let add = Op::new("addKeys", "keys", "Add up to 5000 keys at once (v1: deprecated)")
        .describe("`keys_text`: a JSON array of strings, or keys separated by whitespace, commas or semicolons.")
        .body("KeysTextInput", keys_text.clone())
        .ok(schema_ref("AddKeysResult"))
        .errors(&[400, 404]);
    paths.add("post", "/api/keys/add-multiple", add);
    let delete = Op::new("deleteKeys", "keys", "Delete up to 5000 keys at once")
        .body("KeysTextInput", keys_text)
        .ok(schema_ref("DeleteKeysResult"))
        .errors(&[400, 404]);
    paths.add("post", "/api/keys/delete-multiple", delete);
}

/// The key calls besides list/add/delete: restore, clear, notes, export, and the background
/// task ones.
fn key_task_paths(paths: &mut Paths) {
    let one_key = json!({"group_id": 1, "keys_text": "sk-example-1"});
    let group = json!({"group_id": 1});
    let restore = Op::new(
        "restoreKeys",
        "keys",
        "Make up to 5000 invalid keys active again",
    )
    .body("KeysTextInput", one_key.clone())
    .ok(schema_ref("RestoreKeysResult"))
    .errors(&[400, 404]);
    paths.add("post", "/api/keys/restore-multiple", restore);
    for (path, id, summary) in [
        (
            "/api/keys/restore-all-invalid",
            "restoreAllInvalidKeys",
            "Make every invalid key active again",
        ),
        (
            "/api/keys/clear-all-invalid",
            "clearInvalidKeys",
            "Delete every invalid key",
        ),
        (
            "/api/keys/clear-all",
            "clearAllKeys",
            "Delete every key of the group",
        ),
    ] {
        let op = Op::new(id, "keys", summary)
            .describe("The message (also `data.message`) says how many keys, localised.")
            .body("GroupIdInput", group.clone())
            .ok(object(json!({"message": string()}), &["message"]))
            .errors(&[400, 404]);
        paths.add("post", path, op);
    }
    let notes = Op::new(
        "updateKeyNotes",
        "keys",
        "Set a key's notes (trimmed, at most 255 characters)",
    )
    .path_id("id")
    .body("NotesInput", json!({"notes": "team A"}))
    .ok(Value::Null)
    .errors(&[400, 404]);
    paths.add("put", "/api/keys/{id}/notes", notes);
    let status = json!({"type": "string", "enum": ["all", "active", "invalid"], "default": "all"});
    let export = Op::new(
        "exportKeys",
        "keys",
        "A group's keys as a text file, one per line",
    )
    .describe("A download link: AUTH_KEY may come as `?key=`.")
    .query("group_id", true, integer(), "the group")
    .query("status", false, status, "which keys")
    .file("text/plain", "`keys-{group}-{status}.txt`")
    .errors(&[400, 404]);
    paths.add("get", "/api/keys/export", export);
    let add = Op::new("addKeysAsync", "tasks", "Import any number of keys as the background task")
        .describe("JSON `{group_id, keys_text}`, or multipart with `group_id` and a `.txt` `file`. Answers the task's first status; 409 while another task runs.")
        .body("KeysTextInput", json!({"group_id": 1, "keys_text": "sk-example-3"}))
        .ok(schema_ref("TaskStatus"))
        .errors(&[400, 404, 409]);
    paths.add("post", "/api/keys/add-async", add);
    let delete = Op::new(
        "deleteKeysAsync",
        "tasks",
        "Delete any number of keys as the background task",
    )
    .body("KeysTextInput", one_key.clone())
    .ok(schema_ref("TaskStatus"))
    .errors(&[400, 404, 409]);
    paths.add("post", "/api/keys/delete-async", delete);
    let validate = Op::new("validateGroupKeys", "tasks", "Validate a group's keys as the background task")
        .describe("`status` picks active or invalid keys (all when left out); 409 while another task runs or when there is no key to check.")
        .body("ValidateGroupInput", json!({"group_id": 1, "status": "invalid"}))
        .ok(schema_ref("TaskStatus"))
        .errors(&[400, 404, 409]);
    paths.add("post", "/api/keys/validate-group", validate);
    let test = Op::new(
        "testKeys",
        "keys",
        "Validate up to 5000 keys of a group now",
    )
    .body("TestKeysInput", one_key)
    .ok(schema_ref("TestKeysResult"))
    .errors(&[400, 404]);
    paths.add("post", "/api/keys/test-multiple", test);
}

fn log_paths(paths: &mut Paths) {
    let list = log_filters(Op::new(
        "listLogs",
        "logs",
        "A filtered page of request logs, newest first",
    ))
    .query("page", false, page_number(), "page, from 1")
    .query("page_size", false, page_size(), "logs per page")
    .ok(schema_ref("LogPage"))
    .errors(&[400]);
    paths.add("get", "/api/logs", list);
    let export = log_filters(Op::new("exportLogKeys", "logs", "The keys behind the filtered logs, as CSV"))
        .describe("One row per key (its latest matching log): key_value, group_name, status_code. A download link: AUTH_KEY may come as `?key=`.")
        .file("text/csv", "`log_keys_export_{time}.csv`")
        .errors(&[400]);
    paths.add("get", "/api/logs/export", export);
}

/// The filters both log calls take, by v1's query names; an empty value is no filter.
fn log_filters(op: Op) -> Op {
    let text = string();
    let time = json!({"anyOf": [
        {"type": "string", "format": "date-time"}, {"type": "string", "maxLength": 0},
    ]});
    op.query(
        "parent_group_name",
        false,
        text.clone(),
        "aggregate name contains",
    )
    .query("group_name", false, text.clone(), "group name contains")
    .query("key_value", false, text.clone(), "exactly this key")
    .query("model", false, text.clone(), "model contains")
    .query(
        "is_success",
        false,
        json!({"type": "boolean"}),
        "success or failure",
    )
    .query(
        "request_type",
        false,
        json!({"type": "string", "enum": ["retry", "final"]}),
        "attempt kind",
    )
    .query("status_code", false, integer(), "exactly this status")
    .query(
        "source_ip",
        false,
        text.clone(),
        "exactly this client address",
    )
    .query("error_contains", false, text, "error message contains")
    .query("start_time", false, time.clone(), "from (RFC 3339)")
    .query("end_time", false, time, "until (RFC 3339)")
}

fn dashboard_paths(paths: &mut Paths) {
    let stats = Op::new(
        "dashboardStats",
        "dashboard",
        "Key counts, RPM, requests, error rate, warnings",
    )
    .ok(schema_ref("DashboardStats"));
    paths.add("get", "/api/dashboard/stats", stats);
    let chart = Op::new(
        "dashboardChart",
        "dashboard",
        "Successes and failures of the last 24 hours",
    )
    .query(
        "groupId",
        false,
        json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "maxLength": 0}]}),
        "one group (camelCase, as v1); every standard group when left out or empty",
    )
    .ok(schema_ref("Chart"))
    .errors(&[400]);
    paths.add("get", "/api/dashboard/chart", chart);
    let encryption = Op::new(
        "encryptionStatus",
        "dashboard",
        "Whether stored keys match ENCRYPTION_KEY",
    )
    .ok(schema_ref("EncryptionStatus"));
    paths.add("get", "/api/dashboard/encryption-status", encryption);
}

fn settings_paths(paths: &mut Paths) {
    let get = Op::new(
        "getSettings",
        "settings",
        "Every system setting by category, localised",
    )
    .ok(array_of("SettingCategory"));
    let put = Op::new("updateSettings", "settings", "Change system settings")
        .describe("A map of key to value (integers as JSON numbers, booleans, strings); unknown keys, values below the minimum and empty required values are refused.")
        .body("SettingsUpdate", json!({"max_retries": 3}))
        .ok(Value::Null)
        .errors(&[400]);
    paths.add("get", "/api/settings", get);
    paths.add("put", "/api/settings", put);
}

fn group_example() -> Value {
    json!({
        "name": "example-group", "display_name": "Example", "description": "",
        "channel_type": "openai", "test_model": "gpt-4.1-nano", "sort": 0,
        "upstreams": [{"url": "https://api.openai.com", "weight": 1}],
        "validation_endpoint": "", "param_overrides": {}, "model_redirect_rules": {},
        "model_redirect_strict": false, "config": {}, "header_rules": [], "proxy_keys": "",
    })
}

// ---- components -----------------------------------------------------------------------------

fn components() -> Value {
    let mut schemas = Map::new();
    for part in [
        envelope_schemas(),
        group_schemas(),
        key_schemas(),
        settings_schemas(),
        log_schemas(),
        dashboard_schemas(),
    ] {
        if let Value::Object(part) = part {
            schemas.extend(part);
        }
    }
    json!({
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "AUTH_KEY"},
            "queryKey": {"type": "apiKey", "in": "query", "name": "key", "description": "AUTH_KEY (download links)"},
            "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "googApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Goog-Api-Key"},
        },
        "parameters": {
            "AcceptLanguage": {
                "name": "Accept-Language", "in": "header", "required": false,
                "description": "First tag picks the language: en… → en-US, ja… → ja-JP, else zh-CN.",
                "schema": {"type": "string", "example": "en-US"},
            },
        },
        "responses": error_responses(),
        "schemas": schemas,
    })
}

fn error_responses() -> Value {
    let body = |text: &str, codes: &[&str]| {
        json!({"description": text, "content": {"application/json": {"schema": {
            "allOf": [schema_ref("Error"), {"properties": {"code": {"enum": codes}}}],
        }}}})
    };
    json!({
        "BadRequest": body("invalid input", &["VALIDATION_FAILED", "BAD_REQUEST", "INVALID_JSON"]),
        "Unauthorized": body("AUTH_KEY missing or wrong", &["UNAUTHORIZED"]),
        "NotFound": body("no such resource", &["NOT_FOUND"]),
        "Conflict": body("duplicate, or a task already runs", &["DUPLICATE_RESOURCE", "TASK_IN_PROGRESS"]),
        "ServerError": body("database or internal failure", &["DATABASE_ERROR", "INTERNAL_SERVER_ERROR"]),
    })
}

fn envelope_schemas() -> Value {
    json!({
        "Envelope": object(json!({
            "code": {"type": "integer", "enum": [0]},
            "message": {"type": "string", "description": "localised, e.g. 操作成功"},
        }), &["code", "message"]),
        "Error": object(json!({
            "code": {"type": "string"}, "message": {"type": "string"},
        }), &["code", "message"]),
        "Health": object(json!({
            "status": {"type": "string", "enum": ["healthy"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "uptime": {"type": "string", "example": "1h2m3.500s"},
        }), &["status", "timestamp", "uptime"]),
        "LoginInput": object(json!({"auth_key": string()}), &["auth_key"]),
        "LoginResult": object(json!({"success": {"type": "boolean"}, "message": string()}),
            &["success", "message"]),
        "IntegrationGroup": object(json!({
            "name": string(), "display_name": string(), "channel_type": string(),
            "path": {"type": "string", "description": "/proxy/{name}, or relative for one group"},
        }), &["name", "display_name", "channel_type", "path"]),
        "TaskStatus": object(json!({
            "task_type": {"type": "string", "enum": ["KEY_VALIDATION", "KEY_IMPORT", "KEY_DELETE"]},
            "is_running": {"type": "boolean"},
            "group_name": {"type": "string", "description": "the group's name (not display name)"},
            "processed": integer(), "total": integer(),
            "result": {"type": "object", "description": "validation {total_keys, valid_keys, invalid_keys}; import {added_count, ignored_count}; delete {deleted_count, ignored_count}"},
            "error": string(),
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": "string", "format": "date-time"},
            "duration_seconds": {"type": "number"},
        }), &["is_running"]),
    })
}

fn group_schemas() -> Value {
    let upstream = object(
        json!({"url": string(), "weight": {"type": "integer", "minimum": 0}}),
        &["url"],
    );
    let header_rule = object(
        json!({
            "key": string(), "value": string(), "action": {"type": "string", "enum": ["set", "remove"]},
        }),
        &["key", "action"],
    );
    let fields = json!({
        "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,100}$"},
        "display_name": string(), "description": string(),
        "group_type": {"type": "string", "enum": ["standard", "aggregate"]},
        "upstreams": {"type": "array", "items": schema_ref("Upstream")},
        "channel_type": string(), "sort": integer(), "test_model": string(),
        "validation_endpoint": {"type": "string", "description": "a path starting with /, or empty"},
        "param_overrides": {"type": "object"},
        "model_redirect_rules": {"type": "object", "additionalProperties": {"type": "string"}},
        "model_redirect_strict": {"type": "boolean"},
        "config": {"type": "object", "description": "overrides of the settings config-options lists"},
        "header_rules": {"type": "array", "items": schema_ref("HeaderRule")},
        "proxy_keys": {"type": "string", "description": "comma-separated"},
    });
    let mut group = fields.clone();
    for (name, schema) in [
        ("id", integer()),
        (
            "endpoint",
            json!({"type": "string", "description": "the group's full proxy URL"}),
        ),
        (
            "last_validated_at",
            json!({"type": "string", "format": "date-time", "nullable": true}),
        ),
        (
            "created_at",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "updated_at",
            json!({"type": "string", "format": "date-time"}),
        ),
    ] {
        group[name] = schema;
    }
    let stats = object(
        json!({
            "group": schema_ref("Group"), "weight": integer(), "total_keys": integer(),
            "active_keys": integer(), "invalid_keys": integer(),
        }),
        &["group", "weight"],
    );
    json!({
        "Upstream": upstream,
        "HeaderRule": header_rule,
        "Group": object(group, &["id", "name", "group_type", "channel_type"]),
        "GroupInput": object(nullable(fields.clone()), &["name", "channel_type"]),
        "GroupUpdate": object(nullable(fields), &[]),
        "GroupListItem": object(json!({"id": integer(), "name": string(), "display_name": string()}),
            &["id", "name", "display_name"]),
        "ConfigOption": object(json!({
            "key": string(), "name": string(), "description": string(),
            "default_value": {"description": "integer, boolean or string, as the setting's type"},
        }), &["key", "name", "description", "default_value"]),
        "ReorderInput": object(json!({"items": {"type": "array", "minItems": 1, "items": object(json!({
            "id": {"type": "integer", "minimum": 1}, "sort": {"type": "integer", "minimum": 0},
        }), &["id", "sort"])}}), &["items"]),
        "CopyInput": object(json!({"copy_keys": {
            "type": "string", "enum": ["none", "valid_only", "all"], "default": "all",
        }}), &[]),
        "SubGroup": stats,
        "AddSubGroupsInput": object(json!({"sub_groups": {"type": "array", "items": object(json!({
            "group_id": integer(), "weight": {"type": "integer", "minimum": 0, "maximum": 1000},
        }), &["group_id"])}}), &["sub_groups"]),
        "WeightInput": object(json!({"weight": {"type": "integer", "minimum": 0, "maximum": 1000}}),
            &["weight"]),
        "ParentAggregate": object(json!({
            "group_id": integer(), "name": string(), "display_name": string(), "weight": integer(),
        }), &["group_id", "name", "display_name", "weight"]),
    })
}

fn key_schemas() -> Value {
    json!({
        "Key": object(json!({
            "id": integer(), "key_value": {"type": "string", "description": "plain text"},
            "key_hash": string(), "group_id": integer(),
            "status": {"type": "string", "enum": ["active", "invalid"]},
            "notes": string(), "request_count": integer(), "failure_count": integer(),
            "last_used_at": {"type": "string", "format": "date-time", "nullable": true},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        }), &["id", "key_value", "status"]),
        "Pagination": object(json!({
            "page": integer(), "page_size": integer(), "total_items": integer(), "total_pages": integer(),
        }), &["page", "page_size", "total_items", "total_pages"]),
        "KeyPage": object(json!({"items": array_of("Key"), "pagination": schema_ref("Pagination")}),
            &["items", "pagination"]),
        "KeysTextInput": object(json!({"group_id": integer(), "keys_text": string()}),
            &["group_id", "keys_text"]),
        "AddKeysResult": object(json!({
            "added_count": integer(), "ignored_count": integer(), "total_in_group": integer(),
        }), &["added_count", "ignored_count", "total_in_group"]),
        "DeleteKeysResult": object(json!({
            "deleted_count": integer(), "ignored_count": integer(), "total_in_group": integer(),
        }), &["deleted_count", "ignored_count", "total_in_group"]),
        "RestoreKeysResult": object(json!({
            "restored_count": integer(), "ignored_count": integer(), "total_in_group": integer(),
        }), &["restored_count", "ignored_count", "total_in_group"]),
        "GroupIdInput": object(json!({"group_id": integer()}), &["group_id"]),
        "NotesInput": object(json!({"notes": {"type": "string", "maxLength": 255}}), &["notes"]),
        "ValidateGroupInput": object(json!({
            "group_id": integer(),
            "status": {"type": "string", "enum": ["active", "invalid", "all", ""]},
        }), &["group_id"]),
        "TestKeysInput": object(json!({
            "group_id": integer(), "keys_text": string(),
            "model": {"type": "string", "description": "ours: test with this model instead of test_model"},
        }), &["group_id", "keys_text"]),
        "TestKeysResult": object(json!({
            "results": {"type": "array", "items": object(json!({
                "key_value": string(), "is_valid": {"type": "boolean"}, "error": string(),
            }), &["key_value", "is_valid"])},
            "total_duration": {"type": "integer", "description": "milliseconds"},
        }), &["results", "total_duration"]),
    })
}

fn log_schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    json!({
        "Log": object(json!({
            "id": string(), "timestamp": time, "group_id": integer(), "group_name": string(),
            "parent_group_id": integer(), "parent_group_name": string(),
            "key_value": {"type": "string", "description": "plain text"}, "key_hash": string(),
            "model": string(), "is_success": {"type": "boolean"}, "source_ip": string(),
            "status_code": integer(), "request_path": string(), "duration_ms": integer(),
            "error_message": string(), "user_agent": string(),
            "request_type": {"type": "string", "enum": ["retry", "final"]},
            "upstream_addr": string(), "is_stream": {"type": "boolean"}, "request_body": string(),
            "request_id": {"type": "string", "description": "ours: the X-Request-Id"},
        }), &["id", "timestamp", "group_name", "is_success", "status_code"]),
        "LogPage": object(json!({"items": array_of("Log"), "pagination": schema_ref("Pagination")}),
            &["items", "pagination"]),
    })
}

fn dashboard_schemas() -> Value {
    let window = object(
        json!({
            "total_requests": integer(), "failed_requests": integer(),
            "failure_rate": {"type": "number", "description": "a fraction, 0..1"},
        }),
        &["total_requests", "failed_requests", "failure_rate"],
    );
    let card = object(
        json!({
            "value": {"type": "number"}, "sub_value": integer(), "sub_value_tip": string(),
            "trend": {"type": "number"}, "trend_is_growth": {"type": "boolean"},
        }),
        &["value", "trend", "trend_is_growth"],
    );
    let warning = object(
        json!({
            "type": string(), "message": string(),
            "severity": {"type": "string", "enum": ["high", "medium", "low"]}, "suggestion": string(),
        }),
        &["type", "message", "severity", "suggestion"],
    );
    let counts = object(
        json!({
            "total_keys": integer(), "active_keys": integer(), "invalid_keys": integer(),
        }),
        &["total_keys", "active_keys", "invalid_keys"],
    );
    let dataset = object(
        json!({
            "label": string(), "data": {"type": "array", "items": integer()}, "color": string(),
        }),
        &["label", "data", "color"],
    );
    json!({
        "RequestWindow": window,
        "GroupStats": object(json!({
            "key_stats": counts,
            "stats_24_hour": schema_ref("RequestWindow"),
            "stats_7_day": schema_ref("RequestWindow"),
            "stats_30_day": schema_ref("RequestWindow"),
        }), &["key_stats", "stats_24_hour", "stats_7_day", "stats_30_day"]),
        "StatCard": card,
        "DashboardStats": object(json!({
            "key_count": schema_ref("StatCard"), "rpm": schema_ref("StatCard"),
            "request_count": schema_ref("StatCard"), "error_rate": schema_ref("StatCard"),
            "security_warnings": {"type": "array", "items": warning},
        }), &["key_count", "rpm", "request_count", "error_rate", "security_warnings"]),
        "Chart": object(json!({
            "labels": {"type": "array", "items": {"type": "string", "format": "date-time"}},
            "datasets": {"type": "array", "items": dataset},
        }), &["labels", "datasets"]),
        "EncryptionStatus": object(json!({
            "has_mismatch": {"type": "boolean"},
            "scenario_type": {"type": "string",
                "enum": ["", "data_not_encrypted", "key_not_configured", "key_mismatch"]},
            "message": string(), "suggestion": string(),
        }), &["has_mismatch", "scenario_type", "message", "suggestion"]),
    })
}

fn settings_schemas() -> Value {
    json!({
        "Setting": object(json!({
            "key": string(), "name": string(), "value": {"description": "typed as `type`"},
            "type": {"type": "string", "enum": ["int", "bool", "string"]},
            "default_value": {"description": "typed as `type`"}, "description": string(),
            "category": string(), "min_value": integer(), "required": {"type": "boolean"},
        }), &["key", "name", "value", "type", "default_value", "description", "required"]),
        "SettingCategory": object(json!({"category_name": string(), "settings": array_of("Setting")}),
            &["category_name", "settings"]),
        "SettingsUpdate": {"type": "object", "additionalProperties": {
            "nullable": true, "oneOf": [integer(), {"type": "boolean"}, string()],
        }},
    })
}
