"""The fake's deterministic token count: one token per four characters, rounded up."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def count_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message: a string content, or the `text` parts of a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def pieces(text: str) -> list[str]:
    """How a text is streamed: one chunk per word, with its surrounding whitespace."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
