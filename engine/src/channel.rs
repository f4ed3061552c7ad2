//! Channels: what differs between provider APIs. Every per-provider behaviour (how the key is
//! sent, which headers are forced, how streaming is detected, where the model name is) is
//! decided here and nowhere else.

/// The `channel_type` of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    OpenAi,
    OpenAiResponse,
    Anthropic,
    Gemini,
}

/// How the upstream key travels on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPlacement {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// `x-api-key: <key>`.
    XApiKey,
    /// `?key=<key>` appended to the query (Gemini's native API).
    QueryKey,
}

/// The `anthropic-version` v1 always sends to Anthropic, overwriting the client's.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::OpenAi,
        Channel::OpenAiResponse,
        Channel::Gemini,
        Channel::Anthropic,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::OpenAi => "openai",
            Channel::OpenAiResponse => "openai-response",
            Channel::Anthropic => "anthropic",
            Channel::Gemini => "gemini",
        }
    }

    /// Where the key goes for a request to `path` (the path after the group name).
    pub fn key_placement(self, path: &str) -> KeyPlacement {
        match self {
            Channel::OpenAi | Channel::OpenAiResponse => KeyPlacement::Bearer,
            Channel::Anthropic => KeyPlacement::XApiKey,
            // Gemini's OpenAI-compatible API takes a Bearer token like OpenAI.
            Channel::Gemini if path.contains("v1beta/openai") => KeyPlacement::Bearer,
            Channel::Gemini => KeyPlacement::QueryKey,
        }
    }

    /// Headers this channel always sets, after the client's.
    pub fn forced_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Channel::Anthropic => &[("anthropic-version", ANTHROPIC_VERSION)],
            _ => &[],
        }
    }

    /// Where a validation request goes, path and query, after the upstream's base path (v1
    /// §2.6): the group's `validation_endpoint` when set (its query kept), else the channel's
    /// default. Gemini ignores the endpoint: it always asks `models/{test_model}:generateContent`.
    pub fn validation_target(self, endpoint: &str, test_model: &str) -> (String, String) {
        if self == Channel::Gemini {
            let model = crate::forward::encode_query_value(test_model);
            return (
                format!("/v1beta/models/{model}:generateContent"),
                String::new(),
            );
        }
        // v1 parses the endpoint as a URL and keeps only its path and query.
        let endpoint = endpoint.trim();
        let endpoint = ["https://", "http://"]
            .iter()
            .find_map(|s| endpoint.strip_prefix(s))
            .map_or(endpoint, |rest| rest.find('/').map_or("", |i| &rest[i..]));
        if endpoint.is_empty() {
            let path = match self {
                Channel::OpenAiResponse => "/v1/responses",
                Channel::Anthropic => "/v1/messages",
                _ => "/v1/chat/completions",
            };
            return (path.to_string(), String::new());
        }
        let (path, query) = endpoint.split_once('?').unwrap_or((endpoint, ""));
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        (path, query.to_string())
    }

    /// The smallest generation request that proves a key works: one "hi" (v1 §2.6). Keys are
    /// in Go's order (sorted), as v1 marshals them.
    pub fn validation_body(self, test_model: &str) -> serde_json::Value {
        let hi = serde_json::json!([{"role": "user", "content": "hi"}]);
        match self {
            Channel::OpenAi => serde_json::json!({"model": test_model, "messages": hi}),
            Channel::OpenAiResponse => serde_json::json!({"model": test_model, "input": "hi"}),
            Channel::Anthropic => {
                serde_json::json!({"model": test_model, "max_tokens": 100, "messages": hi})
            }
            Channel::Gemini => {
                serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
            }
        }
    }

    /// v1's stream detection: `Accept: text/event-stream`, `stream=true` in the query, or
    /// `"stream": true` in the JSON body; Gemini also by its `:streamGenerateContent` method.
    pub fn is_stream(
        self,
        path: &str,
        query: &str,
        accept: Option<&[u8]>,
        body: &BodyFacts<'_>,
    ) -> bool {
        let accept_sse =
            accept.is_some_and(|a| memchr::memmem::find(a, b"text/event-stream").is_some());
        let query_stream = query.split('&').any(|p| p == "stream=true");
        let gemini_stream = self == Channel::Gemini && path.ends_with(":streamGenerateContent");
        accept_sse || query_stream || body.stream || gemini_stream
    }

    /// The model a request asks for: the JSON body's `model`, or for Gemini's native API the
    /// path segment after `models/`.
    pub fn model<'a>(self, path: &'a str, body: &'a BodyFacts<'a>) -> Option<&'a str> {
        if let Some(model) = body.model.as_deref() {
            return Some(model);
        }
        if self == Channel::Gemini {
            let rest = &path[path.find("models/")? + "models/".len()..];
            let end = rest.find([':', '/', '?']).unwrap_or(rest.len());
            return Some(&rest[..end]).filter(|m| !m.is_empty());
        }
        None
    }
}

/// What routing reads from a JSON request body: its string `model` and whether `stream` is
/// `true`. Anything else (not an object, not JSON, other types) reads as neither.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyFacts<'a> {
    pub model: Option<std::borrow::Cow<'a, str>>,
    pub stream: bool,
}

impl<'a> BodyFacts<'a> {
    /// From a body already parsed (when it is to be rewritten anyway).
    pub fn of_value(body: Option<&'a serde_json::Value>) -> Self {
        let field = |name| body.and_then(|b| b.get(name));
        BodyFacts {
            model: field("model")
                .and_then(|m| m.as_str())
                .map(std::borrow::Cow::Borrowed),
            stream: field("stream").and_then(|s| s.as_bool()).unwrap_or(false),
        }
    }

    /// Straight from the bytes, without building the document: the two fields are borrowed
    /// and the rest is only checked for syntax. Reads exactly what [`BodyFacts::of_value`]
    /// would; a body this cannot read (duplicate fields, say) is left to it.
    pub fn peek(body: &'a [u8]) -> Option<Self> {
        use serde_json::value::RawValue;
        #[derive(serde::Deserialize)]
        struct Fields<'b> {
            #[serde(borrow, default)]
            model: Option<&'b RawValue>,
            #[serde(borrow, default)]
            stream: Option<&'b RawValue>,
        }
        if body.first() != Some(&b'{') {
            return Some(BodyFacts::default());
        }
        let fields: Fields<'a> = match serde_json::from_slice(body) {
            Ok(fields) => fields,
            // Not JSON: no facts, as a failed parse gives. Valid JSON we cannot read this way
            // (a duplicate field) is for the full parse.
            Err(e) if e.is_data() => return None,
            Err(_) => return Some(BodyFacts::default()),
        };
        let model = match fields.model.map(RawValue::get) {
            // A string without escapes is its own text between the quotes (the parse above
            // checked it); only one with escapes needs decoding.
            Some(raw) if raw.starts_with('"') && !raw.contains('\\') => {
                Some(std::borrow::Cow::Borrowed(&raw[1..raw.len() - 1]))
            }
            Some(raw) if raw.starts_with('"') => Some(serde_json::from_str(raw).ok()?),
            _ => None,
        };
        Some(BodyFacts {
            model,
            stream: fields.stream.is_some_and(|s| s.get() == "true"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_placement_per_channel() {
        assert_eq!(
            Channel::OpenAi.key_placement("/v1/chat/completions"),
            KeyPlacement::Bearer
        );
        assert_eq!(
            Channel::Anthropic.key_placement("/v1/messages"),
            KeyPlacement::XApiKey
        );
        assert_eq!(
            Channel::Gemini.key_placement("/v1beta/models/g:generateContent"),
            KeyPlacement::QueryKey
        );
        assert_eq!(
            Channel::Gemini.key_placement("/v1beta/openai/chat/completions"),
            KeyPlacement::Bearer
        );
        assert_eq!(
            Channel::parse("openai-response"),
            Some(Channel::OpenAiResponse)
        );
        assert_eq!(Channel::parse("azure"), None);
    }

    #[test]
    fn stream_detection_rules() {
        let body = json!({"stream": true});
        let none = BodyFacts::default();
        assert!(Channel::OpenAi.is_stream("/v1/x", "", None, &BodyFacts::of_value(Some(&body))));
        assert!(Channel::OpenAi.is_stream("/v1/x", "a=1&stream=true", None, &none));
        assert!(Channel::OpenAi.is_stream("/v1/x", "", Some(b"text/event-stream"), &none));
        assert!(Channel::Gemini.is_stream(
            "/v1beta/models/m:streamGenerateContent",
            "alt=sse",
            None,
            &none
        ));
        assert!(!Channel::OpenAi.is_stream(
            "/v1/x:streamGenerateContent",
            "",
            None,
            &BodyFacts::of_value(Some(&json!({"stream": false})))
        ));
    }

    #[test]
    fn validation_targets_per_channel() {
        let t = |c: Channel, e: &str| c.validation_target(e, "m-1");
        let pair = |p: &str, q: &str| (p.to_string(), q.to_string());
        assert_eq!(t(Channel::OpenAi, ""), pair("/v1/chat/completions", ""));
        assert_eq!(t(Channel::OpenAiResponse, " "), pair("/v1/responses", ""));
        assert_eq!(t(Channel::Anthropic, ""), pair("/v1/messages", ""));
        assert_eq!(
            t(Channel::OpenAi, "/v2/chat?api-version=1"),
            pair("/v2/chat", "api-version=1")
        );
        assert_eq!(t(Channel::OpenAi, "v1/x"), pair("/v1/x", ""));
        assert_eq!(
            t(Channel::OpenAi, "https://h.example/p?q=1"),
            pair("/p", "q=1")
        );
        assert_eq!(
            t(Channel::Gemini, "/ignored"),
            pair("/v1beta/models/m-1:generateContent", "")
        );
        let body = Channel::Anthropic.validation_body("claude");
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(body["messages"][0]["content"], "hi");
        assert_eq!(Channel::OpenAiResponse.validation_body("x")["input"], "hi");
        assert_eq!(
            Channel::Gemini.validation_body("g")["contents"][0]["parts"][0]["text"],
            "hi"
        );
    }

    #[test]
    fn model_from_body_or_gemini_path() {
        let body = json!({"model": "gpt-4o"});
        let facts = BodyFacts::of_value(Some(&body));
        assert_eq!(
            Channel::OpenAi.model("/v1/chat/completions", &facts),
            Some("gpt-4o")
        );
        let none = BodyFacts::default();
        assert_eq!(
            Channel::Gemini.model("/v1beta/models/gemini-2.0-flash:generateContent", &none),
            Some("gemini-2.0-flash")
        );
        assert_eq!(Channel::OpenAi.model("/v1/models", &none), None);
    }

    /// The peek reads what a full parse reads, for every shape a client may send.
    #[test]
    fn peeking_a_body_agrees_with_parsing_it() {
        let bodies: [&[u8]; 17] = [
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            br#"{"stream": false, "model": "m"}"#,
            br#"{"model":"a\"b\u00e9","stream":"true"}"#,
            br#"{"model":null,"stream":null}"#,
            br#"{"model":42,"stream":1}"#,
            br#"{"model":{"name":"x"},"stream":[true]}"#,
            br#"{"nested":{"model":"inner","stream":true}}"#,
            br#"{}"#,
            br#"{"model":"m","#,
            br#"[{"model":"m"}]"#,
            br#"["m", true]"#,
            b"not json",
            b"",
            br#"  {"model":"leading-space"}"#,
            br#"{"model":"","stream":true}"#,
            br#"{"model":"\\"}"#,
            "{\"model\":\"gpt-é中\"}".as_bytes(),
        ];
        for body in bodies {
            let value: Option<serde_json::Value> = match body.first() {
                Some(b'{') => serde_json::from_slice(body).ok(),
                _ => None,
            };
            let parsed = BodyFacts::of_value(value.as_ref());
            let peeked = BodyFacts::peek(body).expect("readable");
            assert_eq!(peeked, parsed, "{}", String::from_utf8_lossy(body));
        }
        // Duplicate fields: the peek declines and the caller parses (the last one wins).
        assert_eq!(BodyFacts::peek(br#"{"model":"a","model":"b"}"#), None);
    }
}
