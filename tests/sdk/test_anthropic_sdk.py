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


# The matrix: this SDK against a model served by an OpenAI-protocol provider
# (`chat-small`, sim-fr for the eu-only tenant, translated by cordon) and by
# the Anthropic-protocol one (`chat-claude`, passed through), each plain,
# streamed, and as a streamed tool call.
PROVIDERS = [
    pytest.param("chat-small", "sim-fr", "call_sim", id="openai-protocol"),
    pytest.param("chat-claude", "sim-ie-anthropic", "toolu_sim", id="anthropic-protocol"),
]
TOOL_INPUT = {"simulated": True, "note": "no model ran"}


@pytest.mark.parametrize("mode", ["non-stream", "stream", "tool-call"])
@pytest.mark.parametrize("model,provider,call_prefix", PROVIDERS)
def test_matrix(demo, model, provider, call_prefix, mode):
    c = client(demo, "eu-only")
    if mode == "non-stream":
        raw = c.messages.with_raw_response.create(model=model, max_tokens=200, messages=PROMPT)
        assert raw.headers["x-cordon-provider"] == provider
        msg = raw.parse()
        assert isinstance(msg, anthropic.types.Message)
        assert msg.role == "assistant"
        assert msg.model == model
        assert msg.stop_reason == "end_turn"
        assert msg.content[0].type == "text"
        assert msg.content[0].text.startswith(f"[simulated provider {provider}")
        assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
        return

    if mode == "stream":
        whole = c.messages.create(model=model, max_tokens=200, messages=PROMPT)
        with c.messages.stream(model=model, max_tokens=200, messages=PROMPT) as stream:
            assert stream.response.headers["x-cordon-provider"] == provider
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert isinstance(final, anthropic.types.Message)
        assert text.startswith(f"[simulated provider {provider}")
        assert text == whole.content[0].text
        assert final.content[0].text == text
        assert final.stop_reason == "end_turn"
        assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
        assert final.usage.output_tokens == whole.usage.output_tokens
        return

    # A tool call, plain and then streamed: id and name kept, input valid JSON.
    whole = c.messages.create(model=model, max_tokens=200, messages=PROMPT, tools=[TOOL])
    assert isinstance(whole, anthropic.types.Message)
    assert whole.stop_reason == "tool_use"
    (call,) = [b for b in whole.content if b.type == "tool_use"]
    assert call.id.startswith(call_prefix), "the provider's tool call id passes unchanged"
    assert call.name == "lookup"
    assert call.input == TOOL_INPUT
    assert whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0

    partial, pieces, starts = "", 0, []
    with c.messages.stream(model=model, max_tokens=200, messages=PROMPT, tools=[TOOL]) as stream:
        assert stream.response.headers["x-cordon-provider"] == provider
        for event in stream:
            if event.type == "content_block_start":
                starts.append(event.content_block)
            elif event.type == "input_json":
                partial += event.partial_json
                pieces += bool(event.partial_json)
        final = stream.get_final_message()
    assert pieces > 1, "the input arrives in pieces"
    assert json.loads(partial) == TOOL_INPUT
    (start,) = [b for b in starts if b.type == "tool_use"]
    assert start.id.startswith(call_prefix) and start.name == "lookup"
    (block,) = [b for b in final.content if b.type == "tool_use"]
    assert block.id == start.id
    assert block.name == "lookup"
    assert block.input == TOOL_INPUT
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


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
