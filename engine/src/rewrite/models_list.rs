//! Model-list rewriting (spec §2.8): v1 intercepts every group's model listing and makes it
//! agree with the group's redirect rules, so clients that pick a model from the list pick one the
//! group accepts. Strict groups list exactly their source models; loose groups list the
//! upstream's models plus any source model the upstream does not know.
//!
//! This module only transforms an already decoded body; reading, decoding (see `decode`) and
//! answering are the caller's.

use serde_json::{Map, Value, json};

use super::ModelRedirect;

/// Whether v1 intercepts this request's response: GET and path ends with `/v1/models` or
/// `/v1beta/models` or contains `/v1beta/openai/v1/models`.
pub fn is_models_request(method: &str, path: &str) -> bool {
    method == "GET"
        && (path.ends_with("/v1/models")
            || path.ends_with("/v1beta/models")
            || path.contains("/v1beta/openai/v1/models"))
}

/// Rewrites a successful upstream model list as v1 does: OpenAI shape (`data` array) and Gemini
/// native shape (`models` array, checked first), strict (only configured source models) or loose
/// (upstream list + missing sources; Gemini: merged only on the first page, i.e. when the request
/// query has no `pageToken`). `body` is already decoded. Returns the new JSON bytes, or `None`
/// when the body is not a recognised list (then the caller passes the original through).
///
/// A recognised list that comes out unchanged (no rules, or a later Gemini page in loose mode)
/// is returned as the same bytes, not re-serialised. Changed lists are re-serialised with
/// serde_json's sorted keys, which is also the order Go's encoder writes a map in.
pub fn rewrite_models_list(
    body: &[u8],
    rules: &ModelRedirect,
    request_query: &str,
) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut list)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    let shape = ListShape::of(&list)?;
    if rules.is_empty() {
        return Some(body.to_vec());
    }
    let changed = match (shape, rules.strict()) {
        (ListShape::OpenAi, true) => {
            list.insert("data".into(), Value::Array(openai_entries(rules).collect()));
            true
        }
        (ListShape::OpenAi, false) => merge(&mut list, "data", openai_entries(rules), |m| {
            entry_name(m, "id").map(str::to_string)
        }),
        (ListShape::Gemini, true) => {
            list.insert(
                "models".into(),
                Value::Array(gemini_entries(rules).collect()),
            );
            list.remove("nextPageToken");
            true
        }
        (ListShape::Gemini, false) if is_first_page(request_query) => {
            merge(&mut list, "models", gemini_entries(rules), |m| {
                entry_name(m, "name").map(|n| n.strip_prefix("models/").unwrap_or(n).to_string())
            })
        }
        (ListShape::Gemini, false) => false,
    };
    if !changed {
        return Some(body.to_vec());
    }
    serde_json::to_vec(&Value::Object(list)).ok()
}

/// The two list formats v1 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListShape {
    /// `{"object":"list","data":[{"id":…},…]}`: OpenAI, Anthropic and compatible APIs.
    OpenAi,
    /// `{"models":[{"name":"models/…",…}],"nextPageToken":…}`: Gemini's native API.
    Gemini,
}

impl ListShape {
    fn of(list: &Map<String, Value>) -> Option<Self> {
        if list.get("models").is_some_and(Value::is_array) {
            Some(ListShape::Gemini)
        } else if list.get("data").is_some_and(Value::is_array) {
            Some(ListShape::OpenAi)
        } else {
            None
        }
    }
}

/// A configured source model as OpenAI lists one.
fn openai_entries(rules: &ModelRedirect) -> impl Iterator<Item = Value> + '_ {
    rules
        .sources()
        .map(|source| json!({"id": source, "object": "model", "created": 0, "owned_by": "system"}))
}

/// A configured source model as Gemini lists one; `displayName` is the source as configured
/// (what v1 writes, even when the source already carries the `models/` prefix).
fn gemini_entries(rules: &ModelRedirect) -> impl Iterator<Item = Value> + '_ {
    rules.sources().map(|source| {
        let name = if source.starts_with("models/") {
            source.to_string()
        } else {
            format!("models/{source}")
        };
        json!({
            "name": name,
            "displayName": source,
            "supportedGenerationMethods": ["generateContent"],
        })
    })
}

/// Appends to `list[field]` the configured entries whose key (by `key_of`) no upstream entry
/// has; returns whether any was added. The upstream's own entries keep their order and content.
fn merge(
    list: &mut Map<String, Value>,
    field: &str,
    configured: impl Iterator<Item = Value>,
    key_of: impl Fn(&Value) -> Option<String>,
) -> bool {
    let Some(Value::Array(entries)) = list.get_mut(field) else {
        return false;
    };
    let known: std::collections::HashSet<String> = entries.iter().filter_map(&key_of).collect();
    let before = entries.len();
    entries.extend(configured.filter(|c| key_of(c).is_none_or(|k| !known.contains(&k))));
    entries.len() != before
}

fn entry_name<'a>(entry: &'a Value, field: &str) -> Option<&'a str> {
    entry.get(field)?.as_str()
}

/// Gemini pages with `pageToken`; v1 treats a missing or empty first `pageToken` as page one.
fn is_first_page(query: &str) -> bool {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| *k == "pageToken")
        .is_none_or(|(_, v)| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(strict: bool) -> ModelRedirect {
        ModelRedirect::new(
            [
                ("my-flash".to_string(), "gemini-2.5-flash".to_string()),
                ("gpt-4o".to_string(), "gpt-4o-2024-08-06".to_string()),
            ],
            strict,
        )
    }

    fn rewrite(body: Value, rules: &ModelRedirect, query: &str) -> Option<Value> {
        let bytes = serde_json::to_vec(&body).unwrap();
        rewrite_models_list(&bytes, rules, query).map(|out| serde_json::from_slice(&out).unwrap())
    }

    fn openai_upstream() -> Value {
        json!({"object": "list", "data": [
            {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
            {"id": "o3", "object": "model", "created": 1744225308, "owned_by": "openai"},
        ]})
    }

    fn gemini_upstream() -> Value {
        json!({"models": [
            {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
             "supportedGenerationMethods": ["generateContent", "countTokens"]},
            {"name": "models/gpt-4o", "displayName": "odd but possible"},
        ], "nextPageToken": "abc"})
    }

    #[test]
    fn intercepted_paths_match_v1() {
        for path in [
            "/v1/models",
            "/v1beta/models",
            "/v1beta/openai/v1/models",
            "/v1beta/openai/v1/models/x",
            "/api/v1/models",
        ] {
            assert!(is_models_request("GET", path), "{path}");
        }
        for path in [
            "/v1/models/gpt-4o",
            "/v1beta/models/x",
            "/v1/model",
            "/v1beta/openai/models",
            "",
        ] {
            assert!(!is_models_request("GET", path), "{path}");
        }
        assert!(!is_models_request("POST", "/v1/models"));
        assert!(!is_models_request("get", "/v1/models"));
    }

    #[test]
    fn openai_strict_lists_only_sources() {
        let got = rewrite(openai_upstream(), &rules(true), "").unwrap();
        assert_eq!(
            got,
            json!({"object": "list", "data": [
                {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "system"},
                {"id": "my-flash", "object": "model", "created": 0, "owned_by": "system"},
            ]})
        );
    }

    #[test]
    fn openai_loose_adds_missing_sources_after_upstream() {
        let got = rewrite(openai_upstream(), &rules(false), "").unwrap();
        let mut want = openai_upstream();
        want["data"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "my-flash", "object": "model", "created": 0, "owned_by": "system"}));
        assert_eq!(got, want);
    }

    #[test]
    fn gemini_strict_lists_only_sources_and_drops_paging() {
        let got = rewrite(gemini_upstream(), &rules(true), "pageToken=abc").unwrap();
        assert_eq!(
            got,
            json!({"models": [
                {"name": "models/gpt-4o", "displayName": "gpt-4o", "supportedGenerationMethods": ["generateContent"]},
                {"name": "models/my-flash", "displayName": "my-flash", "supportedGenerationMethods": ["generateContent"]},
            ]})
        );
    }

    #[test]
    fn gemini_sources_with_prefix_are_not_doubled() {
        let rules = ModelRedirect::new([("models/x".to_string(), "y".to_string())], true);
        let got = rewrite(json!({"models": []}), &rules, "").unwrap();
        assert_eq!(
            got["models"],
            json!([{"name": "models/x", "displayName": "models/x", "supportedGenerationMethods": ["generateContent"]}])
        );
    }

    #[test]
    fn gemini_loose_merges_on_the_first_page_only() {
        let got = rewrite(gemini_upstream(), &rules(false), "pageSize=50").unwrap();
        let mut want = gemini_upstream();
        want["models"].as_array_mut().unwrap().push(json!(
            {"name": "models/my-flash", "displayName": "my-flash", "supportedGenerationMethods": ["generateContent"]}
        ));
        assert_eq!(got, want, "gpt-4o is already listed as models/gpt-4o");
        assert_eq!(
            rewrite(gemini_upstream(), &rules(false), "pageToken=").unwrap(),
            want
        );

        let later = serde_json::to_vec(&gemini_upstream()).unwrap();
        let got = rewrite_models_list(&later, &rules(false), "pageSize=50&pageToken=abc").unwrap();
        assert_eq!(got, later, "later pages pass as they are");
    }

    #[test]
    fn gemini_shape_wins_when_both_arrays_are_present() {
        let got = rewrite(json!({"models": [], "data": []}), &rules(true), "").unwrap();
        assert_eq!(got["data"], json!([]));
        assert_eq!(got["models"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn no_rules_returns_the_list_as_it_came() {
        let body = br#"{"data":[{"id":"b"},{"id":"a"}],"object":"list"}"#;
        for strict in [false, true] {
            let got = rewrite_models_list(body, &ModelRedirect::new([], strict), "");
            assert_eq!(got.as_deref(), Some(&body[..]));
        }
    }

    #[test]
    fn nothing_to_add_returns_the_same_bytes() {
        let body = br#"{"data":[{"id":"gpt-4o"},{"id":"my-flash"}],"object":"list"}"#;
        let got = rewrite_models_list(body, &rules(false), "");
        assert_eq!(got.as_deref(), Some(&body[..]));
    }

    #[test]
    fn odd_entries_are_kept_and_do_not_count_as_known() {
        let got = rewrite(json!({"data": ["gpt-4o", {"id": 7}]}), &rules(false), "").unwrap();
        let ids: Vec<&Value> = got["data"].as_array().unwrap().iter().collect();
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[0], "gpt-4o");
    }

    #[test]
    fn non_lists_are_not_rewritten() {
        for body in [
            &br#"{"error":{"message":"bad key"}}"#[..],
            br#"{"data":{"id":"x"}}"#,
            br#"{"models":"x"}"#,
            br#"[{"id":"x"}]"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                rewrite_models_list(body, &rules(true), ""),
                None,
                "{body:?}"
            );
        }
    }
}
