"""The edge engine on the embedded model: batched sequences, the grammar's reject-then-resample path, the close
reserve, cancellation, the shared prefix and chat prompts whose contents cannot write turn markers."""

from __future__ import annotations

import threading

import pytest

from edgetune.engine import Engine, Request
from edgetune.sampling import close_reserve, longest_items

COMMANDS = ["go to the kitchen", "stand up and wave hello", "report your battery", "find the keys in the lab"]
ENDLESS = 'root ::= "la " root'


def _chat(task, command):
    return task.messages(command)


@pytest.fixture(scope="module")
def engine(embedded_gguf_path, robot_task):
    e = Engine(embedded_gguf_path, sequences=4, n_ctx=1024, threads=2, contract=robot_task.contract)
    e.load([_chat(robot_task, "a"), _chat(robot_task, "b")])
    yield e
    e.close()


def _requests(engine, task, **kwargs):
    return [Request(prompt=engine.tokenize_chat(_chat(task, c)), **kwargs) for c in COMMANDS]


def test_prefix_is_decoded_once_and_shared(engine, robot_task):
    prompt = engine.tokenize_chat(_chat(robot_task, "go to the kitchen"))
    assert 20 < len(engine.prefix) < len(prompt) and prompt[: len(engine.prefix)] == engine.prefix


def test_batched_sequences_answer_as_each_alone(engine, robot_task):
    """Four sequences in one batch give the greedy answers each gives decoding alone."""
    requests = _requests(engine, robot_task, max_tokens=24, grammar=robot_task.contract.grammar())
    together = engine.run(requests)
    alone = [engine.run([r])[0] for r in requests]
    assert [o.text for o in together] == [o.text for o in alone]
    assert all(o.tokens for o in together)


def test_sequences_decoding_together_share_one_ubatch_in_any_submission_order(engine, robot_task):
    """A step of 4 sequences' next tokens is one llama.cpp ubatch, not one per sequence: llama.cpp puts only
    sequences with consecutive ids, in batch order, into one ubatch, so the engine orders a step's rows by id."""
    import llama_cpp

    steps = []
    decode = engine._decode_batch

    def counted():
        steps.append(engine.batch.n_tokens)
        decode()

    requests = _requests(engine, robot_task, max_tokens=16, grammar=robot_task.contract.grammar())
    done = threading.Semaphore(0)
    engine._decode_batch = counted
    try:
        before = llama_cpp.llama_perf_context(engine.ctx).n_reused
        for seq_id, request in zip((3, 1, 2, 0), requests):  # every id out of order
            engine.submit(seq_id, request, lambda outcome: done.release())
        for _ in requests:
            done.acquire()
        graphs_reused = llama_cpp.llama_perf_context(engine.ctx).n_reused - before
    finally:
        engine._decode_batch = decode
    together = steps.count(4)  # steps with all four sequences' next tokens and nothing else
    assert together >= 4
    # one ubatch of all four, the same graph step after step; split by sequence, each step runs a graph per
    # sequence set, and a graph is reused only by a ubatch of the same sequences (measured: 1 reuse in 10 steps)
    assert graphs_reused >= together - 1


def _admits(engine, grammar, prefix, token):
    """Whether the grammar, having accepted ``prefix``, allows ``token`` next."""
    import ctypes
    import math

    import llama_cpp

    from edgetune.sampling import init_grammar

    sampler = init_grammar(engine.vocab, grammar)
    try:
        for t in prefix:
            llama_cpp.llama_sampler_accept(sampler, t)
        cell = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(llama_cpp.llama_token_data_array(cell, 1, -1, False)))
        return not math.isinf(cell[0].logit)
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_constrained_greedy_is_the_free_answer_where_the_grammar_admits_it(embedded_gguf_path, engine, robot_task):
    """A constrained greedy answer follows the free one token for token until the grammar rejects the free token
    (or the close reserve starts), and the likely-candidates-first check picks what the whole vocabulary picks."""
    grammar = robot_task.contract.grammar()
    free = engine.run(_requests(engine, robot_task, max_tokens=80))
    constrained = engine.run(_requests(engine, robot_task, max_tokens=80, grammar=grammar))
    for f, c in zip(free, constrained):
        assert robot_task.contract.validate(c.text).valid, c.text
        free_all = [*f.tokens, *([f.stop_token] if f.stop_token is not None else [])]
        n = next((i for i, (a, b) in enumerate(zip(free_all, c.tokens)) if a != b), min(len(free_all), len(c.tokens)))
        closing = 80 - engine.close_reserve
        if n < len(free_all) and n < closing:
            assert not _admits(engine, grammar, c.tokens[:n], free_all[n]), (f.text, c.text)
    assert any(f.tokens != c.tokens for f, c in zip(free, constrained)), "the grammar was never needed"
    whole = Engine(embedded_gguf_path, sequences=1, n_ctx=1024, threads=2, grammar_candidates=0,
                   contract=robot_task.contract)
    whole.load([_chat(robot_task, "a"), _chat(robot_task, "b")])
    try:
        everything = whole.run(_requests(whole, robot_task, max_tokens=80, grammar=grammar))
        assert [o.text for o in everything] == [o.text for o in constrained]
        assert sum(o.full_scans for o in everything) > 0
    finally:
        whole.close()


def test_the_greedy_shortcut_picks_what_the_greedy_chain_picks(engine):
    """Greedy decoding without a penalty takes the first highest logit in Python; llama.cpp's greedy sampler over
    the same ids must agree, ties included, over the whole vocabulary and over a candidate subset."""
    import numpy as np

    from edgetune.sampling import SequenceSampler

    sampler = SequenceSampler(engine, Request(prompt=[1], max_tokens=8), seq_id=0)
    rng = np.random.default_rng(0)
    try:
        assert sampler.greedy
        for trial in range(40):
            logits = rng.integers(0, 4 if trial % 2 else 1000, engine.n_vocab).astype(np.float32)  # many ties
            ids = rng.permutation(engine.n_vocab)[:64].astype(np.intc)
            fast = [sampler._choose(None, logits), sampler._choose(ids, logits)]
            sampler.greedy = False
            assert [sampler._choose(None, logits), sampler._choose(ids, logits)] == fast
            sampler.greedy = True
    finally:
        sampler.free()
    penalized = SequenceSampler(engine, Request(prompt=[1], max_tokens=8, repeat_penalty=1.1), seq_id=0)
    assert not penalized.greedy  # a penalty changes the logits: the chain decides
    penalized.free()


def test_close_reserve_keeps_a_looping_answer_valid(engine, robot_task):
    longest = max(len(engine.tokenize_text(item)) for item in longest_items(robot_task.contract))
    assert longest >= 20  # "sport.Move(vx=-1.0, vy=-0.5, vyaw=-1.5)", ...
    assert engine.close_reserve == close_reserve(robot_task.contract, engine.tokenize_text) == longest + 4
    prompt = engine.tokenize_chat(_chat(robot_task, "walk forward, then walk forward again, and again, and again"))
    budget = engine.close_reserve + 8  # the reserve starts before any item can close by itself
    (out,) = engine.run([Request(prompt=prompt, max_tokens=budget, grammar=robot_task.contract.grammar())])
    assert out.finish == "stop" and out.forced_close and len(out.tokens) <= budget
    assert robot_task.contract.validate(out.text).valid, out.text


def test_a_cancelled_sequence_leaves_the_others_unchanged(engine, robot_task):
    """One endless sequence is cancelled mid-batch; the three others answer exactly as they do alone."""
    requests = _requests(engine, robot_task, max_tokens=24)[:3]
    alone = [engine.run([r])[0].text for r in requests]
    cancel = threading.Event()
    streamed = []

    def on_text(text):
        streamed.append(text)
        if len(streamed) == 5:
            cancel.set()

    endless = Request(prompt=engine.tokenize_chat(_chat(robot_task, "sing")), max_tokens=400, grammar=ENDLESS,
                      should_stop=lambda: "cancelled" if cancel.is_set() else None, on_text=on_text)
    outcomes = engine.run([endless, *requests])
    assert outcomes[0].finish == "cancelled" and 5 <= len(outcomes[0].tokens) < 400
    assert [o.text for o in outcomes[1:]] == alone


def test_sampling_runs_in_the_chain_seeded_and_constrained(engine, robot_task):
    """Temperature, top-k, top-p and a seed: the same seed gives the same answer, every answer passes the grammar,
    and different seeds do not all agree."""
    grammar = robot_task.contract.grammar()
    prompt = engine.tokenize_chat(_chat(robot_task, "walk to the garden then sit down"))

    def sampled(seed):
        return Request(prompt=prompt, max_tokens=48, temperature=1.2, top_k=40, top_p=0.95, repeat_penalty=1.1,
                       seed=seed, grammar=grammar)

    outs = engine.run([sampled(1), sampled(1), sampled(2), sampled(3)])
    assert outs[0].text == outs[1].text
    assert len({o.text for o in outs}) > 1
    assert all(robot_task.contract.validate(o.text).valid for o in outs), [o.text for o in outs]


def test_stop_strings_end_the_answer_before_them(engine, robot_task):
    prompt = engine.tokenize_chat(_chat(robot_task, "sing"))
    streamed = []
    (out,) = engine.run([Request(prompt=prompt, max_tokens=40, grammar='root ::= "one two three four"',
                                 stop=["three", "zzz"], on_text=streamed.append)])
    assert out.finish == "stop" and out.text == "".join(streamed) == "one two "


@pytest.mark.parametrize("gbnf, problem", [
    ("root ::= undefined-rule", "does not compile"),
    ("root ::= [", "does not compile"),
    ('start ::= "a"', "no 'root"),
])
def test_grammar_that_does_not_compile_is_reported_not_crashing(engine, robot_task, gbnf, problem):
    prompt = engine.tokenize_chat(_chat(robot_task, "go"))
    (out,) = engine.run([Request(prompt=prompt, max_tokens=4, grammar=gbnf)])
    assert out.finish == "error" and problem in out.error and problem in out.grammar_error


def test_a_grammar_that_allows_no_token_ends_the_answer_with_stop(engine, robot_task):
    """No token spells "\\x00": the whole vocabulary is rejected, and the answer ends there (it was an error, and
    in an older engine a SIGABRT)."""
    prompt = engine.tokenize_chat(_chat(robot_task, "go"))
    outs = engine.run([Request(prompt=prompt, max_tokens=8, temperature=t, seed=1, grammar='root ::= "\\x00" "a"')
                       for t in (0.0, 1.0)])
    assert [(o.finish, o.text, o.error, o.full_scans) for o in outs] == [("stop", "", "", 1)] * 2


def test_constrained_answers_close_at_the_minimum_budget(engine, robot_task):
    """At max_tokens = reserve(temperature) every contract-constrained answer closes validly: greedy over varied
    commands, and sampled at temperature 1 over seeds (a sampled answer may spell a call a character per token,
    so its reserve is the longest call's characters)."""
    grammar = robot_task.contract.grammar()
    greedy, sampled = engine.reserve(0.0), engine.reserve(1.0)
    assert greedy == engine.close_reserve and sampled == max(len(i) for i in longest_items(robot_task.contract)) + 4
    commands = [*COMMANDS, "move fast to the left for 3 seconds", "walk forward then turn left then sit then wave"]
    requests = [Request(prompt=engine.tokenize_chat(_chat(robot_task, c)), max_tokens=greedy, grammar=grammar)
                for c in commands]
    requests += [Request(prompt=engine.tokenize_chat(_chat(robot_task, c)), max_tokens=sampled, temperature=1.0,
                         seed=seed, grammar=grammar) for seed in range(4) for c in commands[-2:]]
    outs = engine.run(requests)
    assert all(robot_task.contract.validate(o.text).valid for o in outs), [o.text for o in outs]


def test_close_reserve_sizes_every_call_an_answer_may_hold(robot_task):
    items = longest_items(robot_task.contract)
    callees = {item[1:item.index("(")] for item in items}
    assert callees == set(robot_task.contract.vocabulary())  # the compact calls too, not only the SDK allowlist
    move = next(i for i in items if i.startswith('"move('))
    assert move.startswith("\"move(direction='turn_right', speed='normal', seconds=") and len(move) == 62
    # an open-vocabulary name closes after one character of its own charset (lower case here)
    assert "\"find(name='x')\", " in items


def test_a_command_cannot_write_the_templates_turn_markers(engine, robot_task):
    import llama_cpp

    from tests.edgetune.test_chat import INJECTION

    def control(tokens):
        return [t for t in tokens if llama_cpp.llama_vocab_is_control(engine.vocab, t)]

    hostile = engine.tokenize_chat(_chat(robot_task, INJECTION))
    assert control(hostile) == control(engine.tokenize_chat(_chat(robot_task, "go to the kitchen")))
    assert hostile[: len(engine.prefix)] == engine.prefix  # the shared prefix still serves it
