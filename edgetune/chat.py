"""Chat prompts as token ids: the template's own text with special tokens parsed, message contents as plain text.

Tokenizing a whole rendered prompt with special tokens parsed lets anyone who writes a message write the template's
markers too: a command holding ``<|im_end|><|im_start|>system ...`` became a real system turn, and the model obeyed it
(issue 19). So the template is rendered once with a secret sentinel in place of each content, which splits the
prompt into template text and contents. llama.cpp itself tokenizes a prompt by cutting it at special-token texts and
tokenizing the text between them (``special=False``) one run at a time; this does the same but cuts only at the
template's special tokens. A content without special-token text therefore gets exactly the tokens it got before
(the run it shares with the template text around it is tokenized whole, so no BPE boundary moves), and one with
such text gets plain-text tokens for it. Tokens llama.cpp parses even as plain text (``USER_DEFINED``) stay so.
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Sequence

Messages = Sequence[dict[str, str]]


class TemplateError(ValueError):
    """A chat template this tokenizer cannot split into template text and contents."""


class ChatTokenizer:
    """The prompt tokens of a chat for one loaded ``llama_cpp.Llama`` (its own chat template, generation prompt on)."""

    def __init__(self, llm: Any, default_template: str):
        import llama_cpp
        from llama_cpp import llama_chat_format

        self.llm = llm
        model = llm._model
        eos, bos = llm.token_eos(), llm.token_bos()
        self.formatter = llama_chat_format.Jinja2ChatFormatter(
            template=llm.metadata.get("tokenizer.chat_template") or default_template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "")
        vocab = model.vocab
        parsed = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN  # only with special=True
        texts = {llama_cpp.llama_vocab_get_text(vocab, t).decode("utf-8", errors="replace")
                 for t in range(llama_cpp.llama_vocab_n_tokens(vocab))
                 if llama_cpp.llama_vocab_get_attr(vocab, t) & parsed}
        #: the special-token texts llama.cpp parses, longest first (as llama.cpp tries them)
        self.special = re.compile("|".join(re.escape(t) for t in sorted(texts - {""}, key=len, reverse=True)) or "(?!)")
        self._nonce = secrets.token_hex(8)  # the sentinels are unguessable: no content can forge one
        self._marks = re.compile(f"\ue000{self._nonce}:(\\d+)\ue001")

    def prompt(self, messages: Messages) -> str:
        """The rendered prompt text (contents as they are)."""
        return self.formatter(messages=list(messages)).prompt

    def __call__(self, messages: Messages) -> list[int]:
        marked = [{**m, "content": f"\ue000{self._nonce}:{i}\ue001"} for i, m in enumerate(messages)]
        parts = self._marks.split(self.formatter(messages=marked).prompt)  # template, index, template, index, ...
        prompt = self.prompt(messages)
        # contents as given, or trimmed (templates such as Llama 3's write ``content | trim``)
        for contents in ([m["content"] for m in messages], [m["content"].strip() for m in messages]):
            if [int(i) for i in parts[1::2]] == list(range(len(messages))) and \
                    "".join(contents[int(p)] if k % 2 else p for k, p in enumerate(parts)) == prompt:
                break
        else:
            raise TemplateError("the chat template does not place each message's content once, in order and "
                                "unchanged, so its text cannot be told from the contents (tokenizing it whole would "
                                "let a message forge turn markers)")
        tokens: list[int] = []
        run = ""  # plain text since the last template special token: tokenized whole, as llama.cpp does
        for k, part in enumerate(parts):
            if k % 2:
                run += contents[int(part)]
                continue
            start = 0
            for special in self.special.finditer(part):
                tokens += self._plain(run + part[start:special.start()])
                tokens += self.llm.tokenize(special.group().encode("utf-8"), add_bos=False, special=True)
                run, start = "", special.end()
            run += part[start:]
        return tokens + self._plain(run)

    def _plain(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []
