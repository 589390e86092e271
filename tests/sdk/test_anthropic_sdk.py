"""The official `anthropic` Python SDK, unchanged, against `cordon demo`.

`/v1/messages` served both by OpenAI-protocol simulated providers (cordon
translates) and by the Anthropic-protocol one (`chat-claude`, passed through).
Uses the `demo` fixture of test_openai_sdk.py (a second demo process).
"""

import json

import anthropic
import pytest

from test_openai_sdk import demo  # noqa: F401  (the module-scoped fixture)

PROMPT = [{"role": "user", "content": "Where will this prompt be processed?"}]
TOOL = {
    "name": "lookup",
    "description": "Looks something up.",
    "input_schema": {"type": "object", "properties": {"simulated": {"type": "boolean"}}},
}


def client(demo, tenant):
    # The SDK sends the key as `x-api-key` and `anthropic-version`; base_url
    # is the gateway root (the SDK appends /v1/messages).
    return anthropic.Anthropic(base_url=f"http://{demo.addr}", api_key=demo.keys[tenant], max_retries=0)


@pytest.mark.parametrize(
    "model,provider",
    [("chat-small", "sim-fr"), ("chat-claude", "sim-ie-anthropic")],
)
def test_messages_non_stream_is_typed_and_counts_tokens(demo, model, provider):
    raw = client(demo, "eu-only").messages.with_raw_response.create(model=model, max_tokens=200, messages=PROMPT)
    assert raw.headers["x-cordon-provider"] == provider
    msg = raw.parse()
    assert isinstance(msg, anthropic.types.Message)
    assert msg.role == "assistant"
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text"
    assert msg.content[0].text.startswith(f"[simulated provider {provider}")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["chat-small", "chat-claude"])
def test_messages_stream_text_matches_the_whole_answer(demo, model):
    c = client(demo, "eu-only")
    whole = c.messages.create(model=model, max_tokens=200, messages=PROMPT)
    with c.messages.stream(model=model, max_tokens=200, messages=PROMPT) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_streamed_tool_call_input_reassembles(demo):
    c = client(demo, "global")
    whole = c.messages.create(model="chat-small", max_tokens=200, messages=PROMPT, tools=[TOOL])
    assert whole.stop_reason == "tool_use"
    call = [b for b in whole.content if b.type == "tool_use"][0]
    assert call.name == "lookup"
    assert call.input == {"simulated": True, "note": "no model ran"}
    partial = ""
    with c.messages.stream(model="chat-small", max_tokens=200, messages=PROMPT, tools=[TOOL]) as stream:
        for event in stream:
            if event.type == "input_json":
                partial += event.partial_json
        final = stream.get_final_message()
    assert json.loads(partial) == {"simulated": True, "note": "no model ran"}
    block = [b for b in final.content if b.type == "tool_use"][0]
    assert block.id.startswith("call_sim"), "the provider's tool call id passes unchanged"
    assert block.name == "lookup"
    assert block.input == {"simulated": True, "note": "no model ran"}
    assert final.stop_reason == "tool_use"


def test_policy_denial_raises_permission_denied(demo):
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client(demo, "eu-only").messages.create(model="chat-large", max_tokens=50, messages=PROMPT)
    assert e.value.status_code == 403
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "permission_error"
    assert "sim-us" in e.value.message


def test_a_bad_key_raises_authentication_error(demo):
    bad = anthropic.Anthropic(base_url=f"http://{demo.addr}", api_key="cdn_nobody00_" + "x" * 40, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="chat-small", max_tokens=50, messages=PROMPT)
