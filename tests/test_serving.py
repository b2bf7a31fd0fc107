"""The OpenAI-compatible server, driven by the official `openai` client against a tiny random backbone and a saved
tiny artifact. Servers run in-process on a free loopback port and stop at the end of each `with` block."""

import http.client
import json
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from conftest import make_module  # noqa: E402
from tiny import save_tiny_hf_backbone  # noqa: E402

from svgt import GenerationConfig, generate, load_backbone, save_pretrained  # noqa: E402
from svgt.pipeline import load_guided_model  # noqa: E402
from svgt.serving import BackgroundServer, create_app  # noqa: E402
from svgt.serving.scheduler import _Row  # noqa: E402

KEY = "test-key"
MODEL = "tiny-svgt"
HELLO = [{"role": "user", "content": "hello world how are you"}]


@pytest.fixture(scope="module")
def guided(tmp_path_factory):
    path = save_tiny_hf_backbone(tmp_path_factory.mktemp("bb") / "tiny")
    bb = load_backbone(path)
    art = tmp_path_factory.mktemp("art") / "vm"
    save_pretrained(make_module(bb), art, bb)
    return load_guided_model(path, str(art))


def _app(guided, **kw):
    kw.setdefault("api_key", KEY)
    kw.setdefault("max_queue", 8)
    kw.setdefault("max_batch", 4)
    kw.setdefault("model_name", MODEL)
    return create_app(guided, **kw)


@pytest.fixture(scope="module")
def server(guided):
    with BackgroundServer(_app(guided)) as srv:
        yield srv


def _client(srv, key=KEY):
    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def _raw(srv, method, path, body=None, key=KEY, raw_body=None):
    """(status, decoded body or text) of one plain HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    try:
        return resp.status, json.loads(text)
    except json.JSONDecodeError:
        return resp.status, text


def _health(srv):
    return _raw(srv, "GET", "/health", key=None)[1]["scheduler"]


def _wait_queued(srv, n, timeout=20):
    deadline = time.monotonic() + timeout
    while _health(srv)["queued"] < n:
        assert time.monotonic() < deadline, f"never saw {n} queued requests: {_health(srv)}"
        time.sleep(0.02)


def _expected(guided, prompt, chat_template=True, **cfg):
    cfg.setdefault("max_new_tokens", 8)
    return generate(guided.backbone, guided.module, [prompt], GenerationConfig(**cfg), chat_template=chat_template)


# -- happy paths ---------------------------------------------------------------------------------------------------
def test_chat_matches_library_generate_with_usage_and_telemetry(server, guided):
    resp = _client(server).chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=8, temperature=0, extra_body={"svgt": {"refresh_every": 2}})
    ref = _expected(guided, HELLO, refresh_every=2)
    choice = resp.choices[0]
    assert resp.object == "chat.completion" and resp.model == MODEL
    assert choice.message.role == "assistant"
    assert choice.message.content == ref.texts[0]
    assert choice.finish_reason == ("length" if ref.finish_reasons[0] == "length" else "stop")
    n = len(ref.token_ids[0])
    prompt_len = len(guided.backbone.tokenizer.apply_chat_template(HELLO, add_generation_prompt=True, tokenize=True,
                                                                   return_dict=True)["input_ids"])
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (
        prompt_len, n, prompt_len + n)
    tel = resp.svgt
    scores = ref.telemetry[0].score
    assert tel["guided"] is True and tel["trained"] is True
    assert tel["max_score"] == pytest.approx(max(scores), abs=1e-5)
    assert tel["mean_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-5)
    assert tel["refreshes"] == sum(ref.telemetry[0].refreshed) and tel["refreshes"] >= 1
    assert tel["refresh_every"] == 2


def test_multi_paragraph_prompt_scores_paragraphs_like_generate(server, guided):
    messages = [{"role": "user", "content": "A long document about gardening.\n\n---\n\nNow summarise it."}]
    resp = _client(server).chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
    ref = _expected(guided, messages, max_new_tokens=6)
    whole = _expected(guided, messages, max_new_tokens=6, score_paragraphs=False)
    assert resp.choices[0].message.content == ref.texts[0]
    assert resp.svgt["max_score"] == pytest.approx(max(ref.telemetry[0].score), abs=1e-5)
    assert ref.telemetry[0].bridge_score >= whole.telemetry[0].bridge_score
    assert ref.token_ids != whole.token_ids  # the paragraphs changed the first bridge here, so the test has teeth


def test_a_module_that_scores_the_last_sentence_is_served_like_generate(server, guided):
    messages = [{"role": "user", "content": "A long document about gardening and weeds. Now answer: zq zq zq"}]
    whole = _expected(guided, messages, max_new_tokens=6)
    guided.module.config.score_last_sentence = True  # the server reads the module's setting per request
    try:
        resp = _client(server).chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
        ref = _expected(guided, messages, max_new_tokens=6)
    finally:
        guided.module.config.score_last_sentence = False
    assert resp.choices[0].message.content == ref.texts[0]
    assert resp.svgt["max_score"] == pytest.approx(max(ref.telemetry[0].score), abs=1e-5)
    assert ref.telemetry[0].bridge_score > whole.telemetry[0].bridge_score  # the sentence was scored, and won


def test_guidance_off_per_request(server, guided):
    client = _client(server)
    off = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0,
                                         extra_body={"svgt": {"enabled": False}})
    assert off.choices[0].message.content == _expected(guided, HELLO, guidance=False).texts[0]
    assert off.svgt["guided"] is False and off.svgt["max_score"] is None and off.svgt["refreshes"] == 0
    on = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0,
                                        extra_body={"svgt": {"refresh_every": 1, "momentum": 0.0,
                                                             "gate_threshold": 1e9}})
    # The gate keeps the bridge while the score is below the threshold: guided, scored, never refreshed.
    assert on.svgt["guided"] is True and on.svgt["refreshes"] == 0 and on.svgt["max_score"] is not None
    assert on.svgt["gate_threshold"] == 1e9


def test_streamed_chat_is_incremental_and_equals_plain(server):
    client = _client(server)
    kwargs = dict(model=MODEL, messages=HELLO, max_tokens=10, temperature=0, extra_body={"svgt": {"refresh_every": 3}})
    plain = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(content) == plain.choices[0].message.content
    assert len(content) > 1, "expected one chunk per token, not the whole text at once"
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == plain.choices[0].finish_reason
    assert final[0].svgt == plain.svgt
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_raw_sse_wire_format(server):
    status, text = _raw(server, "POST", "/v1/chat/completions",
                        {"model": MODEL, "messages": HELLO, "max_tokens": 4, "temperature": 0, "stream": True})
    assert status == 200
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


def test_completions_use_the_raw_prompt(server, guided):
    client = _client(server)
    resp = client.completions.create(model=MODEL, prompt="tell me a story", max_tokens=6, temperature=0)
    ref = _expected(guided, "tell me a story", chat_template=False, max_new_tokens=6)
    assert resp.object == "text_completion"
    assert resp.choices[0].text == ref.texts[0]
    assert resp.usage.prompt_tokens == len(guided.backbone.tokenizer("tell me a story")["input_ids"])
    assert resp.svgt["guided"] is True
    streamed = client.completions.create(model=MODEL, prompt="tell me a story", max_tokens=6, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == ref.texts[0]


def test_stop_sequences_cut_the_text(server, guided):
    client = _client(server)
    kwargs = dict(model=MODEL, messages=HELLO, max_tokens=12, temperature=0, extra_body={"svgt": {"enabled": False}})
    full = client.chat.completions.create(**kwargs).choices[0].message.content
    start = next(i for i in range(2, len(full) - 1) if "\ufffd" not in full[i:i + 2])
    stop = full[start:start + 2]
    cut = full[:full.find(stop)]
    resp = client.chat.completions.create(stop=[stop, "never-there"], **kwargs)
    assert resp.choices[0].message.content == cut
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens < 12
    streamed = client.chat.completions.create(stop=stop, stream=True, **kwargs)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut


def test_seeded_sampling_is_reproducible(server):
    client = _client(server)
    kwargs = dict(model=MODEL, messages=HELLO, max_tokens=8, temperature=1.3, top_p=0.9, seed=7)
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b


def test_models_and_health(server):
    models = _client(server).models.list()
    assert [m.id for m in models.data] == [MODEL]
    status, body = _raw(server, "GET", "/health", key=None)
    assert status == 200 and body["status"] == "ok" and "batch_sizes" in body["scheduler"]


# -- errors ----------------------------------------------------------------------------------------------------------
CHAT = "/v1/chat/completions"
BAD = [
    (CHAT, {"model": MODEL}, 400, "messages"),
    (CHAT, {"model": MODEL, "messages": "hi"}, 400, "messages"),
    (CHAT, {"model": MODEL, "messages": []}, 400, "messages"),
    (CHAT, {"model": MODEL, "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    (CHAT, {"model": MODEL, "messages": [{"role": "user", "content": "  "}]}, 400, "messages[0].content"),
    (CHAT, {"model": MODEL, "messages": [{"role": "user", "content": "a"}, {"role": "user"}]}, 400,
     "messages[1].content"),
    (CHAT, {"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    (CHAT, {"model": MODEL, "messages": HELLO, "max_tokens": 0}, 400, "max_tokens"),
    (CHAT, {"model": MODEL, "messages": HELLO, "max_tokens": 10_000}, 400, "max_tokens"),
    (CHAT, {"model": MODEL, "messages": HELLO, "max_tokens": 250}, 400, "max_tokens"),  # prompt + 250 > 256
    (CHAT, {"model": MODEL, "messages": HELLO, "max_completion_tokens": -3}, 400, "max_completion_tokens"),
    (CHAT, {"model": MODEL, "messages": HELLO, "max_tokens": "8"}, 400, "max_tokens"),
    (CHAT, {"model": MODEL, "messages": HELLO, "temperature": 5}, 400, "temperature"),
    (CHAT, {"model": MODEL, "messages": HELLO, "top_p": 0}, 400, "top_p"),
    (CHAT, {"model": MODEL, "messages": HELLO, "seed": 1.5}, 400, "seed"),
    (CHAT, {"model": MODEL, "messages": HELLO, "stop": [1, 2]}, 400, "stop"),
    (CHAT, {"model": MODEL, "messages": HELLO, "stream": "yes"}, 400, "stream"),
    (CHAT, {"model": MODEL, "messages": HELLO, "n": 2}, 400, "n"),
    (CHAT, {"model": MODEL, "messages": HELLO, "svgt": {"momentum": 2}}, 400, "svgt.momentum"),
    (CHAT, {"model": MODEL, "messages": HELLO, "svgt": {"enabled": "yes"}}, 400, "svgt.enabled"),
    (CHAT, {"model": MODEL, "messages": HELLO, "svgt": {"refresh_every": -1}}, 400, "svgt.refresh_every"),
    (CHAT, {"model": MODEL, "messages": HELLO, "svgt": {"bogus": 1}}, 400, "svgt.bogus"),
    (CHAT, {"model": MODEL, "messages": HELLO, "svgt": 3}, 400, "svgt"),
    (CHAT, {"model": MODEL, "messages": [{"role": "user", "content": "hello " * 300}]}, 400, "messages"),
    (CHAT, {"model": "gpt-4o", "messages": HELLO}, 404, "model"),
    (CHAT, [1, 2], 400, None),
    ("/v1/completions", {"model": MODEL}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": ""}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": ["a", "b"]}, 400, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
]


@pytest.mark.parametrize("path,body,status,param", BAD, ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_the_field(server, path, body, status, param):
    got, err = _raw(server, "POST", path, body)
    assert got == status, err
    assert set(err["error"]) == {"message", "type", "param", "code"}
    assert err["error"]["param"] == param
    if param:
        assert param in err["error"]["message"] or status == 404


def test_malformed_json_then_still_serving(server):
    status, err = _raw(server, "POST", CHAT, raw_body='{"model": "tiny-svgt", "messages": [')
    assert status == 400 and err["error"]["code"] == "invalid_json" and err["error"]["type"] == "invalid_request_error"
    status, err = _raw(server, "GET", "/v1/nope")
    assert status == 404 and "error" in err
    resp = _client(server).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, temperature=0)
    assert resp.usage.completion_tokens >= 1 or resp.choices[0].finish_reason == "stop"


def test_openai_client_sees_bad_request_with_param(server):
    with pytest.raises(openai.BadRequestError) as exc:
        _client(server).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=0)
    assert exc.value.status_code == 400 and exc.value.body["param"] == "max_tokens"


def test_api_key_required(server):
    with pytest.raises(openai.AuthenticationError) as exc:
        _client(server, key="wrong").chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
    assert exc.value.status_code == 401 and exc.value.body["code"] == "invalid_api_key"
    status, err = _raw(server, "GET", "/v1/models", key=None)
    assert status == 401 and err["error"]["code"] == "invalid_api_key"


# -- queueing and batching ---------------------------------------------------------------------------------------
def _in_threads(fns):
    results = [None] * len(fns)

    def run(i, fn):
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    return threads, results


def _join(threads):
    for t in threads:
        t.join(30)
        assert not t.is_alive()


def test_full_queue_answers_429(guided):
    with BackgroundServer(_app(guided, max_queue=2)) as srv:
        client = _client(srv)
        srv_sched = srv.server.config.app.state.scheduler
        srv_sched.pause()  # the worker takes nothing: requests stay queued
        ask = lambda: client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, temperature=0)  # noqa: E731
        threads, results = _in_threads([ask, ask])
        _wait_queued(srv, 2)
        with pytest.raises(openai.RateLimitError) as exc:
            ask()
        assert exc.value.status_code == 429 and exc.value.body["code"] == "rate_limit_exceeded"
        assert _health(srv)["rejected"] == 1
        srv_sched.resume()
        _join(threads)
        assert all(isinstance(r, openai.types.chat.ChatCompletion) for r in results), results


LIMITS = [5, 9, 7]


def test_queued_compatible_requests_share_a_batch(guided):
    prompts = [HELLO, [{"role": "user", "content": "tell me a story"}], [{"role": "user", "content": "cat"}]]
    with BackgroundServer(_app(guided, max_batch=4)) as srv:
        client = _client(srv)
        sched = srv.server.config.app.state.scheduler
        sched.pause()

        def ask(messages, n, enabled=True):
            return lambda: client.chat.completions.create(model=MODEL, messages=messages, max_tokens=n, temperature=0,
                                                          extra_body={"svgt": {"enabled": enabled}})

        threads, results = _in_threads([ask(p, n) for p, n in zip(prompts, LIMITS)] + [ask(HELLO, 7, enabled=False)])
        _wait_queued(srv, 4)
        sched.resume()
        _join(threads)
        stats = _health(srv)
    # Three guided requests ran as one batch; the unguided one is incompatible and ran alone.
    assert stats["batch_sizes"] == {"1": 1, "3": 1}, stats
    # Rows of one batch with different prompt lengths and max_tokens each get what they would get alone.
    for messages, n, got in zip(prompts, LIMITS, results):
        ref = _expected(guided, messages, max_new_tokens=n)
        assert got.choices[0].message.content == ref.texts[0]
        assert got.usage.completion_tokens == len(ref.token_ids[0])
        assert got.svgt["max_score"] == pytest.approx(max(ref.telemetry[0].score), abs=1e-5)
    assert results[3].choices[0].message.content == _expected(guided, HELLO, max_new_tokens=7, guidance=False).texts[0]


@pytest.mark.parametrize("continuous", [True, False])
def test_a_wave_joins_max_join_at_a_time_and_each_request_gets_what_it_gets_alone(guided, continuous):
    prompts = [HELLO, [{"role": "user", "content": "tell me a story"}], [{"role": "user", "content": "cat"}],
               [{"role": "user", "content": "what is two plus two"}], [{"role": "user", "content": "a"}]]
    limits = [5, 9, 7, 3, 6]
    with BackgroundServer(_app(guided, max_batch=8, max_join=2, continuous=continuous)) as srv:
        client = _client(srv)
        sched = srv.server.config.app.state.scheduler
        sched.pause()
        asks = [lambda m=m, n=n: client.chat.completions.create(model=MODEL, messages=m, max_tokens=n, temperature=0)
                for m, n in zip(prompts, limits)]
        threads, results = _in_threads(asks)
        _wait_queued(srv, len(prompts))
        sched.resume()
        _join(threads)
        stats = _health(srv)
    if continuous:  # the batch starts with two; the other three join two and one at the next steps
        assert stats["batch_sizes"] == {"2": 1} and stats["joined"] == 3 and stats["max_join"] == 2, stats
    else:  # a whole batch takes the wave at once
        assert stats["batch_sizes"] == {"5": 1} and stats["joined"] == 0, stats
    for messages, n, got in zip(prompts, limits, results):
        ref = _expected(guided, messages, max_new_tokens=n)
        assert got.choices[0].message.content == ref.texts[0]
        assert got.usage.completion_tokens == len(ref.token_ids[0])


def test_max_join_below_one_is_refused(guided):
    with pytest.raises(ValueError, match="max_join must be >= 1, got 0"):
        _app(guided, max_join=0)


def test_eos_ends_one_row_early_while_its_batch_goes_on(guided, monkeypatch):
    import svgt.serving.scheduler as scheduler_module

    other = [{"role": "user", "content": "tell me a story"}]
    free = _expected(guided, HELLO, max_new_tokens=8, stop_at_eos=False).token_ids[0]
    stop_id = free[3]
    real = scheduler_module.stop_token_ids
    monkeypatch.setattr(scheduler_module, "stop_token_ids", lambda bb, extra=None: real(bb, extra) | {stop_id})
    ref = generate(guided.backbone, guided.module, [HELLO, other],
                   GenerationConfig(max_new_tokens=8, extra_stop_token_ids=[stop_id]))
    assert ref.finish_reasons[0] == "stop" and len(ref.token_ids[0]) <= 3
    with BackgroundServer(_app(guided)) as srv:
        client = _client(srv)
        srv.server.config.app.state.scheduler.pause()
        asks = [lambda m=m: client.chat.completions.create(model=MODEL, messages=m, max_tokens=8, temperature=0)
                for m in (HELLO, other)]
        threads, results = _in_threads(asks)
        _wait_queued(srv, 2)
        srv.server.config.app.state.scheduler.resume()
        _join(threads)
        assert _health(srv)["batch_sizes"] == {"2": 1}
    for got, text, reason, ids in zip(results, ref.texts, ref.finish_reasons, ref.token_ids):
        assert (got.choices[0].message.content, got.choices[0].finish_reason) == (text, reason)
        assert got.usage.completion_tokens == len(ids)


def test_requests_arriving_together_are_batched(guided):
    with BackgroundServer(_app(guided, max_batch=8, batch_window_s=0.3)) as srv:
        client = _client(srv)
        ask = lambda: client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0)  # noqa: E731
        threads, results = _in_threads([ask] * 4)
        _join(threads)
        stats = _health(srv)
    assert stats["largest_batch"] > 1, stats
    assert len({r.choices[0].message.content for r in results}) == 1


def test_client_leaving_a_stream_frees_the_server(guided):
    with BackgroundServer(_app(guided)) as srv:
        client = _client(srv)
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=200, temperature=0,
                                                stream=True)
        for part in stream:  # leave once decoding is under way
            if part.choices and part.choices[0].delta.content:
                break
        stream.close()
        resp = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, temperature=0)
        assert resp.choices[0].finish_reason in ("length", "stop")
        deadline = time.monotonic() + 20
        while _health(srv)["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stats = _health(srv)
    # The abandoned row was dropped (its batch ended early) rather than decoded to 200 tokens.
    assert stats["cancelled"] == 1 and stats["completed"] == 1, json.dumps(stats)


# -- stop-sequence streaming, unit level ---------------------------------------------------------------------------
class _CharTokenizer:
    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class _Job:
    def __init__(self, stop, max_tokens=50):
        self.req = type("R", (), {"stop": stop})()
        self.max_tokens = max_tokens


def _feed(text, stop, max_tokens=50):
    row = _Row(_Job(stop, max_tokens), _CharTokenizer(), {0}, threading.Lock())
    out = []
    for ch in text:
        out.append(row.push(ord(ch)))
        if row.finish:
            break
    return out, row


def test_stream_holds_back_a_possible_stop_sequence():
    out, row = _feed("abcEN!xyz", ["END"])
    assert out[:3] == ["a", "b", "c"] and out[3] == "" and out[4] == ""  # "E", "EN" might start "END"
    assert out[5] == "EN!" and row.finish is None
    out, row = _feed("abENDxyz", ["END", "zz"])
    assert "".join(out) == "ab" == row.text and row.finish == "stop" and len(row.ids) == 5
    out, row = _feed("abcdef", [], max_tokens=3)
    assert "".join(out) == "abc" and row.finish == "length"
    out, row = _feed("ab\x00cd", [])
    assert "".join(out) == "ab" and row.finish == "stop" and row.ids == [97, 98]


# -- the decoder's per-token callback, and failures ----------------------------------------------------------------
@pytest.mark.parametrize("cfg", [dict(guidance=False), dict(refresh_every=0), dict(refresh_every=2),
                                 dict(refresh_every=2, refresh_mode="exact"), dict(num_bridge_tokens=0)])
def test_on_token_hands_over_exactly_what_generate_returns(llama, cfg):
    from svgt.generation import GuidedDecoder
    from svgt.prompts import encode_prompts

    module = make_module(llama, num_bridge_tokens=cfg.pop("num_bridge_tokens", 3))
    config = GenerationConfig(max_new_tokens=7, stop_at_eos=False, **cfg)
    prompts = ["a longer prompt about cats", "short"]
    ref = generate(llama, module, prompts, config, chat_template=False)
    seen, counts = [], []

    def on_token(tokens, telemetry):
        seen.append(tokens.tolist())
        counts.append([len(t.score) for t in telemetry])
        return True

    GuidedDecoder(llama, module, config, on_token=on_token).run(*encode_prompts(llama.tokenizer, prompts, False))
    assert [list(col) for col in zip(*seen)] == ref.token_ids
    if config.guidance and module.config.num_bridge_tokens:
        # When token t is handed over, the telemetry of every token up to t is there.
        assert counts == [[t + 1, t + 1] for t in range(len(seen))]
    # Returning False stops the run before the next forward pass.
    calls = []
    GuidedDecoder(llama, module, config, on_token=lambda tokens, tel: calls.append(tokens) and False).run(
        *encode_prompts(llama.tokenizer, prompts, False))
    assert len(calls) == 1


@pytest.mark.parametrize("continuous", [True, False])
def test_a_failing_batch_answers_500_and_the_server_goes_on(guided, monkeypatch, continuous):
    import svgt.serving.scheduler as scheduler_module

    def boom(self, *args, **kwargs):
        raise RuntimeError("simulated out of memory")

    with BackgroundServer(_app(guided, continuous=continuous)) as srv:
        client = _client(srv)
        if continuous:
            monkeypatch.setattr(scheduler_module.ContinuousBatch, "join", boom)
        else:
            monkeypatch.setattr(scheduler_module.GuidedDecoder, "run", boom)
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)
        assert exc.value.status_code == 500 and exc.value.body["type"] == "server_error"
        with pytest.raises(openai.APIError, match="simulated out of memory"):
            list(client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, stream=True))
        monkeypatch.undo()
        resp = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3, temperature=0)
        assert resp.choices[0].finish_reason in ("length", "stop")
        assert _health(srv)["failed"] == 2


# -- continuous batching -------------------------------------------------------------------------------------------
STORY = [{"role": "user", "content": "tell me a story"}]


def _slow_steps(monkeypatch, delay=0.03):
    """Every decoding step takes at least `delay` s (continuous or whole batches), so that requests surely overlap."""
    from svgt.generation import GuidedDecoder

    real = GuidedDecoder._advance

    def advance(self, *args):
        time.sleep(delay)
        return real(self, *args)

    monkeypatch.setattr(GuidedDecoder, "_advance", advance)


def _wait(srv, predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate(_health(srv)):
        assert time.monotonic() < deadline, _health(srv)
        time.sleep(0.01)


def _long_request(client, done, n=40, **extra):
    def ask():
        resp = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=n, temperature=0, **extra)
        done["long"] = time.monotonic()
        return resp
    return ask


def test_a_request_joins_the_running_batch_and_gets_what_it_gets_alone(guided, monkeypatch):
    long_ref = _expected(guided, STORY, max_new_tokens=40)
    assert len(long_ref.token_ids[0]) == 40  # the running request cannot end early
    _slow_steps(monkeypatch)
    done = {}
    with BackgroundServer(_app(guided)) as srv:
        client = _client(srv)
        threads, results = _in_threads([_long_request(client, done)])
        _wait(srv, lambda h: h["steps"] >= 3)  # the first request is decoding
        short = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5, temperature=0)
        short_done = time.monotonic()
        _join(threads)
        stats = _health(srv)
    assert stats["joined"] == 1 and stats["batch_sizes"] == {"1": 1}, stats
    assert short_done < done["long"]  # it started within a step, not after the running request
    assert short.choices[0].message.content == _expected(guided, HELLO, max_new_tokens=5).texts[0]
    assert results[0].choices[0].message.content == long_ref.texts[0]
    assert 1 < stats["mean_rows_per_step"] < 2


def test_a_client_leaving_mid_batch_frees_its_row_and_the_batch_goes_on(guided, monkeypatch):
    _slow_steps(monkeypatch)
    done = {}
    with BackgroundServer(_app(guided)) as srv:
        client = _client(srv)
        threads, results = _in_threads([_long_request(client, done)])
        _wait(srv, lambda h: h["steps"] >= 2)
        stream = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=200, temperature=0,
                                                stream=True)
        for part in stream:  # leave once it is decoding in the batch
            if part.choices and part.choices[0].delta.content:
                break
        _wait(srv, lambda h: h["running"] == 2)
        stream.close()
        _wait(srv, lambda h: h["cancelled"] == 1 and h["running"] == 1)  # its row left; the other goes on
        assert "long" not in done
        _join(threads)
        stats = _health(srv)
    assert stats["completed"] == 1 and stats["joined"] == 1, stats
    assert results[0].choices[0].message.content == _expected(guided, STORY, max_new_tokens=40).texts[0]


@pytest.mark.parametrize("kind", ["incompatible", "exact refresh"])
def test_requests_that_cannot_share_the_batch_wait_for_it(guided, monkeypatch, kind):
    # An unguided request cannot join a guided batch; a guided request behind it in the queue does not overtake it.
    # Exact refresh never joins a running batch.
    _slow_steps(monkeypatch)
    exact = {"svgt": {"refresh_every": 2, "refresh_mode": "exact"}}
    long_extra = {"extra_body": exact} if kind == "exact refresh" else {}
    done, finished = {}, {}

    def ask(name, enabled=True, **svgt):
        def run():
            resp = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0,
                                                  extra_body={"svgt": {"enabled": enabled, **svgt}})
            finished[name] = time.monotonic()
            return resp
        return run

    with BackgroundServer(_app(guided)) as srv:
        client = _client(srv)
        threads, results = _in_threads([_long_request(client, done, n=30, **long_extra)])
        _wait(srv, lambda h: h["running"] == 1)
        if kind == "incompatible":
            more, more_results = _in_threads([ask("unguided", enabled=False)])
            _wait_queued(srv, 1)
            later, later_results = _in_threads([ask("guided")])
            threads += more + later
        else:
            more, more_results = _in_threads([ask("exact", **exact["svgt"])])
            threads += more
        _join(threads)
        stats = _health(srv)
    assert stats["joined"] == 0, stats
    assert min(finished.values()) > done["long"]
    if kind == "incompatible":
        assert finished["guided"] > finished["unguided"]
        assert more_results[0].choices[0].message.content == _expected(
            guided, HELLO, max_new_tokens=4, guidance=False).texts[0]
        assert later_results[0].choices[0].message.content == _expected(guided, HELLO, max_new_tokens=4).texts[0]
    else:
        assert more_results[0].choices[0].message.content == _expected(
            guided, HELLO, max_new_tokens=4, refresh_every=2, refresh_mode="exact").texts[0]


@pytest.fixture(scope="module")
def co_judged(tmp_path_factory):
    """A module that names a co-judge on a backbone of another family, loaded as `svgt serve` loads it."""
    root = tmp_path_factory.mktemp("co")
    judge_bb = load_backbone(save_tiny_hf_backbone(root / "judge-bb", family="qwen2"))
    save_pretrained(make_module(judge_bb, seed=5, extract_layer=1), root / "judge", judge_bb)
    path = save_tiny_hf_backbone(root / "bb")
    bb = load_backbone(path)
    host = make_module(bb, margin=1.0, gate_threshold=0.0, co_judge=str(root / "judge"),
                       co_judge_stats=[0.2, 0.5], score_stats=[[0.1, 1.5]])
    save_pretrained(host, root / "vm", bb)
    return load_guided_model(path, str(root / "vm"))


@pytest.mark.parametrize("continuous", [True, False])
def test_the_server_asks_the_co_judge_as_generate_does(co_judged, continuous):
    chats = [HELLO, [{"role": "user", "content": "tell me a story about a cat"}]]
    with BackgroundServer(_app(co_judged, continuous=continuous)) as srv:
        client = _client(srv)
        sched = srv.server.config.app.state.scheduler
        sched.pause()  # both chats share one batch (or one joins the other): the rows' opinions stay their own
        threads, results = _in_threads([lambda m=m: client.chat.completions.create(
            model=MODEL, messages=m, max_tokens=6, temperature=0) for m in chats])
        _wait_queued(srv, len(chats))
        sched.resume()
        _join(threads)
        completion = client.completions.create(model=MODEL, prompt="tell me a story", max_tokens=6, temperature=0)
    for got, prompt, chat in [*zip(results, chats, [True, True]), (completion, "tell me a story", False)]:
        ref = _expected(co_judged, prompt, chat_template=chat, max_new_tokens=6)
        alone = _expected(co_judged, prompt, chat_template=chat, max_new_tokens=6, co_judge=False)
        text = got.choices[0].message.content if chat else got.choices[0].text
        assert text == ref.texts[0]
        scores = ref.telemetry[0].score  # the first is the prompt's, as both judges see it
        assert got.svgt["mean_score"] == pytest.approx(sum(scores) / len(scores), abs=1e-6)
        assert ref.telemetry[0].bridge_score != pytest.approx(alone.telemetry[0].bridge_score, abs=1e-3)
