//! Which answer a request gets, in order: a failing key, a forced `x-mock-status`, then the
//! route table. Writes the body into the connection's [`Body`] and returns the reply head.

use std::borrow::Cow;

use serde::Deserialize;

use crate::controls::{Controls, FailingKeys};
use crate::formats::{FALLBACK_MODEL, Generation, anthropic, gemini, openai, responses};
use crate::http::{Body, Reply, RequestView, Shape};
use crate::record::{query_param, split_query, upstream_key};

/// What the mock serves, recognised by the end of the path so that any prefix the proxy keeps
/// (`/v1beta/openai/chat/completions`, `/proxy/x/v1/messages`) still matches.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Generate(Generator<'a>),
    OpenAiModels,
    GeminiModels,
    NotFound,
}

/// The routes that generate text, whole or streamed.
#[derive(Debug, PartialEq, Eq)]
enum Generator<'a> {
    ChatCompletions,
    Responses,
    Messages,
    GenerateContent { model: &'a str },
    StreamGenerateContent { model: &'a str, sse: bool },
}

type WriteBody = fn(&mut Body, &Generation<'_>);

const SSE: &str = "text/event-stream";
const JSON: &str = "application/json";

impl<'a> Route<'a> {
    fn of(method: &str, target: &'a str) -> Route<'a> {
        let path = split_query(target).0;
        match method {
            "POST" => Generator::of(path, target).map_or(Route::NotFound, Route::Generate),
            "GET" if path.ends_with("/v1beta/models") => Route::GeminiModels,
            "GET" if path.ends_with("/models") => Route::OpenAiModels,
            _ => Route::NotFound,
        }
    }
}

impl<'a> Generator<'a> {
    fn of(path: &'a str, target: &'a str) -> Option<Generator<'a>> {
        if path.ends_with("/chat/completions") {
            return Some(Generator::ChatCompletions);
        }
        if path.ends_with("/responses") {
            return Some(Generator::Responses);
        }
        if path.ends_with("/messages") {
            return Some(Generator::Messages);
        }
        match gemini_action(path)? {
            (model, "generateContent") => Some(Generator::GenerateContent { model }),
            (model, "streamGenerateContent") => Some(Generator::StreamGenerateContent {
                model,
                sse: query_param(target, "alt").is_some_and(|alt| alt == "sse"),
            }),
            _ => None,
        }
    }

    /// Gemini names the model in the path; the others in the body.
    fn path_model(&self) -> Option<&'a str> {
        match self {
            Generator::GenerateContent { model }
            | Generator::StreamGenerateContent { model, .. } => Some(model),
            _ => None,
        }
    }

    /// The body writer, shape and content type for this route.
    fn answer(&self, stream: bool) -> (WriteBody, Shape, &'static str) {
        match self {
            Generator::ChatCompletions if stream => {
                (openai::chat_completion_stream, Shape::Stream, SSE)
            }
            Generator::ChatCompletions => (openai::chat_completion, Shape::Whole, JSON),
            Generator::Responses if stream => (responses::response_stream, Shape::Stream, SSE),
            Generator::Responses => (responses::response, Shape::Whole, JSON),
            Generator::Messages if stream => (anthropic::message_stream, Shape::Stream, SSE),
            Generator::Messages => (anthropic::message, Shape::Whole, JSON),
            Generator::GenerateContent { .. } => (gemini::generate_content, Shape::Whole, JSON),
            Generator::StreamGenerateContent { sse: true, .. } => {
                (gemini::stream_sse, Shape::Stream, SSE)
            }
            Generator::StreamGenerateContent { sse: false, .. } => {
                (gemini::stream_array, Shape::Stream, JSON)
            }
        }
    }
}

/// `…/models/{model}:{action}` → `(model, action)`.
fn gemini_action(path: &str) -> Option<(&str, &str)> {
    let (_, model_and_action) = path.rsplit_once("/models/")?;
    model_and_action.rsplit_once(':')
}

/// The fields of a generation request that shape the answer; everything else is ignored.
#[derive(Deserialize)]
struct GenerationRequest<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Chooses and writes the answer to `request`.
pub(crate) fn answer(
    request: &RequestView<'_>,
    controls: &Controls<'_>,
    failing_keys: &FailingKeys,
    body: &mut Body,
) -> Reply {
    if let Some(reply) = failing_key(request, failing_keys, body) {
        return reply;
    }
    if let Some(status) = controls.status {
        return forced_status(status, controls.body, body);
    }
    route(request, controls.chunks, body)
}

fn failing_key(
    request: &RequestView<'_>,
    failing_keys: &FailingKeys,
    body: &mut Body,
) -> Option<Reply> {
    let key = upstream_key(|name| request.header(name), request.path)?;
    failing_keys.with_failure(&key, |failure| {
        body.bytes().extend_from_slice(failure.body.as_bytes());
        Reply::json(failure.status)
    })
}

fn forced_status(status: u16, text: Option<&str>, body: &mut Body) -> Reply {
    let Some(text) = text else {
        let message = format!("mock upstream: forced status {status} (x-mock-status)");
        openai::error(body, &message, "mock_error", "mock_status");
        return Reply::json(status);
    };
    body.bytes().extend_from_slice(text.as_bytes());
    let looks_like_json = text.starts_with(['{', '[']);
    Reply {
        status,
        content_type: if looks_like_json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        },
        shape: Shape::Whole,
    }
}

fn route(request: &RequestView<'_>, chunks: usize, body: &mut Body) -> Reply {
    let route = Route::of(request.method, request.path);
    match route {
        Route::OpenAiModels => {
            openai::model_list(body);
            Reply::json(200)
        }
        Route::GeminiModels => {
            gemini::model_list(body);
            Reply::json(200)
        }
        Route::NotFound => {
            let message = format!(
                "mock upstream has no route for {} {}",
                request.method, request.path
            );
            openai::error(body, &message, "invalid_request_error", "not_found");
            Reply::json(404)
        }
        Route::Generate(generator) => generate(generator, request.body, chunks, body),
    }
}

fn generate(
    generator: Generator<'_>,
    request_body: &[u8],
    chunks: usize,
    body: &mut Body,
) -> Reply {
    let parsed: GenerationRequest<'_> = match serde_json::from_slice(request_body) {
        Ok(parsed) => parsed,
        Err(e) => {
            let message = format!("mock upstream: request body is not a JSON object: {e}");
            openai::error(body, &message, "invalid_request_error", "invalid_json");
            return Reply::json(400);
        }
    };
    let generation = Generation {
        model: generator
            .path_model()
            .or(parsed.model.as_deref())
            .unwrap_or(FALLBACK_MODEL),
        chunks,
        include_usage: parsed
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false),
    };
    let (write, shape, content_type) = generator.answer(parsed.stream.unwrap_or(false));
    write(body, &generation);
    Reply {
        status: 200,
        content_type,
        shape,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_path_suffix_and_method() {
        assert_eq!(
            Route::of("POST", "/v1/chat/completions"),
            Route::Generate(Generator::ChatCompletions)
        );
        assert_eq!(
            Route::of("POST", "/v1beta/openai/chat/completions"),
            Route::Generate(Generator::ChatCompletions)
        );
        assert_eq!(
            Route::of("POST", "/v1/responses"),
            Route::Generate(Generator::Responses)
        );
        assert_eq!(
            Route::of("POST", "/v1/messages?beta=true"),
            Route::Generate(Generator::Messages)
        );
        assert_eq!(
            Route::of(
                "POST",
                "/v1beta/models/gemini-2.0-flash:generateContent?key=k"
            ),
            Route::Generate(Generator::GenerateContent {
                model: "gemini-2.0-flash"
            })
        );
        assert_eq!(
            Route::of("POST", "/v1beta/models/g:streamGenerateContent?alt=sse"),
            Route::Generate(Generator::StreamGenerateContent {
                model: "g",
                sse: true
            })
        );
        assert_eq!(Route::of("GET", "/v1/models"), Route::OpenAiModels);
        assert_eq!(
            Route::of("GET", "/v1beta/models?key=k"),
            Route::GeminiModels
        );
        assert_eq!(Route::of("GET", "/v1/chat/completions"), Route::NotFound);
        assert_eq!(
            Route::of("POST", "/v1beta/models/g:countTokens"),
            Route::NotFound
        );
        assert_eq!(Route::of("POST", "/nothing"), Route::NotFound);
    }
}
