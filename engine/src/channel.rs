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

    /// v1's stream detection: `Accept: text/event-stream`, `stream=true` in the query, or
    /// `"stream": true` in the JSON body; Gemini also by its `:streamGenerateContent` method.
    pub fn is_stream(
        self,
        path: &str,
        query: &str,
        accept: Option<&[u8]>,
        body: Option<&serde_json::Value>,
    ) -> bool {
        let accept_sse =
            accept.is_some_and(|a| memchr::memmem::find(a, b"text/event-stream").is_some());
        let query_stream = query.split('&').any(|p| p == "stream=true");
        let body_stream = body
            .and_then(|b| b.get("stream"))
            .and_then(|s| s.as_bool())
            .unwrap_or(false);
        let gemini_stream = self == Channel::Gemini && path.ends_with(":streamGenerateContent");
        accept_sse || query_stream || body_stream || gemini_stream
    }

    /// The model a request asks for: the JSON body's `model`, or for Gemini's native API the
    /// path segment after `models/`.
    pub fn model<'a>(self, path: &'a str, body: Option<&'a serde_json::Value>) -> Option<&'a str> {
        if let Some(model) = body.and_then(|b| b.get("model")).and_then(|m| m.as_str()) {
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
        assert!(Channel::OpenAi.is_stream("/v1/x", "", None, Some(&body)));
        assert!(Channel::OpenAi.is_stream("/v1/x", "a=1&stream=true", None, None));
        assert!(Channel::OpenAi.is_stream("/v1/x", "", Some(b"text/event-stream"), None));
        assert!(Channel::Gemini.is_stream(
            "/v1beta/models/m:streamGenerateContent",
            "alt=sse",
            None,
            None
        ));
        assert!(!Channel::OpenAi.is_stream(
            "/v1/x:streamGenerateContent",
            "",
            None,
            Some(&json!({"stream": false}))
        ));
    }

    #[test]
    fn model_from_body_or_gemini_path() {
        let body = json!({"model": "gpt-4o"});
        assert_eq!(
            Channel::OpenAi.model("/v1/chat/completions", Some(&body)),
            Some("gpt-4o")
        );
        assert_eq!(
            Channel::Gemini.model("/v1beta/models/gemini-2.0-flash:generateContent", None),
            Some("gemini-2.0-flash")
        );
        assert_eq!(Channel::OpenAi.model("/v1/models", None), None);
    }
}
