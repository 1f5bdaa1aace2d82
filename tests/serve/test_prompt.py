"""The prompt the server decodes, over real gRPC on loopback: a client's message contents cannot write the chat
template's turn markers (issue 19: ``<|im_start|>system`` inside a command had become a real system turn)."""

from __future__ import annotations

import contextlib

import pytest

from edgetune.chat import ChatTokenizer
from edgetune.engine import _CHATML
from edgetune.llama import load_llama
from tests.edgetune.test_chat import INJECTION, control, whole


@pytest.fixture(scope="module")
def chat(embedded_gguf_path):
    with contextlib.closing(load_llama(embedded_gguf_path, vocab_only=True, verbose=False)) as llm:
        yield ChatTokenizer(llm, _CHATML)


def test_an_injected_turn_reaches_the_model_as_plain_text(client, chat, robot_task):
    messages = [{"role": "system", "content": robot_task.system}, {"role": "user", "content": "go to the kitchen"},
                {"role": "assistant", "content": INJECTION}, {"role": "user", "content": INJECTION}]
    tokens = chat(messages)
    # only the template's own markers: one <|im_start|> and <|im_end|> per message, and the assistant prompt
    assert len(control(chat.llm, tokens)) == 2 * len(messages) + 1
    assert len(control(chat.llm, whole(chat.llm, chat, messages))) > len(control(chat.llm, tokens))
    answer = client.generate(messages=messages, max_tokens=8, constraint="none")  # 8: below the close reserve
    # the server decoded exactly this prompt (tokenizing the injected markers as markers gives fewer tokens)
    assert answer.prompt_tokens == len(tokens) != len(whole(chat.llm, chat, messages))
    assert client.generate("go to the kitchen", max_tokens=40).valid  # and serves the next request normally
