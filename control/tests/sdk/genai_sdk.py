"""The official `google-genai` SDK through the proxy: models.generate_content and
generate_content_stream. BASE_URL is `http://HOST:PORT/proxy/GROUP` (the SDK adds
`/v1beta/models/...`); the SDK sends the key as `x-goog-api-key`."""

from google import genai
from google.genai import types

from _cli import run

MODEL = "gemini-2.0-flash"


def client(base_url: str, api_key: str) -> genai.Client:
    # One attempt and a bound: a failure must show as one failed request.
    options = types.HttpOptions(
        base_url=base_url,
        timeout=20_000,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=api_key, http_options=options)


def generate(base_url: str, api_key: str) -> dict:
    # Held in a variable: a genai.Client closes its HTTP client when garbage-collected, even
    # while one of its calls is running.
    sdk = client(base_url, api_key)
    response = sdk.models.generate_content(model=MODEL, contents="Say hi")
    return {
        "text": response.text,
        "model_version": response.model_version,
        "usage": response.usage_metadata.total_token_count,
    }


def generate_stream(base_url: str, api_key: str) -> dict:
    sdk = client(base_url, api_key)
    pieces, finish = [], None
    for chunk in sdk.models.generate_content_stream(model=MODEL, contents="Say hi"):
        pieces.append(chunk.text)
        if chunk.candidates and chunk.candidates[0].finish_reason:
            finish = str(chunk.candidates[0].finish_reason.value)
    return {"text": "".join(pieces), "pieces": pieces, "finish_reason": finish}


if __name__ == "__main__":
    run({"generate": generate, "generate-stream": generate_stream})
