"""Reading token usage out of a server-sent-event stream while passing it through untouched.

OpenAI-compatible servers put ``usage`` into the last chunk when the client asked for
``stream_options: {"include_usage": true}``. :class:`UsageSniffer` sees the bytes as they are relayed,
splits them into ``data:`` lines (chunks may cut lines anywhere) and parses only lines that mention
``"usage"``, so relaying stays cheap. Without usage in the stream, completion tokens are estimated as
the number of content-bearing chunks (vLLM sends about one token per chunk).
"""

from __future__ import annotations

import json


class UsageSniffer:
    """Accumulates ``prompt_tokens`` / ``completion_tokens`` from relayed SSE bytes."""

    def __init__(self) -> None:
        self._pending = b""
        self.prompt_tokens = 0
        self._usage_completion: int | None = None
        self._content_chunks = 0

    @property
    def completion_tokens(self) -> int:
        """Reported completion tokens, or the number of content chunks when none was reported."""
        return self._usage_completion if self._usage_completion is not None else self._content_chunks

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        if b'"usage"' in payload:
            try:
                usage = json.loads(payload).get("usage")
            except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
                usage = None
            if isinstance(usage, dict):
                self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                self._usage_completion = int(usage.get("completion_tokens") or 0)
                return
        if b'"content"' in payload or b'"text"' in payload:
            self._content_chunks += 1
