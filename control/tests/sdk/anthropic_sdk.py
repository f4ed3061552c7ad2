"""The official `anthropic` SDK through the proxy: messages.create whole and with stream=True,
and the messages.stream helper. BASE_URL is `http://HOST:PORT/proxy/GROUP` (the SDK adds
`/v1/messages`)."""

import anthropic

from _cli import run

MODEL = "claude-3-5-sonnet-latest"
MESSAGES = [{"role": "user", "content": "Say hi"}]


def client(base_url: str, api_key: str) -> anthropic.Anthropic:
    # No retries: a failure must show as one failed request, not be papered over.
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)


def create(base_url: str, api_key: str) -> dict:
    message = client(base_url, api_key).messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES
    )
    return {
        "text": "".join(block.text for block in message.content if block.type == "text"),
        "id": message.id,
        "stop_reason": message.stop_reason,
    }


def create_stream(base_url: str, api_key: str) -> dict:
    stream = client(base_url, api_key).messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
    )
    pieces, events = [], []
    for event in stream:
        events.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            pieces.append(event.delta.text)
    return {"text": "".join(pieces), "pieces": pieces, "events": events}


def stream_helper(base_url: str, api_key: str) -> dict:
    with client(base_url, api_key).messages.stream(
        model=MODEL, max_tokens=64, messages=MESSAGES
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    return {
        "text": "".join(pieces),
        "pieces": pieces,
        "final": "".join(block.text for block in final.content if block.type == "text"),
        "stop_reason": final.stop_reason,
    }


if __name__ == "__main__":
    run({"create": create, "create-stream": create_stream, "stream": stream_helper})
