"""A training mix as chat conversations, and their tokenisation with a mask of the assistant tokens.

The mix is any file `chunky index` reads (Tülu `messages`, ShareGPT, prompt/response, Alpaca; JSONL, JSON,
Parquet, CSV). Unlike the index, training refuses a row it cannot use: a row without an assistant turn is
one error naming the file and row, because silently training on less than the user asked for would change
the experiment.

The loss mask comes from the base model's own chat template: the conversation is rendered once, and the
character spans of every assistant message (its content and the end-of-turn text the template puts right
after it) are mapped to tokens through the tokenizer's offsets. This needs no `{% generation %}` markers in
the template, so it works for any chat model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunky.errors import ConfigError
from chunky.measure.ablate import Conversation


@dataclass
class TokenizedExample:
    input_ids: list[int]
    assistant_masks: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(self.assistant_masks)


def mix_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_mix(path: str | Path) -> list[Conversation]:
    """Every row of the mix as a conversation; a row the trainer cannot use raises one ConfigError line."""
    from chunky.measure.ablate import _row_conversation
    from chunky.turf.load import RowSkipped, file_stem, raw_rows

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such mix file")
    stem = file_stem(str(p))
    out: list[Conversation] = []
    for rowno, row in enumerate(raw_rows(p), start=1):
        try:
            conv = _row_conversation(row, rowno, stem, None)
        except RowSkipped as e:
            what = {
                "no_user_assistant_pair": "no assistant turn",
                "row_not_an_object": "not a JSON object",
                "malformed_messages": "field 'messages' is not a list of {role, content}",
            }.get(e.reason, e.reason)
            raise ConfigError(f"{p}: row {rowno}: {what}; fix or remove the row") from None
        if not any(m["role"] == "assistant" for m in conv.messages):
            raise ConfigError(f"{p}: row {rowno}: no assistant turn; fix or remove the row")
        for i, m in enumerate(conv.messages):
            if m["role"] not in ("system", "user", "assistant", "tool"):
                raise ConfigError(f"{p}: row {rowno}: messages[{i}].role '{m['role']}' is not system/user/assistant")
        out.append(conv)
    if not out:
        raise ConfigError(f"{p}: the mix has no rows")
    return out


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to train on (each assistant turn, with the text
    the template writes between its content and the next turn, such as <|im_end|>)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        # The prefix up to this turn, with the template's assistant header, ends where the content starts.
        prefix = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        if not text.startswith(prefix):
            raise ConfigError("the base model's chat template does not render conversations prefix by prefix; "
                              "cannot locate the assistant tokens")
        start = len(prefix)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not text.startswith(upto):
            raise ConfigError("the base model's chat template does not render conversations prefix by prefix")
        end = len(upto)
        # Trailing whitespace after the end-of-turn marker (a newline) belongs to no one; leave it out.
        while end > start and text[end - 1] in " \n":
            end -= 1
        spans.append((max(start, pos), end))
        pos = end
    return text, spans


def tokenize_conversation(tokenizer: Any, conv: Conversation, max_length: int) -> TokenizedExample:
    text, spans = _assistant_spans(tokenizer, conv.messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length)
    ids = list(enc["input_ids"])
    mask = []
    for a, b in enc["offset_mapping"]:
        mask.append(1 if any(a >= s and b <= e and b > a for s, e in spans) else 0)
    return TokenizedExample(ids, mask)


def tokenize_mix(tokenizer: Any, convs: list[Conversation], max_length: int, mix: Path) -> list[TokenizedExample]:
    out = []
    for n, conv in enumerate(convs, start=1):
        ex = tokenize_conversation(tokenizer, conv, max_length)
        if ex.trained_tokens == 0:
            raise ConfigError(f"{mix}: row {n} (id {conv.id}): no assistant token within --max-length {max_length}; "
                              "raise --max-length or shorten the prompt")
        out.append(ex)
    return out
