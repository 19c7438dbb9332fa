"""Non-semantic prompt transforms for steering (paper §4.3, App. B): the same question with a
surface feature added, so a change in behaviour measures how much that feature steers the model.

Specs (chain several with repeated --transform; applied left to right):
  latex                 numbers and arithmetic written as LaTeX ($5+8=13$, \\times, \\frac{a}{b})
  template:FILE|NAME    a style frame; the file's {prompt} is replaced by the prompt (built-in: data-extraction)
  prefix:TEXT           TEXT before the prompt (\\n in TEXT is a newline)
  suffix:TEXT           TEXT after the prompt
  system:FILE|NAME      a system prompt (built-in: system-default)
  icl:FILE:N            N in-context user/assistant examples drawn (seeded) from FILE
  translate:LANG        the prompt translated by the transform model
  backstory             a first-person backstory, written by the transform model, before the prompt
  field:NAME            the prompt is the example's own field NAME (paired datasets)
  python:MODULE:FUNC    your function fn(prompt) or fn(prompt, example) -> str (MODULE may be a .py path)
All transforms except translate/backstory are deterministic; those two use temperature 0, the run's
seed and the call cache, so a re-run reproduces them.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import inspect
import random
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.errors import ChunkyError, ConfigError
from chunky.jsonl import read_jsonl
from chunky.measure.evalset import EvalExample
from chunky.models.types import Message

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "data" / "templates"


@dataclass(frozen=True)
class Prompt:
    """What the target sees: an optional system prompt, earlier turns (in-context examples), the user turn."""

    user: str
    system: str | None = None
    history: tuple[Message, ...] = ()

    def messages(self) -> list[Message]:
        out: list[Message] = []
        if self.system:
            out.append(Message("system", self.system))
        out.extend(self.history)
        out.append(Message("user", self.user))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "system": self.system, "history": [m.to_dict() for m in self.history]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prompt:
        return serde.from_dict(cls, d)


@dataclass
class TransformContext:
    """Shared by the transforms of one steering run."""

    seed: int = 0
    transform_model: str = "local"
    max_tokens: int = 512
    _model: Any = field(default=None, repr=False)

    def model(self) -> Any:
        if self._model is None:
            from chunky.models import GenerateConfig, get_model

            self._model = get_model(
                self.transform_model,
                role="transform",
                config=GenerateConfig(temperature=0.0, max_tokens=self.max_tokens, seed=self.seed),
            )
        return self._model


class Transform(ABC):
    spec: str
    uses_model: bool = False

    @abstractmethod
    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        """The transformed prompt. Raises ChunkyError/ModelError for this example only."""


def template_path(name_or_path: str, what: str) -> Path:
    """A user file, else a built-in template `chunky/data/templates/<name>.txt`."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    builtin = TEMPLATES_DIR / f"{name_or_path}.txt"
    if builtin.is_file():
        return builtin
    known = ", ".join(sorted(x.stem for x in TEMPLATES_DIR.glob("*.txt")))
    raise ConfigError(f"{what} '{name_or_path}': no such file, and not a built-in template (built-in: {known})")


# --- latex -------------------------------------------------------------------------------------

_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_VAR = r"(?<![A-Za-z0-9])[A-Za-z](?![A-Za-z0-9'])"
_TERM = rf"\(*\s*(?:{_NUM}(?:%|[A-Za-z](?![A-Za-z0-9']))?|{_VAR})\s*\)*"
_OP = r"(?:<=|>=|!=|==|\*\*|[-+*/^=<>×÷])"
_SPAN = re.compile(rf"(?<![\w$\\.]){_TERM}(?:\s*{_OP}\s*{_TERM})*")
_EXISTING_MATH = re.compile(r"(\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\])", re.S)


def _balance(span: str) -> str:
    span = span.strip()
    while span.count("(") > span.count(")") and span.startswith("("):
        span = span[1:].lstrip()
    while span.count(")") > span.count("(") and span.endswith(")"):
        span = span[:-1].rstrip()
    return span


def _to_tex(expr: str) -> str:
    s = re.sub(r"\s*(\*\*|\^)\s*(\d+|[A-Za-z])", r"^{\2}", expr)
    s = re.sub(rf"(?<![\d.])({_NUM})\s*/\s*({_NUM})(?![\d.])", r"\\frac{\1}{\2}", s)
    s = s.replace("%", r"\%")
    for a, b in (("<=", r" \leq "), (">=", r" \geq "), ("!=", r" \neq "), ("==", "="), ("×", r" \times "),
                 ("*", r" \times "), ("÷", r" \div ")):
        s = s.replace(a, b)
    return re.sub(r"  +", " ", s).strip()


def latex_text(text: str) -> str:
    """Write the numbers and arithmetic of `text` in LaTeX; text already in math mode is kept."""

    def convert(plain: str) -> str:
        def repl(m: re.Match[str]) -> str:
            raw = m.group(0)
            core = _balance(raw)
            # Math needs a digit, or an operator between single-letter variables (a*b); a lone letter is prose.
            if not re.search(r"\d", core) and not re.search(_OP, core):
                return raw
            start = raw.find(core)
            return raw[:start] + "$" + _to_tex(core) + "$" + raw[start + len(core) :]

        return _SPAN.sub(repl, plain)

    parts = _EXISTING_MATH.split(text)
    # split() with one group alternates plain text (even) and existing math (odd)
    return "".join(p if i % 2 else convert(p) for i, p in enumerate(parts))


class Latex(Transform):
    spec = "latex"

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        return replace(prompt, user=latex_text(prompt.user))


# --- text frames ------------------------------------------------------------------------------


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


@dataclass
class Template(Transform):
    spec: str
    text: str

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        return replace(prompt, user=self.text.replace("{prompt}", prompt.user).strip())


@dataclass
class Affix(Transform):
    spec: str
    text: str
    before: bool

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        if self.before:
            sep = "" if self.text.endswith((" ", "\n")) else " "
            return replace(prompt, user=self.text + sep + prompt.user)
        sep = "" if self.text.startswith((" ", "\n")) else " "
        return replace(prompt, user=prompt.user + sep + self.text)


@dataclass
class System(Transform):
    spec: str
    text: str

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        return replace(prompt, system=self.text)


@dataclass
class Field(Transform):
    spec: str
    name: str

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        v = example.meta.get(self.name)
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"transform '{self.spec}': example '{example.id}' has no text field '{self.name}'")
        return replace(prompt, user=v)


# --- in-context examples -----------------------------------------------------------------------


@dataclass
class ICL(Transform):
    spec: str
    pool: list[tuple[str, str]]
    n: int

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        candidates = [p for p in self.pool if p[0].strip() != prompt.user.strip()]
        if len(candidates) < self.n:
            raise ConfigError(f"transform '{self.spec}': only {len(candidates)} usable examples for N={self.n}")
        # Seeded per example, so each prompt gets its own stable draw regardless of evaluation order.
        digest = hashlib.sha256(f"{ctx.seed}\x00{example.id}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        shots = rng.sample(candidates, self.n)
        turns: list[Message] = []
        for q, r in shots:
            turns += [Message("user", q), Message("assistant", r)]
        return replace(prompt, history=tuple(turns) + prompt.history)


def load_icl_pool(path: Path) -> list[tuple[str, str]]:
    """(user, assistant) pairs from JSONL: Tülu `messages`, or prompt/query + response/completion fields."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such file (icl:FILE:N)")
    pool = []
    for n, row in read_jsonl(path):
        q = r = None
        msgs = row.get("messages") if isinstance(row, dict) else None
        if isinstance(msgs, list):
            for i, m in enumerate(msgs[:-1]):
                if m.get("role") == "user" and msgs[i + 1].get("role") == "assistant":
                    q, r = m.get("content"), msgs[i + 1].get("content")
                    break
        elif isinstance(row, dict):
            q = row.get("prompt") or row.get("query") or row.get("question")
            r = row.get("response") or row.get("completion") or row.get("answer")
        if not isinstance(q, str) or not isinstance(r, str):
            raise ConfigError(
                f"{path}: line {n}: needs `messages` with a user/assistant pair, or prompt + response fields"
            )
        pool.append((q, r))
    if not pool:
        raise ConfigError(f"{path}: no examples")
    return pool


# --- LLM-written transforms -------------------------------------------------------------------

_PREAMBLE = re.compile(r"^(here(?:'s| is) (?:the|a|your) [\w ]{0,40}?:|translation:|backstory:)\s*", re.I)


def clean_llm_text(text: str) -> str:
    """Strip wrappers models add around a rewrite: a "Here is the translation:" line, markers, quotes."""
    s = text.strip()
    s = _PREAMBLE.sub("", s).strip()
    s = s.replace("<<<", "").replace(">>>", "").strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'“”":
        s = s[1:-1].strip()
    if len(s) >= 2 and s[0] == "“" and s[-1] == "”":
        s = s[1:-1].strip()
    return s


@dataclass
class LLMRewrite(Transform):
    spec: str
    template: str
    language: str | None = None
    uses_model: bool = True

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        text = self.template.replace("{text}", prompt.user).replace("{language}", self.language or "")
        task = "translate" if self.language else "backstory"
        res = await ctx.model().generate(
            text, hints={"task": task, "text": prompt.user, "language": self.language}
        )
        out = clean_llm_text(res.text)
        if not out:
            raise ChunkyError(f"transform '{self.spec}': the transform model returned an empty text for '{example.id}'")
        if self.language:
            return replace(prompt, user=out)
        return replace(prompt, user=out + "\n\n" + prompt.user)


# --- user Python -------------------------------------------------------------------------------


def _import_callable(target: str, spec: str) -> Callable[..., Any]:
    module_name, sep, func_name = target.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"transform '{spec}': write python:MODULE:FUNCTION (MODULE a dotted name or a .py file)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ConfigError(f"transform '{spec}': {path}: no such file")
            mod_id = "chunky_user_transform_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            loader_spec = importlib.util.spec_from_file_location(mod_id, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_id] = module
            loader_spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # the user's working directory, as `python -m` would
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"transform '{spec}': cannot import '{module_name}': {type(e).__name__}: {e}") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"transform '{spec}': '{module_name}' has no function '{func_name}'")
    return fn


@dataclass
class PythonTransform(Transform):
    spec: str
    fn: Callable[..., Any]

    def __post_init__(self) -> None:
        try:
            params = [
                p for p in inspect.signature(self.fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            self.n_args = 2 if len(params) >= 2 else 1
        except (TypeError, ValueError):
            self.n_args = 1

    async def apply(self, prompt: Prompt, example: EvalExample, ctx: TransformContext) -> Prompt:
        args: tuple[Any, ...] = (prompt.user, example.to_dict()) if self.n_args == 2 else (prompt.user,)
        try:
            out = self.fn(*args)
            if inspect.isawaitable(out):
                out = await out
        except Exception as e:
            raise ChunkyError(f"transform '{self.spec}' failed on example '{example.id}': {type(e).__name__}: {e}") from None
        if not isinstance(out, str):
            raise ChunkyError(
                f"transform '{self.spec}' returned {type(out).__name__} for example '{example.id}', expected str"
            )
        return replace(prompt, user=out)


# --- parsing and application -------------------------------------------------------------------

TRANSFORMS: dict[str, str] = {
    "latex": "numbers and arithmetic written as LaTeX",
    "template": "template:FILE|NAME, a style frame with {prompt} (built-in: data-extraction)",
    "prefix": "prefix:TEXT before the prompt",
    "suffix": "suffix:TEXT after the prompt",
    "system": "system:FILE|NAME, a system prompt (built-in: system-default)",
    "icl": "icl:FILE:N, N in-context examples from a JSONL file",
    "translate": "translate:LANG, translated by the transform model",
    "backstory": "a persona backstory written by the transform model, before the prompt",
    "field": "field:NAME, the example's own field NAME as the transformed prompt",
    "python": "python:MODULE:FUNCTION, your own fn(prompt[, example]) -> str",
}


def parse_transform(spec: str) -> Transform:
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "latex":
        if arg:
            raise ConfigError(f"transform '{spec}': 'latex' takes no argument")
        return Latex()
    if name in ("template", "system"):
        if not arg:
            raise ConfigError(f"transform '{spec}': write {name}:FILE")
        path = template_path(arg, f"transform '{spec}':")
        text = path.read_text(encoding="utf-8")
        if name == "template":
            if "{prompt}" not in text:
                raise ConfigError(f"transform '{spec}': {path} has no {{prompt}} placeholder")
            return Template(spec, text)
        if not text.strip():
            raise ConfigError(f"transform '{spec}': {path} is empty")
        return System(spec, text.strip())
    if name in ("prefix", "suffix"):
        if not arg:
            raise ConfigError(f"transform '{spec}': write {name}:TEXT")
        return Affix(spec, _unescape(arg), before=name == "prefix")
    if name == "icl":
        path_s, sep, n_s = arg.rpartition(":")
        if not sep or not path_s:
            raise ConfigError(f"transform '{spec}': write icl:FILE:N")
        try:
            n = int(n_s)
        except ValueError:
            raise ConfigError(f"transform '{spec}': N must be a whole number, got '{n_s}'") from None
        if n < 1:
            raise ConfigError(f"transform '{spec}': N must be at least 1")
        pool = load_icl_pool(Path(path_s).expanduser())
        if len(pool) < n:
            raise ConfigError(f"transform '{spec}': {path_s} has {len(pool)} examples, fewer than N={n}")
        return ICL(spec, pool, n)
    if name == "translate":
        if not arg.strip():
            raise ConfigError(f"transform '{spec}': write translate:LANGUAGE, e.g. translate:Malay")
        return LLMRewrite(spec, (TEMPLATES_DIR / "translate.txt").read_text(encoding="utf-8"), language=arg.strip())
    if name == "backstory":
        if arg:
            raise ConfigError(f"transform '{spec}': 'backstory' takes no argument")
        return LLMRewrite(spec, (TEMPLATES_DIR / "backstory.txt").read_text(encoding="utf-8"))
    if name == "field":
        if not arg:
            raise ConfigError(f"transform '{spec}': write field:NAME")
        return Field(spec, arg)
    if name == "python":
        return PythonTransform(spec, _import_callable(arg, spec))
    raise ConfigError(f"unknown transform '{spec}' (known: {', '.join(TRANSFORMS)})")


@dataclass
class Transformed:
    prompt: Prompt | None
    error: str | None = None


async def transform_all(
    transforms: list[Transform], examples: list[EvalExample], ctx: TransformContext
) -> list[Transformed]:
    """Apply the chain to every example; a failure is recorded on its example, never fatal to the run."""
    async def one(ex: EvalExample) -> Transformed:
        p = Prompt(ex.prompt)
        try:
            for t in transforms:
                p = await t.apply(p, ex, ctx)
        except ConfigError:
            raise
        except ChunkyError as e:
            return Transformed(None, str(e))
        return Transformed(p)

    return list(await asyncio.gather(*(one(ex) for ex in examples)))
