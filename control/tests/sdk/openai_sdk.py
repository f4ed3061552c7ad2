"""The official `openai` SDK through the proxy: Chat Completions and Responses, whole and
streamed. BASE_URL is `http://HOST:PORT/proxy/GROUP/v1`, the form the README documents."""

import openai

from _cli import run

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hi"}]


def client(base_url: str, api_key: str) -> openai.OpenAI:
    # No retries: a failure must show as one failed request, not be papered over.
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)


def chat(base_url: str, api_key: str) -> dict:
    completion = client(base_url, api_key).chat.completions.create(
        model=MODEL, messages=MESSAGES
    )
    return {
        "text": completion.choices[0].message.content,
        "id": completion.id,
        "model": completion.model,
        "usage": completion.usage.total_tokens,
    }


def chat_stream(base_url: str, api_key: str) -> dict:
    stream = client(base_url, api_key).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content is not None:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    return {"text": "".join(pieces), "pieces": pieces, "finish_reason": finish}


def responses(base_url: str, api_key: str) -> dict:
    response = client(base_url, api_key).responses.create(model=MODEL, input="Say hi")
    return {"text": response.output_text, "id": response.id, "status": response.status}


def responses_stream(base_url: str, api_key: str) -> dict:
    stream = client(base_url, api_key).responses.create(
        model=MODEL, input="Say hi", stream=True
    )
    pieces, events, final = [], [], None
    for event in stream:
        events.append(event.type)
        if event.type == "response.output_text.delta":
            pieces.append(event.delta)
        elif event.type == "response.completed":
            final = event.response.output_text
    return {"text": "".join(pieces), "pieces": pieces, "events": events, "final": final}


if __name__ == "__main__":
    run(
        {
            "chat": chat,
            "chat-stream": chat_stream,
            "responses": responses,
            "responses-stream": responses_stream,
        }
    )
