"""An answer's text as it streams out of the engine, token bytes in, text pieces out."""

from __future__ import annotations

import codecs
from typing import Callable, Sequence


class AnswerText:
    """Completion text as it streams: UTF-8 assembled across tokens, stop strings cut off and held back until
    they can no longer begin."""

    def __init__(self, stop: Sequence[str], emit: Callable[[str], None]):
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.sent = 0
        self.emit = emit

    def add(self, piece: bytes, final: bool = False) -> bool:
        """Append a token's bytes; True when a stop string appeared (the text then ends before it)."""
        self.text += self.decoder.decode(piece, final=final)
        start = max(0, self.sent - self.hold)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self._send(len(self.text))
            return True
        keep = 0 if final else next((k for k in range(min(self.hold, len(self.text)), 0, -1)
                                     if any(s.startswith(self.text[-k:]) for s in self.stop)), 0)
        self._send(len(self.text) - keep)
        return False

    def _send(self, upto: int) -> None:
        if upto > self.sent:
            self.emit(self.text[self.sent:upto])
            self.sent = upto
