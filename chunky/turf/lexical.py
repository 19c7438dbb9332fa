"""The lexical channel: deterministic, readable features of each side of a pair, with no LLM.

A feature is a name `kind:value`, stored per example and side (features.parquet) with its document frequency
(feature_stats.parquet). The kinds:

- `word:<w>` lower-cased word (letters, apostrophes inside), not a stop word and not a number;
  `ngram:<w1 w2>` / `ngram:<w1 w2 w3>` word 2- and 3-grams inside one sentence (no n-gram crosses `. ! ? ; :`
  or a line break), not made only of stop words. Words and n-grams are kept when their document frequency
  (per side) lies in [min_df, max_df * N] (defaults: min_df 5, or 2 below 1,000 examples; max_df 0.5). Only the
  first `max_tokens` (3,000) tokens of a text count.
- `format:<f>`: latex, boxed, code_fence, inline_code, code (≥ 2 lines that look like code), numbered_list
  (≥ 2 lines starting `1.`/`2)`...), numbered_parts (both "1." and "2." appear, the paper's two-part marker),
  bullet_list, heading (a markdown `#` heading), final_answer_line (GSM8K's `#### 72` line; not a heading),
  calculator_annotation (`<<48/2=24>>`), tool_call (`wolfram('...')` written in prose, not in code), bold, table (≥ 2 `|...|` lines), url, email, html, json (the whole text is a
  JSON object/array), multiple_choice (≥ 2 lines starting `A)`, `(b)`, `C.`...), arithmetic (`3 + 4`),
  equation (`x = 5`), quote_block, multi_paragraph (≥ 3 paragraphs), single_line, exclamation, emoji.
- `opening:<w>` and `opening:<w1 w2>`: the first one and two words (`opening:sure`, `opening:here is`);
  `closing:<sentence>`: the last sentence when it has at most 8 words (`closing:i hope it is correct`).
  Both kept only with df >= min_df.
- `length:<side>:<bucket>`: words (whitespace-separated): tiny <= 5, short <= 30, medium <= 150, long <= 500,
  very_long > 500.
- `script:<s>`: every writing system holding >= 20% of the letters (latin, cyrillic, greek, arabic, hebrew,
  devanagari, han, kana, hangul, thai), plus `script:mixed` when there are several.
- `language:<l>`: for Latin-script text with >= 5 words, the language whose stop words cover >= 10% of the
  words (english, spanish, french, german, portuguese, italian, dutch).
- `question:<q>`: yes_no (a sentence opening with is/are/does/can/... and ending in `?`), wh (what/why/how/...
  question), how_to, imperative (the text opens with an instruction verb: write, explain, list...),
  multiple (>= 2 question marks), question_mark.
- `template:<phrase>`: fixed task-template phrases ("you will be shown", "given the following",
  "let's think step by step", "the final answer is", "as an ai", ...), and `template:<label>:` for a line that
  starts with a short label and a colon ("Answer:", "Question:", "Options:"), kept with df >= min_df.

`regex_features(text, side)` gives one text's non-word features (no corpus statistics needed). The word /
n-gram features are built over the corpus by `LexicalBuilder`: token ids from one growing vocabulary, n-gram
keys packed into uint64 (3 x 21 bits), per-example uniqueness and document frequencies with numpy, candidate
rows spilled to disk per batch so memory stays flat and a killed build resumes from the last finished batch.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from chunky.turf.index import FEATURE_STATS_SCHEMA, FEATURES_SCHEMA, ParquetStreamWriter, write_table

SIDES = ("query", "response")

# ---- stop words (function words; English plus the few used for language detection) -------------------------

ENGLISH_STOP = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being below
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few
    for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him
    himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most mustn't my
    myself no nor not of off on once only or other ought our ours ourselves out over own same shan't she she'd
    she'll she's should shouldn't so some such than that that's the their theirs them themselves then there
    there's these they they'd they'll they're they've this those through to too under until up very was wasn't we
    we'd we'll we're we've were weren't what what's when when's where where's which while who who's whom why why's
    with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves will just also may
    might must shall""".split()
)
LANGUAGE_STOP: dict[str, frozenset[str]] = {
    "english": frozenset("the and of to is in that it for you with on are this be was have not".split()),
    "spanish": frozenset("el la de que y en los se del las por un una para con no es al lo como más pero".split()),
    "french": frozenset("le la les de des et est en un une du que qui dans pour pas sur au avec il elle ce".split()),
    "german": frozenset("der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch es".split()),
    "portuguese": frozenset("o a os as de que e do da em um uma para com não no na por mais se dos das".split()),
    "italian": frozenset("il lo la gli le di che e è un una per non con del della sono nel si da al".split()),
    "dutch": frozenset("de het een en van is dat op te in niet zijn voor met die er aan ook als bij".split()),
}

# ---- tokenisation ------------------------------------------------------------------------------------------

# Words (letters, inner apostrophes), numbers, and sentence boundaries (kept so n-grams never cross them).
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+|[.!?;:\n]")
BOUNDARY_CHARS = frozenset(".!?;:\n")


def tokenize(text: str, max_tokens: int = 3000) -> list[str]:
    """Lower-cased words, numbers and boundary marks of a text (the first `max_tokens`)."""
    toks = _TOKEN.findall(text.lower())
    return toks[:max_tokens] if len(toks) > max_tokens else toks


# ---- regex features ------------------------------------------------------------------------------------------

_M = re.MULTILINE
_I = re.IGNORECASE
FORMAT_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    # (name, pattern, minimum number of matches)
    (
        "latex",
        re.compile(
            r"\$[^$\n]+\$|\\\(|\\\[|\\(?:frac|sqrt|boxed|cdot|times|left|right|begin|end|sum|int|alpha|beta|pi|leq|geq|neq|text|mathbf|mathrm|dfrac)\b"
        ),
        1,
    ),
    ("boxed", re.compile(r"\\boxed\{"), 1),
    ("code_fence", re.compile(r"```"), 1),
    ("inline_code", re.compile(r"(?<!`)`[^`\n]+`(?!`)"), 1),
    (
        "code",
        re.compile(
            r"^\s*(?:def \w+\(|class \w+|import \w+|from [\w.]+ import|#include\b|public (?:static |class )|"
            r"function \w*\(|const \w+ =|let \w+ =|var \w+ =|return\b|for \(|for \w+ in |if \(|while \(|"
            r"print\(|console\.log\(|System\.out\.|SELECT\b|[\w.]+\(.*\);\s*$|\}\s*$)",
            _M,
        ),
        2,
    ),
    ("numbered_list", re.compile(r"^\s*\d{1,2}[.)]\s+\S", _M), 2),
    ("bullet_list", re.compile(r"^\s*[-*•]\s+\S", _M), 2),
    # a markdown heading; GSM8K's `#### 72` answer line is format:final_answer_line, not a heading
    ("heading", re.compile(r"^#{1,6}[ \t]+(?!-?\$?[\d.,/]+[ \t]*$)\S", _M), 1),
    ("final_answer_line", re.compile(r"^####[ \t]*-?\$?[\d.,/]+[ \t]*$", _M), 1),
    # GSM8K's calculator annotations: `$<<100/2=50>>50`
    ("calculator_annotation", re.compile(r"<<[^<>\n]*=[^<>\n]*>>"), 1),
    ("bold", re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"), 1),
    ("table", re.compile(r"^\s*\|.*\|\s*$", _M), 2),
    ("url", re.compile(r"https?://\S+|www\.\w+\.\w+"), 1),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), 1),
    ("html", re.compile(r"</?(?:[a-zA-Z][a-zA-Z0-9]*)(?:\s[^<>]*)?/?>"), 1),
    ("multiple_choice", re.compile(r"^\s*(?:\(?[A-Ea-e]\)|[A-E][.:])\s+\S", _M), 2),
    ("arithmetic", re.compile(r"\d\s*[-+*/×÷^]\s*\d"), 1),
    ("equation", re.compile(r"(?:\d|\b[a-zA-Z])\s*=\s*-?\d"), 1),
    ("quote_block", re.compile(r"^>\s", _M), 1),
    ("exclamation", re.compile(r"!(?:\s|$)"), 1),
    ("emoji", re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]"), 1),
]
# A tool call written into prose, Toolformer style: `wolfram('area of a circle')`. The same syntax inside code
# (a fenced block, an indented or code-looking line) is a function call, not a tool call.
_TOOL_CALL = re.compile(r"(?<![\w.])[a-z][a-z0-9_]*\((['\"])[^'\"\n]{1,300}\1\)")
_CODE_LINE = next(p for name, p, _ in FORMAT_PATTERNS if name == "code")


def _has_tool_call(text: str) -> bool:
    if "```" in text:
        return False
    for m in _TOOL_CALL.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        line = text[start : end if end >= 0 else len(text)]
        if not line[:1].isspace() and not _CODE_LINE.match(line):
            return True
    return False


_NUMBERED_1 = re.compile(r"(?:^|\s|\()1[.)]\s")
_NUMBERED_2 = re.compile(r"(?:^|\s|\()2[.)]\s")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")

SCRIPTS: list[tuple[str, re.Pattern[str]]] = [
    ("latin", re.compile(r"[A-Za-z\u00c0-\u024f]")),
    ("cyrillic", re.compile(r"[\u0400-\u04ff]")),
    ("greek", re.compile(r"[\u0370-\u03ff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff]")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]")),
    ("devanagari", re.compile(r"[\u0900-\u097f]")),
    ("han", re.compile(r"[\u4e00-\u9fff]")),
    ("kana", re.compile(r"[\u3040-\u30ff]")),
    ("hangul", re.compile(r"[\uac00-\ud7af]")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]")),
]

_AUX = (
    r"is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|may|might|must|shall|"
    r"isn't|aren't|wasn't|doesn't|don't|didn't|can't|won't"
)
QUESTION_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("yes_no", re.compile(rf"(?:^|[.!?\n]\s*)(?:{_AUX})\s[^.!?\n]*\?", _I)),
    ("wh", re.compile(r"(?:^|[.!?\n]\s*)(?:what|why|how|when|where|who|whom|whose|which)\b[^.!?\n]*\?", _I)),
    ("how_to", re.compile(r"\bhow (?:do|can|should|would|could) (?:i|you|we|one)\b|\bhow to\b", _I)),
]
IMPERATIVE_VERBS = frozenset(
    """write explain describe give list create generate summarize summarise translate calculate compute find solve
    classify identify name provide suggest rewrite edit compose design implement convert compare determine answer
    choose select read complete tell make help construct develop analyze analyse evaluate predict categorize
    extract paraphrase correct fix sort count draft outline convert define evaluate pick rate rank""".split()
)
TEMPLATE_PHRASES = [
    "you will be shown",
    "you are given",
    "you are provided",
    "given the following",
    "given a",
    "read the following",
    "answer the following question",
    "answer the question",
    "choose from",
    "choose your answer",
    "pick from",
    "select from",
    "which of the following",
    "in this task",
    "fill in the blank",
    "true or false",
    "yes or no",
    "let's think step by step",
    "step by step",
    "the final answer is",
    "i hope it is correct",
    "the answer is",
    "as an ai",
    "i'm sorry",
    "i cannot",
    "i can't",
    "here is",
    "here's",
    "sure",
    "of course",
    "note:",
    "in summary",
    "in conclusion",
]


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c in "_'"


def _templates(low: str) -> list[str]:
    """Template phrases present in lower-cased text, at word boundaries (plain substring search: fast)."""
    out = []
    for p in TEMPLATE_PHRASES:
        i = low.find(p)
        while i >= 0:
            before_ok = i == 0 or not _is_word_char(low[i - 1])
            j = i + len(p)
            after_ok = not p[-1].isalnum() or j >= len(low) or not _is_word_char(low[j])
            if before_ok and after_ok:
                out.append("template:" + p)
                break
            i = low.find(p, i + 1)
    return out
_LABEL = re.compile(r"^\s*([A-Za-z][A-Za-z ]{0,24}?)\s*:", _M)
_WORDS_ONLY = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SENTENCE_SPLIT = re.compile(r"[.!?]+(?:\s|$)")

LENGTH_BUCKETS = [(5, "tiny"), (30, "short"), (150, "medium"), (500, "long")]
# Kinds whose open vocabulary needs the min_df filter (the other regex kinds are a small fixed set).
OPEN_KINDS = ("opening", "closing")


def _norm_words(s: str) -> list[str]:
    return _WORDS_ONLY.findall(s.lower())


def _opening(text: str) -> list[str]:
    head = text.lstrip(" \t\r\n#*->\"'`([").split("\n", 1)[0]
    words = _norm_words(head[:200])
    out = []
    if words:
        out.append("opening:" + words[0])
        if len(words) > 1:
            out.append("opening:" + " ".join(words[:2]))
    return out


def _closing(text: str) -> list[str]:
    tail = text.rstrip()[-400:]
    lines = [ln for ln in tail.split("\n") if ln.strip()]
    if not lines:
        return []
    sentences = [s for s in _SENTENCE_SPLIT.split(lines[-1]) if _norm_words(s)]
    if not sentences:
        return []
    words = _norm_words(sentences[-1])
    if 0 < len(words) <= 8:
        return ["closing:" + " ".join(words)]
    return []


def _length(text: str, side: str) -> str:
    n = len(text.split())
    for limit, name in LENGTH_BUCKETS:
        if n <= limit:
            return f"length:{side}:{name}"
    return f"length:{side}:very_long"


def _scripts(text: str) -> list[str]:
    if text.isascii():
        return ["script:latin"] if re.search(r"[A-Za-z]", text) else []
    counts = [(name, len(p.findall(text))) for name, p in SCRIPTS]
    total = sum(n for _, n in counts)
    if total == 0:
        return []
    found = [f"script:{name}" for name, n in counts if n / total >= 0.2]
    if len(found) > 1:
        found.append("script:mixed")
    return found


def _language(words: list[str]) -> list[str]:
    if len(words) < 5:
        return []
    best, best_hits = None, 0
    for lang, stops in LANGUAGE_STOP.items():
        hits = sum(1 for w in words if w in stops)
        if hits > best_hits:
            best, best_hits = lang, hits
    if best is not None and best_hits >= 3 and best_hits / len(words) >= 0.1:
        return [f"language:{best}"]
    return []


def regex_features(text: str, side: str) -> list[str]:
    """The non-word features of one text (format, opening, closing, length, script, language, question, template)."""
    out: list[str] = []
    for name, pat, minimum in FORMAT_PATTERNS:
        if minimum == 1:
            if pat.search(text):
                out.append("format:" + name)
        else:
            it = pat.finditer(text)
            if next(it, None) is not None and next(it, None) is not None:
                out.append("format:" + name)
    if _has_tool_call(text):
        out.append("format:tool_call")
    if _NUMBERED_1.search(text) and _NUMBERED_2.search(text):
        out.append("format:numbered_parts")
    if len(_PARAGRAPH_BREAK.findall(text.strip())) >= 2:
        out.append("format:multi_paragraph")
    if "\n" not in text.strip():
        out.append("format:single_line")
    stripped = text.strip()
    if stripped[:1] in "{[" and stripped[-1:] in "}]":
        try:
            json.loads(stripped)
            out.append("format:json")
        except ValueError:
            pass
    out.extend(_opening(text))
    out.extend(_closing(text))
    out.append(_length(text, side))
    scripts = _scripts(text)
    out.extend(scripts)
    head_words = _norm_words(text[:2000])
    if "script:latin" in scripts:
        out.extend(_language(head_words))
    for name, pat in QUESTION_PATTERNS:
        if pat.search(text):
            out.append("question:" + name)
    if head_words and head_words[0] in IMPERATIVE_VERBS:
        out.append("question:imperative")
    q = text.count("?")
    if q:
        out.append("question:question_mark")
        if q >= 2:
            out.append("question:multiple")
    templates = _templates(text.lower())
    out.extend(templates)
    seen = set(templates)
    for m in _LABEL.finditer(text):
        label = " ".join(m.group(1).lower().split())
        if label and len(label.split()) <= 3:
            f = f"template:{label}:"
            if f not in seen:
                seen.add(f)
                out.append(f)
    return list(dict.fromkeys(out))


_SUFFIXES = ("ing", "ed", "es", "s", "ly")


def _stem(word: str) -> str:
    for suf in _SUFFIXES:
        if len(word) > len(suf) + 3 and word.endswith(suf):
            return word[: -len(suf)]
    return word


def content_stems(feature: str) -> frozenset[str]:
    """The content words of a word-like feature (word, n-gram, opening, closing, template), crudely stemmed
    (`word:weighs` -> {"weigh"}); empty for format-level features, which repeat no word."""
    kind, _, value = feature.partition(":")
    if kind not in ("word", "ngram", "opening", "closing", "template"):
        return frozenset()
    return frozenset(_stem(w) for w in _norm_words(value) if w not in ENGLISH_STOP and not w.isdigit())


def format_name_stems(feature: str) -> frozenset[str]:
    """The words naming a format-level feature (`format:code_fence` -> {"code", "fence"}, `length:response:short`
    -> {"short"}); empty for the other kinds."""
    kind, _, value = feature.partition(":")
    if kind == "length":
        value = value.rpartition(":")[2]
    elif kind != "format":
        return frozenset()
    return frozenset(_stem(w) for w in value.split("_") if w)


def echoes(query_feature: str, response_feature: str) -> bool:
    """A response feature that only repeats a word of the query feature (the topic echoing: `word:weigh` ->
    `word:weighs`), or a format the query asks for by name (`word:html` -> `format:html`, `ngram:a short` ->
    `length:response:short`: instruction following), is not a behaviour the query triggered."""
    q = content_stems(query_feature)
    return bool(q & content_stems(response_feature)) or bool(q & format_name_stems(response_feature))


def extract_features(text: str, side: str) -> list[str]:
    """Alias of `regex_features` (the per-text features that need no corpus statistics)."""
    return regex_features(text, side)


def analyse_texts(texts: Sequence[str], side: str, max_tokens: int = 3000) -> tuple[list[list[str]], list[list[str]]]:
    """Tokens and regex features of many texts (the per-text, parallelisable part of the channel)."""
    return [tokenize(t, max_tokens) for t in texts], [regex_features(t, side) for t in texts]


# ---- the corpus builder ------------------------------------------------------------------------------------

ID_BITS = 21
NONE_ID = (1 << ID_BITS) - 1  # "no word" in a packed key; also the boundary token's id
MAX_WORD_ID = NONE_ID - 1


@dataclass
class LexicalParams:
    min_df: int | None = None  # None: 5, or 2 for corpora under 1,000 examples
    max_df: float = 0.5
    ngram_max: int = 3
    max_tokens: int = 3000

    def resolved_min_df(self, n: int) -> int:
        if self.min_df is not None:
            return self.min_df
        return 2 if n < 1000 else 5


HASH_BITS = 26  # 64M buckets of int32: 256 MB


def _bucket(keys: np.ndarray) -> np.ndarray:
    """Multiplicative hash of packed keys into [0, 2**HASH_BITS)."""
    return ((keys * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - HASH_BITS)).astype(np.int64)


def _pack(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (a.astype(np.uint64) << np.uint64(2 * ID_BITS)) | (b.astype(np.uint64) << np.uint64(ID_BITS)) | c.astype(np.uint64)


def _unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = np.uint64(NONE_ID)
    return (
        ((keys >> np.uint64(2 * ID_BITS)) & mask).astype(np.int64),
        ((keys >> np.uint64(ID_BITS)) & mask).astype(np.int64),
        (keys & mask).astype(np.int64),
    )


class LexicalBuilder:
    """Builds features.parquet / feature_stats.parquet from batches of (example_id, tokens, regex features).

    State lives in `workdir` (vocabulary, spilled candidate rows, batch counter), so a killed build resumes
    after the last completed batch: `done_examples` tells the caller where to continue.
    """

    def __init__(self, workdir: Path, params: LexicalParams | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.params = params or LexicalParams()
        self.vocab: dict[str, int] = {}
        self.words: list[str] = []
        self.batches = 0
        self.done_examples = 0
        self._boundary = NONE_ID
        self._load_state()
        self._is_stop = self._stop_mask()

    # -- persistence ------------------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.workdir / "state.json"

    def _load_state(self) -> None:
        sp = self._state_path()
        if not sp.exists():
            return
        state = json.loads(sp.read_text())
        self.batches = int(state["batches"])
        self.done_examples = int(state["done_examples"])
        vocab_file = self.workdir / "vocab.txt"
        self.words = vocab_file.read_text(encoding="utf-8").split("\n")[: int(state["vocab_size"])] if state["vocab_size"] else []
        self.vocab = {w: i for i, w in enumerate(self.words)}
        # Drop spill files of a batch that was written but not recorded (the kill came in between).
        for f in self.workdir.glob("b*.npz"):
            if int(f.stem[1:].split("_")[0]) >= self.batches:
                f.unlink()

    def _save_state(self) -> None:
        vocab_file = self.workdir / "vocab.txt"
        tmp = vocab_file.with_suffix(".tmp")
        tmp.write_text("\n".join(self.words), encoding="utf-8")
        os.replace(tmp, vocab_file)
        sp = self._state_path()
        tmp = sp.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"batches": self.batches, "done_examples": self.done_examples, "vocab_size": len(self.words), "params": asdict(self.params)}
            )
        )
        os.replace(tmp, sp)

    def _stop_mask(self) -> np.ndarray:
        mask = np.zeros(max(1024, len(self.words) * 2), dtype=bool)
        for i, w in enumerate(self.words):
            if w in ENGLISH_STOP or w.isdigit():
                mask[i] = True
        return mask

    def _id(self, tok: str) -> int:
        i = self.vocab.get(tok)
        if i is None:
            i = len(self.words)
            if i > MAX_WORD_ID:
                return -1  # vocabulary full: later-seen rare words are not counted
            self.vocab[tok] = i
            self.words.append(tok)
            if i >= len(self._is_stop):
                self._is_stop = np.concatenate([self._is_stop, np.zeros(len(self._is_stop), dtype=bool)])
            if tok in ENGLISH_STOP or tok.isdigit():
                self._is_stop[i] = True
        return i

    # -- one batch --------------------------------------------------------------------------------------
    def _candidates(self, token_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(row index in batch, packed key) for every distinct word / n-gram of each text."""
        flat: list[int] = []
        doc: list[int] = []
        B = self._boundary
        for j, toks in enumerate(token_lists):
            text_ids = [B if t in BOUNDARY_CHARS else self._id(t) for t in toks]
            flat.extend(text_ids)
            flat.append(B)  # n-grams never cross texts
            doc.extend([j] * (len(text_ids) + 1))
        if not flat:
            return np.zeros(0, np.int64), np.zeros(0, np.uint64)
        ids = np.array(flat, dtype=np.int64)
        ids[ids < 0] = B  # overflowed vocabulary acts as a boundary
        docs = np.array(doc, dtype=np.int64)
        stop = self._is_stop
        real = ids != B
        is_stop = np.zeros(len(ids), dtype=bool)
        is_stop[real] = stop[ids[real]]
        none = np.full(len(ids), NONE_ID, dtype=np.int64)
        parts_doc = []
        parts_key = []
        # words
        m = real & ~is_stop
        parts_doc.append(docs[m])
        parts_key.append(_pack(ids[m], none[m], none[m]))
        # bigrams
        if self.params.ngram_max >= 2 and len(ids) > 1:
            a, b = ids[:-1], ids[1:]
            m = (a != B) & (b != B) & ~(is_stop[:-1] & is_stop[1:])
            parts_doc.append(docs[:-1][m])
            parts_key.append(_pack(a[m], b[m], none[:-1][m]))
        # trigrams
        if self.params.ngram_max >= 3 and len(ids) > 2:
            a, b, c = ids[:-2], ids[1:-1], ids[2:]
            m = (a != B) & (b != B) & (c != B) & ~(is_stop[:-2] & is_stop[1:-1] & is_stop[2:])
            parts_doc.append(docs[:-2][m])
            parts_key.append(_pack(a[m], b[m], c[m]))
        d = np.concatenate(parts_doc)
        k = np.concatenate(parts_key)
        order = np.lexsort((k, d))
        d, k = d[order], k[order]
        keep = np.ones(len(d), dtype=bool)
        keep[1:] = (d[1:] != d[:-1]) | (k[1:] != k[:-1])
        return d[keep], k[keep]

    def add_batch(
        self,
        example_ids: Sequence[int] | np.ndarray,
        tokens: dict[str, Sequence[Sequence[str]]],
        regex: dict[str, Sequence[Sequence[str]]],
    ) -> None:
        """Add one batch: for each side, the tokens and regex features of each example (same order)."""
        eids = np.asarray(example_ids, dtype=np.int64)
        arrays: dict[str, np.ndarray] = {}
        names: dict[str, list[str]] = {}  # the regex feature names of each side, flat
        for side in SIDES:
            d, k = self._candidates(tokens[side])
            arrays[f"{side}_eid"] = eids[d]
            arrays[f"{side}_key"] = k
            flat = [f for feats in regex[side] for f in feats]
            counts = [len(feats) for feats in regex[side]]
            arrays[f"{side}_reid"] = np.repeat(eids, counts)
            names[f"{side}_rfeat"] = flat
        # The regex feature names are strings: store them as one JSON list beside the numeric arrays.
        for key, flat_names in names.items():
            arrays[key] = np.array(json.dumps(flat_names))
        path = self.workdir / f"b{self.batches:06d}.npz"
        tmp = self.workdir / f"b{self.batches:06d}_tmp.npz"
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy types **kwds as if it were allow_pickle
        os.replace(tmp, path)
        self.batches += 1
        self.done_examples += len(eids)
        self._save_state()

    def _load_batch(self, i: int) -> dict[str, np.ndarray]:
        with np.load(self.workdir / f"b{i:06d}.npz") as z:
            out = {k: z[k] for k in z.files}
        for side in SIDES:
            out[f"{side}_rfeat"] = np.array(json.loads(str(out[f"{side}_rfeat"])), dtype=object)
        return out

    # -- the end ----------------------------------------------------------------------------------------
    def _name(self, key: int) -> str:
        a, b, c = _unpack(np.array([key], dtype=np.uint64))
        ws = [self.words[int(x[0])] for x in (a, b, c) if int(x[0]) != NONE_ID]
        return ("word:" if len(ws) == 1 else "ngram:") + " ".join(ws)

    def finish(self, n_examples: int, out_dir: Path) -> dict[str, str]:
        """Write features.parquet and feature_stats.parquet into out_dir; returns {file: sha256}."""
        min_df = self.params.resolved_min_df(n_examples)
        max_df = max(min_df, int(self.params.max_df * n_examples))
        kept: dict[str, np.ndarray] = {}
        names: dict[str, list[str]] = {}
        dfs: dict[str, np.ndarray] = {}
        regex_df: dict[str, Counter] = {s: Counter() for s in SIDES}
        for side in SIDES:
            # Most n-grams are rare. A first pass counts document frequencies per hash bucket (an upper bound
            # of each key's df, exact enough to drop every key below min_df); the exact count then only holds
            # the surviving keys, so memory follows the kept vocabulary, not every n-gram ever seen.
            buckets = np.zeros(1 << HASH_BITS, dtype=np.int32)
            for i in range(self.batches):
                z = self._load_batch(i)
                u, c = np.unique(_bucket(z[f"{side}_key"]), return_counts=True)
                buckets[u] += c.astype(np.int32)
                regex_df[side].update(z[f"{side}_rfeat"].tolist())
            uniq_parts, count_parts = [], []
            for i in range(self.batches):
                keys = self._load_batch(i)[f"{side}_key"]
                keys = keys[buckets[_bucket(keys)] >= min_df]
                u, c = np.unique(keys, return_counts=True)
                uniq_parts.append(u)
                count_parts.append(c)
            del buckets
            if uniq_parts:
                allk = np.concatenate(uniq_parts)
                allc = np.concatenate(count_parts)
                u, inv = np.unique(allk, return_inverse=True)
                df = np.bincount(inv, weights=allc).astype(np.int64)
            else:
                u, df = np.zeros(0, np.uint64), np.zeros(0, np.int64)
            m = (df >= min_df) & (df <= max_df)
            kept[side] = u[m]
            dfs[side] = df[m]
            names[side] = [self._name(int(k)) for k in kept[side]]
        # Regex features: fixed kinds always kept; open kinds (openings, closings, labels) need min_df.
        regex_kept = {
            side: {f for f, n in regex_df[side].items() if n >= min_df or not _open_kind(f)} for side in SIDES
        }
        writer = ParquetStreamWriter(out_dir / "features.parquet", FEATURES_SCHEMA)
        try:
            for side in SIDES:
                dictionary = pa.array(names[side], type=pa.string())
                for i in range(self.batches):
                    z = self._load_batch(i)
                    keys = z[f"{side}_key"]
                    pos = np.searchsorted(kept[side], keys)
                    pos_c = np.minimum(pos, max(len(kept[side]) - 1, 0))
                    hit = (pos < len(kept[side])) & (kept[side][pos_c] == keys) if len(kept[side]) else np.zeros(len(keys), bool)
                    if hit.any():
                        feat = pa.DictionaryArray.from_arrays(pa.array(pos_c[hit].astype(np.int32)), dictionary)
                        writer.write(
                            pa.table(
                                {
                                    "example_id": pa.array(z[f"{side}_eid"][hit]),
                                    "side": pa.array([side] * int(hit.sum()), type=pa.string()),
                                    "feature": feat.cast(pa.string()),
                                }
                            )
                        )
                    rfeat = z[f"{side}_rfeat"]
                    if len(rfeat):
                        keep = np.fromiter((f in regex_kept[side] for f in rfeat), dtype=bool, count=len(rfeat))
                        if keep.any():
                            writer.write(
                                pa.table(
                                    {
                                        "example_id": pa.array(z[f"{side}_reid"][keep]),
                                        "side": pa.array([side] * int(keep.sum()), type=pa.string()),
                                        "feature": pa.array(rfeat[keep].tolist(), type=pa.string()),
                                    }
                                )
                            )
            files = {"features.parquet": writer.close()}
        except BaseException:
            writer.abort()
            raise
        rows = []
        for side in SIDES:
            for name, df in zip(names[side], dfs[side].tolist()):
                rows.append((side, name, df))
            for f in sorted(regex_kept[side]):
                rows.append((side, f, regex_df[side][f]))
        rows.sort(key=lambda r: (r[0], -r[2], r[1]))
        stats = pa.table(
            {
                "side": pa.array([r[0] for r in rows], type=pa.string()),
                "feature": pa.array([r[1] for r in rows], type=pa.string()),
                "kind": pa.array([r[1].split(":", 1)[0] for r in rows], type=pa.string()),
                "df": pa.array([r[2] for r in rows], type=pa.int64()),
            }
        )
        files["feature_stats.parquet"] = write_table(out_dir / "feature_stats.parquet", stats, FEATURE_STATS_SCHEMA)
        self.n_features = len(rows)
        return files


def _open_kind(feature: str) -> bool:
    kind = feature.split(":", 1)[0]
    return kind in OPEN_KINDS or (kind == "template" and feature.endswith(":"))


def build_lexical(
    batches: Iterable[tuple[Sequence[int], Sequence[str], Sequence[str]]],
    workdir: Path,
    out_dir: Path,
    n_examples: int,
    params: LexicalParams | None = None,
) -> dict[str, str]:
    """Convenience: the whole channel over (example_ids, queries, responses) batches, in one process."""
    b = LexicalBuilder(workdir, params)
    for eids, queries, responses in batches:
        tq, rq = analyse_texts(queries, "query", b.params.max_tokens)
        tr, rr = analyse_texts(responses, "response", b.params.max_tokens)
        b.add_batch(eids, {"query": tq, "response": tr}, {"query": rq, "response": rr})
    return b.finish(n_examples, out_dir)
