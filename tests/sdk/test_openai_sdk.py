"""The official `openai` Python SDK, unchanged, against `cordon demo`.

Starts `cordon demo --listen 127.0.0.1:0` (binary from $CORDON_BIN, default
target/debug/cordon), reads the address and the demo keys from its banner, and
talks to it only through `openai.OpenAI(base_url=..., api_key=...)`.
Run by tests/sdk.rs (`cargo test --test sdk`) or directly:

    CORDON_BIN=target/debug/cordon .venv/bin/python -m pytest -q tests/sdk
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import threading

import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORDON_BIN = os.environ.get("CORDON_BIN", str(ROOT / "target" / "debug" / "cordon"))
PROMPT = [{"role": "user", "content": "Where will this prompt be processed?"}]


class Demo:
    def __init__(self, banner):
        text = "\n".join(banner)
        self.banner = text
        self.addr = re.search(r"^cordon listening on (\S+)$", text, re.M).group(1)
        self.base_url = f"http://{self.addr}/v1"
        self.keys = dict(re.findall(r"^\s+(\S+)\s+key (cdn_[a-z0-9]{8}_[A-Za-z0-9]+)$", text, re.M))
        self.dir = pathlib.Path(re.search(r"^\s+files\s+(\S+)", text, re.M).group(1))

    def client(self, tenant):
        return openai.OpenAI(base_url=self.base_url, api_key=self.keys[tenant], max_retries=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    log = tmp_path_factory.mktemp("cordon") / "demo.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [CORDON_BIN, "demo", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    banner, ready = [], threading.Event()

    def read():
        for line in proc.stdout:
            banner.append(line.rstrip("\n"))
            if line.startswith("Serving."):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(60) or proc.poll() is not None:
        proc.kill()
        pytest.fail("cordon demo did not start:\n" + "\n".join(banner) + "\n" + log.read_text())
    d = Demo(banner)
    yield d
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
    assert not d.dir.exists(), "the demo's temporary directory was not deleted"


def test_banner_says_demo_and_simulated_and_has_a_key_per_tenant(demo):
    assert "DEMO" in demo.banner and "SIMULATED" in demo.banner
    assert set(demo.keys) == {"eu-only", "global"}
    assert f'OpenAI(base_url="{demo.base_url}", api_key="{demo.keys["global"]}")' in demo.banner
    assert "x-cordon-require" in demo.banner


def test_chat_completion_is_typed_and_counts_tokens(demo):
    raw = demo.client("eu-only").chat.completions.with_raw_response.create(model="chat-small", messages=PROMPT)
    assert raw.headers["x-cordon-provider"] == "sim-fr"
    assert raw.headers["x-cordon-policy"]
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion)
    content = completion.choices[0].message.content
    assert content.startswith("[simulated provider sim-fr, Paris]")
    assert completion.choices[0].finish_reason == "stop"
    u = completion.usage
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens

    longer = [{"role": "user", "content": "word " * 300}]
    bigger = demo.client("eu-only").chat.completions.create(model="chat-small", messages=longer)
    assert bigger.usage.prompt_tokens > u.prompt_tokens + 300


def test_stream_reassembles_the_text_without_usage_unless_asked(demo):
    client = demo.client("global")
    whole = client.chat.completions.create(model="chat-small", messages=PROMPT)
    chunks = list(client.chat.completions.create(model="chat-small", messages=PROMPT, stream=True))
    assert len(chunks) > 3
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert text.startswith("[simulated provider sim-us, Virginia]")
    assert all(c.usage is None for c in chunks), "usage was not asked for"


def test_stream_with_include_usage_ends_with_a_usage_chunk(demo):
    client = demo.client("eu-only")
    whole = client.chat.completions.create(model="chat-small", messages=PROMPT)
    chunks = list(
        client.chat.completions.create(
            model="chat-small", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


# The matrix: this SDK against a model served by an OpenAI-protocol provider
# (`chat-small`, sim-fr for the eu-only tenant) and by the Anthropic-protocol
# one (`chat-claude`, translated by cordon), each plain, streamed, and as a
# streamed tool call.
PROVIDERS = [
    pytest.param("chat-small", "sim-fr", "call_sim", id="openai-protocol"),
    pytest.param("chat-claude", "sim-ie-anthropic", "toolu_sim", id="anthropic-protocol"),
]
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Looks something up.",
        "parameters": {"type": "object", "properties": {"simulated": {"type": "boolean"}}},
    },
}
TOOL_INPUT = {"simulated": True, "note": "no model ran"}


def assert_usage(u):
    assert u is not None
    assert u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


@pytest.mark.parametrize("mode", ["non-stream", "stream", "tool-call"])
@pytest.mark.parametrize("model,provider,call_prefix", PROVIDERS)
def test_matrix(demo, model, provider, call_prefix, mode):
    client = demo.client("eu-only")
    if mode == "non-stream":
        raw = client.chat.completions.with_raw_response.create(model=model, messages=PROMPT)
        assert raw.headers["x-cordon-provider"] == provider
        whole = raw.parse()
        assert isinstance(whole, ChatCompletion)
        assert whole.model == model
        assert whole.choices[0].message.role == "assistant"
        assert whole.choices[0].message.content.startswith(f"[simulated provider {provider}")
        assert whole.choices[0].finish_reason == "stop"
        assert_usage(whole.usage)
        return

    if mode == "stream":
        whole = client.chat.completions.create(model=model, messages=PROMPT)
        with client.chat.completions.with_streaming_response.create(
            model=model, messages=PROMPT, stream=True, stream_options={"include_usage": True}
        ) as raw:
            assert raw.headers["x-cordon-provider"] == provider
            chunks = list(raw.parse())
        assert len(chunks) > 3
        assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith(f"[simulated provider {provider}")
        assert text == whole.choices[0].message.content
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["stop"]
        assert chunks[-1].choices == []
        assert_usage(chunks[-1].usage)
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        assert all(c.usage is None for c in chunks[:-1])
        return

    # A tool call, plain and then streamed: id and name kept, arguments valid JSON.
    whole = client.chat.completions.create(model=model, messages=PROMPT, tools=[TOOL])
    assert isinstance(whole, ChatCompletion)
    assert whole.choices[0].finish_reason == "tool_calls"
    (call,) = whole.choices[0].message.tool_calls
    assert call.type == "function"
    assert call.id.startswith(call_prefix), "the provider's tool call id passes unchanged"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == TOOL_INPUT
    assert_usage(whole.usage)

    with client.chat.completions.with_streaming_response.create(
        model=model, messages=PROMPT, tools=[TOOL], stream=True, stream_options={"include_usage": True}
    ) as raw:
        assert raw.headers["x-cordon-provider"] == provider
        chunks = list(raw.parse())
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    ids, names, fragments = [], [], []
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            assert tc.index == 0
            if tc.id:
                ids.append(tc.id)
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            if tc.function and tc.function.arguments:
                fragments.append(tc.function.arguments)
    assert len(ids) == 1 and ids[0].startswith(call_prefix)
    assert names == ["lookup"]
    assert len(fragments) > 1, "the arguments arrive in pieces"
    assert json.loads("".join(fragments)) == TOOL_INPUT
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert_usage(chunks[-1].usage)


def test_embeddings_are_typed_float_vectors(demo):
    client = demo.client("eu-only")
    # The SDK asks for base64 by default and decodes it.
    e = client.embeddings.create(model="embed-small", input=["bonjour le monde", "hello"])
    assert isinstance(e, CreateEmbeddingResponse)
    assert [d.index for d in e.data] == [0, 1]
    for d in e.data:
        assert len(d.embedding) == 64
        assert all(isinstance(x, float) for x in d.embedding)
    assert e.usage.prompt_tokens > 0
    same = client.embeddings.create(model="embed-small", input="bonjour le monde", encoding_format="float")
    assert [round(x, 5) for x in same.data[0].embedding] == [round(x, 5) for x in e.data[0].embedding]
    small = client.embeddings.create(model="embed-small", input="hello", dimensions=8)
    assert len(small.data[0].embedding) == 8


def test_models_lists_only_what_the_key_may_reach(demo):
    eu = {m.id for m in demo.client("eu-only").models.list()}
    assert eu == {"chat-small", "chat-claude", "embed-small"}
    assert "chat-large" not in eu, "chat-large is served only by sim-us"
    world = {m.id for m in demo.client("global").models.list()}
    assert world == {"chat-small", "chat-large", "chat-claude", "embed-small"}
    assert "chat-cheap" not in world, "only sim-cn serves it, and it trains on prompts"


def test_policy_denial_is_a_permission_denied_error_naming_provider_and_rule(demo):
    with pytest.raises(openai.PermissionDeniedError) as e:
        demo.client("eu-only").chat.completions.create(model="chat-large", messages=PROMPT)
    assert e.value.status_code == 403
    assert e.value.code == "policy_denied"
    assert "sim-us" in e.value.message and "processing_in" in e.value.message

    with pytest.raises(openai.PermissionDeniedError) as e:
        demo.client("global").chat.completions.create(model="chat-cheap", messages=PROMPT)
    assert "sim-cn" in e.value.message and "no_training" in e.value.message


def test_a_request_can_narrow_its_policy_with_x_cordon_require(demo):
    client = demo.client("global")
    raw = client.chat.completions.with_raw_response.create(
        model="chat-small", messages=PROMPT, extra_headers={"x-cordon-require": "processing_in=EU"}
    )
    assert raw.headers["x-cordon-provider"] == "sim-de-us-parent"
    raw = client.chat.completions.with_raw_response.create(
        model="chat-small", messages=PROMPT, extra_headers={"x-cordon-require": "jurisdiction_in=EU"}
    )
    assert raw.headers["x-cordon-provider"] == "sim-fr"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="chat-small", messages=PROMPT, extra_headers={"x-cordon-require": "no_such_rule=1"}
        )


def test_unknown_model_is_not_found(demo):
    with pytest.raises(openai.NotFoundError) as e:
        demo.client("global").chat.completions.create(model="no-such-model", messages=PROMPT)
    assert e.value.code == "model_not_found"


def test_bad_key_is_an_authentication_error(demo):
    for key in ["cdn_aaaaaaaa_" + "A" * 40, "sk-not-a-cordon-key"]:
        client = openai.OpenAI(base_url=demo.base_url, api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as e:
            client.chat.completions.create(model="chat-small", messages=PROMPT)
        assert e.value.status_code == 401
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
