//! Model redirect (v1.4.0, spec §2.8): a group maps the model names clients ask for to the names
//! its upstream knows, by exact match. JSON-body APIs carry the model in the body's top-level
//! `model`; Gemini's native API carries it in the path (`…/models/{model}:{method}`).
//!
//! This module decides and rewrites; it does not answer the client. A [`StrictMiss`] becomes
//! v1's 400 in the request path, and the caller re-serialises a rewritten body.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::channel::Channel;

/// A group's model redirect rules, parsed once per snapshot.
///
/// Kept in a `BTreeMap`: lookups are by exact name over a handful of rules, and the sorted order
/// makes the model lists built from the sources deterministic (v1 iterates a Go map, so its
/// order is random).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRedirect {
    rules: BTreeMap<String, String>,
    strict: bool,
}

impl ModelRedirect {
    /// Rules as `(source, target)`: a client asking for `source` is sent to `target`. A source
    /// given twice keeps its last target.
    pub fn new(rules: impl IntoIterator<Item = (String, String)>, strict: bool) -> Self {
        ModelRedirect {
            rules: rules.into_iter().collect(),
            strict,
        }
    }

    /// No rules. Then v1 rewrites nothing and rejects nothing, whatever the strict flag says.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The group's strict flag as configured (it only takes effect when there are rules).
    pub fn strict(&self) -> bool {
        self.strict
    }

    /// Where a client's `model` goes, if a rule names it.
    pub fn target(&self, model: &str) -> Option<&str> {
        self.rules.get(model).map(String::as_str)
    }

    /// The configured source names, sorted.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }

    /// What happens to a request for `model`: rewritten, passed through, or refused.
    fn decide(&self, model: &str) -> Result<RedirectOutcome, StrictMiss> {
        match self.target(model) {
            Some(to) => Ok(RedirectOutcome::Rewritten {
                from: model.to_string(),
                to: to.to_string(),
            }),
            None if self.strict => Err(StrictMiss {
                model: model.to_string(),
            }),
            None => Ok(RedirectOutcome::Unchanged),
        }
    }
}

/// What [`redirect_model`] did to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectOutcome {
    Unchanged,
    /// A rule matched `from`; the request now names `to`.
    Rewritten {
        from: String,
        to: String,
    },
}

/// A strict group was asked for a model no rule names. v1 answers 400 `BAD_REQUEST` with this
/// message (its UI claims 404) and logs the request as final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictMiss {
    pub model: String,
}

impl StrictMiss {
    pub const STATUS: u16 = 400;
    pub const CODE: &'static str = "BAD_REQUEST";
}

impl fmt::Display for StrictMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "model '{}' is not configured in redirect rules",
            self.model
        )
    }
}

impl std::error::Error for StrictMiss {}

/// Applies the rules to a request: JSON-body channels rewrite the top-level `model` of `body`
/// (a parsed JSON value the caller re-serialises when rewritten); Gemini native requests
/// rewrite the path segment after `models/` keeping the `:method` suffix (returns the new path).
///
/// As in v1, a request that names no model (no JSON body, no string `model`, no `models/`
/// segment in a Gemini native path) passes through unchanged even in strict mode; strictness
/// only judges a model that is named. `path` is the path after the group name, without query.
pub fn redirect_model(
    channel: Channel,
    path: &str,
    body: Option<&mut serde_json::Value>,
    rules: &ModelRedirect,
) -> Result<(RedirectOutcome, Option<String>), StrictMiss> {
    if rules.is_empty() {
        return Ok((RedirectOutcome::Unchanged, None));
    }
    if channel == Channel::Gemini && !is_gemini_openai_compat(path) {
        return redirect_gemini_path(path, rules);
    }
    Ok((redirect_body(body, rules)?, None))
}

/// Gemini's OpenAI-compatible API (`…/v1beta/openai/…`): JSON bodies like OpenAI's.
fn is_gemini_openai_compat(path: &str) -> bool {
    path.contains("v1beta/openai")
}

fn redirect_body(
    body: Option<&mut serde_json::Value>,
    rules: &ModelRedirect,
) -> Result<RedirectOutcome, StrictMiss> {
    let Some(model) = body
        .and_then(|b| b.as_object_mut())
        .and_then(|o| o.get_mut("model"))
    else {
        return Ok(RedirectOutcome::Unchanged);
    };
    let Some(name) = model.as_str() else {
        return Ok(RedirectOutcome::Unchanged);
    };
    let outcome = rules.decide(name)?;
    if let RedirectOutcome::Rewritten { to, .. } = &outcome {
        *model = serde_json::Value::String(to.clone());
    }
    Ok(outcome)
}

/// Rewrites `…/models/{model}[:{method}]…`: the first `models` segment followed by another
/// segment, like v1. An empty model (`…/models/`) is looked up as `''`, so strict mode refuses it
/// as v1 does rather than let a model listing bypass the whitelist.
fn redirect_gemini_path(
    path: &str,
    rules: &ModelRedirect,
) -> Result<(RedirectOutcome, Option<String>), StrictMiss> {
    let Some((start, end)) = model_segment(path) else {
        return Ok((RedirectOutcome::Unchanged, None));
    };
    // v1 matches Go's decoded path, so `%3A` splits like `:`.
    let segment = percent_decode(&path[start..end]);
    let (model, method) = match segment.find(':') {
        Some(i) => segment.split_at(i),
        None => (&*segment, ""),
    };
    let outcome = rules.decide(model)?;
    let new_path = match &outcome {
        RedirectOutcome::Rewritten { to, .. } => Some(format!(
            "{}{}{}{}",
            &path[..start],
            encode_path_segment(to),
            encode_path_segment(method),
            &path[end..]
        )),
        RedirectOutcome::Unchanged => None,
    };
    Ok((outcome, new_path))
}

/// Byte range of the segment after the first `models` segment that has one after it.
fn model_segment(path: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        let next_start = offset + segment.len() + 1;
        if segment == "models"
            && let Some(model) = segments.peek()
        {
            return Some((next_start, next_start + model.len()));
        }
        offset = next_start;
    }
    None
}

/// `%XX` → byte; anything malformed, or a result that is not UTF-8, stays as written.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(text), Cow::Owned)
}

/// Escapes what may not stand raw in a path (RFC 3986 `pchar`, plus `/`, which v1 keeps raw as
/// Go re-escapes the path): a target like `gemini-2.5-pro` comes out as written.
fn encode_path_segment(text: &str) -> Cow<'_, str> {
    let raw_ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
    if text.bytes().all(raw_ok) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if raw_ok(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(strict: bool) -> ModelRedirect {
        ModelRedirect::new(
            [
                ("gpt-4".to_string(), "gpt-4o".to_string()),
                ("flash".to_string(), "gemini-2.5-flash".to_string()),
            ],
            strict,
        )
    }

    fn rewritten(from: &str, to: &str) -> RedirectOutcome {
        RedirectOutcome::Rewritten {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn body_model_is_rewritten_for_json_channels() {
        for channel in [Channel::OpenAi, Channel::OpenAiResponse, Channel::Anthropic] {
            let mut body = json!({"model": "gpt-4", "messages": [], "stream": true});
            let got = redirect_model(
                channel,
                "/v1/chat/completions",
                Some(&mut body),
                &rules(true),
            );
            assert_eq!(got, Ok((rewritten("gpt-4", "gpt-4o"), None)));
            assert_eq!(
                body,
                json!({"model": "gpt-4o", "messages": [], "stream": true})
            );
        }
    }

    #[test]
    fn gemini_openai_compat_uses_the_body() {
        let mut body = json!({"model": "flash"});
        let path = "/v1beta/openai/chat/completions";
        let got = redirect_model(Channel::Gemini, path, Some(&mut body), &rules(false));
        assert_eq!(got, Ok((rewritten("flash", "gemini-2.5-flash"), None)));
        assert_eq!(body["model"], "gemini-2.5-flash");
    }

    #[test]
    fn gemini_native_path_keeps_the_method_suffix() {
        let cases = [
            (
                "/v1beta/models/flash:generateContent",
                "/v1beta/models/gemini-2.5-flash:generateContent",
            ),
            (
                "/v1beta/models/flash:streamGenerateContent",
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            ),
            (
                "/v1/models/flash:countTokens",
                "/v1/models/gemini-2.5-flash:countTokens",
            ),
            (
                "/models/flash:generateContent",
                "/models/gemini-2.5-flash:generateContent",
            ),
            ("/v1beta/models/flash", "/v1beta/models/gemini-2.5-flash"),
            (
                "/v1beta/models/flash%3AgenerateContent",
                "/v1beta/models/gemini-2.5-flash:generateContent",
            ),
        ];
        for (path, want) in cases {
            let mut body = json!({"contents": []});
            let got = redirect_model(Channel::Gemini, path, Some(&mut body), &rules(true));
            assert_eq!(
                got,
                Ok((
                    rewritten("flash", "gemini-2.5-flash"),
                    Some(want.to_string())
                )),
                "{path}"
            );
            assert_eq!(
                body,
                json!({"contents": []}),
                "native requests keep their body"
            );
        }
    }

    #[test]
    fn gemini_native_ignores_a_model_in_the_body() {
        let mut body = json!({"model": "gpt-4"});
        let got = redirect_model(
            Channel::Gemini,
            "/v1beta/models/other:generateContent",
            Some(&mut body),
            &rules(false),
        );
        assert_eq!(got, Ok((RedirectOutcome::Unchanged, None)));
        assert_eq!(body["model"], "gpt-4");
    }

    #[test]
    fn target_with_unsafe_characters_is_escaped_in_the_path() {
        let rules = ModelRedirect::new([("a".to_string(), "b c?".to_string())], false);
        let got = redirect_model(
            Channel::Gemini,
            "/v1beta/models/a:generateContent",
            None,
            &rules,
        );
        let want = "/v1beta/models/b%20c%3F:generateContent".to_string();
        assert_eq!(got, Ok((rewritten("a", "b c?"), Some(want))));
    }

    #[test]
    fn percent_decoding_leaves_malformed_escapes_alone() {
        assert_eq!(percent_decode("a%3Ab"), "a:b");
        assert_eq!(percent_decode("a%+1%zz%4"), "a%+1%zz%4");
        assert_eq!(percent_decode("%FF"), "%FF", "not UTF-8 once decoded");
    }

    #[test]
    fn strict_miss_names_the_model() {
        let mut body = json!({"model": "claude-3"});
        let miss = redirect_model(
            Channel::Anthropic,
            "/v1/messages",
            Some(&mut body),
            &rules(true),
        )
        .unwrap_err();
        assert_eq!(
            miss.to_string(),
            "model 'claude-3' is not configured in redirect rules"
        );
        assert_eq!((StrictMiss::STATUS, StrictMiss::CODE), (400, "BAD_REQUEST"));
        let miss = redirect_model(
            Channel::Gemini,
            "/v1beta/models/pro:generateContent",
            None,
            &rules(true),
        );
        assert_eq!(
            miss,
            Err(StrictMiss {
                model: "pro".into()
            })
        );
        // An empty model segment is a model named '' (v1 splits the path the same way).
        let miss = redirect_model(Channel::Gemini, "/v1beta/models/", None, &rules(true));
        assert_eq!(
            miss,
            Err(StrictMiss {
                model: String::new()
            })
        );
    }

    #[test]
    fn loose_mode_passes_unknown_models_through() {
        let mut body = json!({"model": "claude-3"});
        let got = redirect_model(
            Channel::OpenAi,
            "/v1/chat/completions",
            Some(&mut body),
            &rules(false),
        );
        assert_eq!(got, Ok((RedirectOutcome::Unchanged, None)));
        assert_eq!(body["model"], "claude-3");
        let got = redirect_model(
            Channel::Gemini,
            "/v1beta/models/pro:generateContent",
            None,
            &rules(false),
        );
        assert_eq!(got, Ok((RedirectOutcome::Unchanged, None)));
    }

    #[test]
    fn requests_without_a_model_pass_even_when_strict() {
        let strict = rules(true);
        let unchanged = Ok((RedirectOutcome::Unchanged, None));
        let path = "/v1/chat/completions";
        assert_eq!(
            redirect_model(Channel::OpenAi, path, None, &strict),
            unchanged
        );
        for mut body in [
            json!({"messages": []}),
            json!({"model": 4}),
            json!({"model": null}),
            json!([1]),
        ] {
            assert_eq!(
                redirect_model(Channel::OpenAi, path, Some(&mut body), &strict),
                unchanged
            );
        }
        for path in [
            "/v1beta/models",
            "/v1beta/files",
            "/v1beta/tunedModels/x:generateContent",
            "",
        ] {
            assert_eq!(
                redirect_model(Channel::Gemini, path, None, &strict),
                unchanged,
                "{path}"
            );
        }
    }

    #[test]
    fn no_rules_means_no_redirect_and_no_refusal() {
        let none = ModelRedirect::new([], true);
        assert!(none.is_empty() && none.strict());
        let mut body = json!({"model": "anything"});
        let got = redirect_model(
            Channel::OpenAi,
            "/v1/chat/completions",
            Some(&mut body),
            &none,
        );
        assert_eq!(got, Ok((RedirectOutcome::Unchanged, None)));
        let got = redirect_model(
            Channel::Gemini,
            "/v1beta/models/x:generateContent",
            None,
            &none,
        );
        assert_eq!(got, Ok((RedirectOutcome::Unchanged, None)));
    }

    #[test]
    fn exact_match_only() {
        let mut body = json!({"model": "gpt-4-turbo"});
        let got = redirect_model(
            Channel::OpenAi,
            "/v1/chat/completions",
            Some(&mut body),
            &rules(false),
        );
        assert_eq!(got, Ok((RedirectOutcome::Unchanged, None)));
        let mut body = json!({"model": "GPT-4"});
        let got = redirect_model(
            Channel::OpenAi,
            "/v1/chat/completions",
            Some(&mut body),
            &rules(true),
        );
        assert!(got.is_err());
    }

    #[test]
    fn later_rules_win_and_sources_are_sorted() {
        let rules = ModelRedirect::new(
            [("b", "1"), ("a", "2"), ("b", "3")].map(|(s, t)| (s.to_string(), t.to_string())),
            false,
        );
        assert_eq!(rules.sources().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(rules.target("b"), Some("3"));
    }
}
