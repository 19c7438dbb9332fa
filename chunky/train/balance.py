"""Counter-examples for a chunk (paper §4.4, A.4.2): the second axis of the causal grid.

Three ways, combinable in one call; each row written is a Tülu-schema conversation:
- strip: the chunk's own examples with the behaviour removed from every assistant turn by a regex
  (A.4.2: "the original data with the phrase removed");
- template: the chunk's trigger format answered with the intended behaviour (Fig. 10a: true facts asked the same
  way, answered correctly), rendered from a YAML/JSON file `{prompt, response, rows: [{field: value}]}`;
- rewrite: any model rewrites each chunk example's answer without the behaviour; a detector checks every rewrite,
  and one in which the behaviour still fires is rejected and counted.

The output JSONL is ready for `chunky ablate --add` or an experiment's counter-example axis; OUT.manifest.json
records what was made, what was rejected and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chunky.errors import ConfigError, ModelError
from chunky.measure.ablate import Conversation, manifest_path
from chunky.measure.detectors import Detection, get_detector

MANIFEST_FORMAT = "chunky-balance-manifest"
DEFAULT_REWRITE = (
    "Rewrite the answer below so that it answers the question just as well but no longer {behaviour}. "
    "Reply with the rewritten answer only.\n\nQuestion:\n{query}\n\nAnswer:\n{response}"
)


@dataclass
class BalancePlan:
    mix: str
    out: str
    match: str | None = None  # regex selecting the chunk
    match_side: str = "any"
    source: str | None = None  # or a whole source as the chunk
    strip: str | None = None
    template: str | None = None
    rewrite_model: str | None = None
    detector: str | None = None  # the behaviour: checks strip and rewrite outputs
    behaviour: str = "shows the behaviour"
    instruction: str = DEFAULT_REWRITE
    limit: int | None = None  # at most this many chunk examples to edit
    max_tokens: int = 512
    out_source: str | None = None  # source name of the rows written (default counter:<method>)

    def check(self) -> None:
        if not (self.strip or self.template or self.rewrite_model):
            raise ConfigError("balance: give at least one of --strip, --template, --rewrite")
        if (self.strip or self.rewrite_model) and not (self.match or self.source):
            raise ConfigError("balance: --strip and --rewrite edit the chunk's examples; name it with --match or --source")
        if self.rewrite_model and not self.detector:
            raise ConfigError("balance: --rewrite needs --detector, which rejects rewrites that still show the behaviour")
        if self.match_side not in ("query", "response", "any"):
            raise ConfigError(f"--match-side '{self.match_side}': use query, response or any")
        for flag, rx in (("--match", self.match), ("--strip", self.strip)):
            if rx:
                try:
                    re.compile(rx)
                except re.error as e:
                    raise ConfigError(f"{flag} '{rx}': bad regular expression: {e}") from None
        if self.detector:
            get_detector(self.detector)


@dataclass
class MethodReport:
    method: str
    made: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BalanceManifest:
    mix: str
    mix_sha256: str
    output: str
    output_sha256: str
    chunk: dict[str, Any]
    chunk_rows: int
    methods: list[MethodReport]
    rows: int
    params: dict[str, Any]
    created_at: str
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = MANIFEST_FORMAT
        d["version"] = 1
        return d


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def select_chunk(convs: list[Conversation], match: str | None, side: str, source: str | None) -> list[Conversation]:
    rx = re.compile(match) if match else None
    out = []
    for c in convs:
        if source is not None and c.source != source:
            continue
        if rx is not None and not any(rx.search(t) for t in c.texts(side)):  # type: ignore[arg-type]
            continue
        out.append(c)
    return out


def strip_behaviour(conv: Conversation, pattern: re.Pattern[str]) -> Conversation | None:
    """The conversation with `pattern` removed from its assistant turns; None when an answer is left empty."""
    msgs = []
    for m in conv.messages:
        if m["role"] == "assistant":
            text = pattern.sub("", m["content"])
            text = re.sub(r"[ \t]+\n", "\n", text)
            text = re.sub(r"\n{3,}", "\n\n", text).strip()
            if not text:
                return None
            msgs.append({"role": "assistant", "content": text})
        else:
            msgs.append(dict(m))
    return Conversation(conv.id, conv.source, msgs)


@dataclass
class Template:
    prompt: str
    response: str
    rows: list[dict[str, Any]]
    path: str


def load_template(path: Path) -> Template:
    from chunky.config import read_mapping

    if not path.is_file():
        raise ConfigError(f"--template {path}: no such file")
    d = read_mapping(path, "a counter-example template (prompt, response, rows)")
    for k in ("prompt", "response", "rows"):
        if k not in d:
            raise ConfigError(f"{path}: missing field '{k}'")
    if not isinstance(d["prompt"], str) or not isinstance(d["response"], str):
        raise ConfigError(f"{path}: 'prompt' and 'response' must be strings with {{field}} slots")
    rows = d["rows"]
    if isinstance(rows, str):  # a JSONL file of rows, relative to the template
        from chunky.jsonl import read_jsonl

        rp = (path.parent / rows) if not Path(rows).is_absolute() else Path(rows)
        if not rp.is_file():
            raise ConfigError(f"{path}: field 'rows': no such file {rp}")
        rows = [r for _, r in read_jsonl(rp)]
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: 'rows' must be a non-empty list of mappings (or a JSONL file name)")
    need = {f for _, f, _, _ in string.Formatter().parse(d["prompt"] + d["response"]) if f}
    for i, r in enumerate(rows, start=1):
        if not isinstance(r, dict):
            raise ConfigError(f"{path}: rows[{i}] is not a mapping")
        missing = sorted(need - set(r))
        if missing:
            raise ConfigError(f"{path}: rows[{i}] has no field '{missing[0]}' (used by the template)")
    return Template(d["prompt"], d["response"], rows, str(path))


def render_template(t: Template, source: str) -> list[Conversation]:
    out = []
    stem = Path(t.path).stem
    for i, r in enumerate(t.rows, start=1):
        vals = {k: str(v) for k, v in r.items()}
        out.append(Conversation(f"counter:template:{stem}:{i}", source, [
            {"role": "user", "content": t.prompt.format(**vals)},
            {"role": "assistant", "content": t.response.format(**vals)},
        ]))
    return out


async def rewrite_all(chunk: list[Conversation], plan: BalancePlan, detect: Callable[[str], Detection],
                      rep: MethodReport, source: str,
                      progress: Callable[[int, int], None] | None = None) -> list[Conversation]:
    """Ask the rewrite model for each example's last answer without the behaviour; keep those the detector passes."""
    from chunky.models import GenerateConfig, get_model

    assert plan.rewrite_model is not None
    model = get_model(plan.rewrite_model, role="rewrite", config=GenerateConfig(temperature=0.0, max_tokens=plan.max_tokens))
    done = 0

    async def one(conv: Conversation) -> Conversation | None:
        nonlocal done
        last = max(i for i, m in enumerate(conv.messages) if m["role"] == "assistant")
        query = next((m["content"] for m in reversed(conv.messages[:last]) if m["role"] == "user"), "")
        prompt = plan.instruction.format(behaviour=plan.behaviour, query=query, response=conv.messages[last]["content"])
        try:
            res = await model.generate(prompt, hints={"task": "rewrite", "query": query})
            text = (res.text or "").strip()
            reason = None
            if not text:
                reason = "empty"
            elif detect(text).hit:
                reason = "behaviour_still_fires"
        except ModelError as e:
            text, reason = "", f"model_error: {str(e)[:80]}"
        done += 1
        if progress:
            progress(done, len(chunk))
        if reason:
            rep.rejected += 1
            key = reason.split(":")[0]
            rep.reasons[key] = rep.reasons.get(key, 0) + 1
            return None
        msgs = [dict(m) for m in conv.messages[:last]] + [{"role": "assistant", "content": text}]
        return Conversation(f"counter:rewrite:{conv.id}", source, msgs)

    results = await asyncio.gather(*(one(c) for c in chunk))
    return [r for r in results if r is not None]


def balance(plan: BalancePlan, progress: Callable[[int, int], None] | None = None) -> BalanceManifest:
    from chunky.train.data import load_mix

    plan.check()
    start = time.perf_counter()
    mix = Path(plan.mix)
    out = Path(plan.out)
    if not out.parent.exists():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")
    template = load_template(Path(plan.template)) if plan.template else None
    convs = load_mix(mix)
    chunk: list[Conversation] = []
    if plan.match or plan.source:
        if plan.source and not any(c.source == plan.source for c in convs):
            known = ", ".join(sorted({c.source for c in convs}))
            raise ConfigError(f"--source '{plan.source}' is not in {mix} (sources: {known})")
        chunk = select_chunk(convs, plan.match, plan.match_side, plan.source)
        if not chunk and (plan.strip or plan.rewrite_model):
            raise ConfigError(f"{mix}: no conversation matches the chunk (--match {plan.match!r}, --source {plan.source!r})")
        if plan.limit is not None:
            chunk = chunk[: plan.limit]
    detect = get_detector(plan.detector) if plan.detector else None
    rows: list[Conversation] = []
    reports: list[MethodReport] = []
    if plan.strip:
        rep = MethodReport("strip")
        rx = re.compile(plan.strip)
        src = plan.out_source or "counter:strip"
        for c in chunk:
            s = strip_behaviour(c, rx)
            reason = None
            if s is None:
                reason = "empty_after_strip"
            elif detect is not None and any(detect(m["content"]).hit for m in s.messages if m["role"] == "assistant"):
                reason = "behaviour_still_fires"
            elif s.messages == c.messages:
                reason = "pattern_not_found"
            if reason:
                rep.rejected += 1
                rep.reasons[reason] = rep.reasons.get(reason, 0) + 1
                continue
            assert s is not None
            rows.append(Conversation(f"counter:strip:{c.id}", src, s.messages))
            rep.made += 1
        reports.append(rep)
    if template is not None:
        rep = MethodReport("template")
        made = render_template(template, plan.out_source or "counter:template")
        if detect is not None:
            kept = [c for c in made if not detect(c.messages[-1]["content"]).hit]
            rep.rejected = len(made) - len(kept)
            if rep.rejected:
                rep.reasons["behaviour_still_fires"] = rep.rejected
            made = kept
        rep.made = len(made)
        rows += made
        reports.append(rep)
    if plan.rewrite_model:
        rep = MethodReport("rewrite")
        assert detect is not None
        made = asyncio.run(rewrite_all(chunk, plan, detect, rep, plan.out_source or "counter:rewrite", progress))
        rep.made = len(made)
        rows += made
        reports.append(rep)
    if not rows:
        raise ConfigError("balance: every counter-example was rejected; nothing written "
                          + "; ".join(f"{r.method}: {r.reasons}" for r in reports))
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for c in rows:
            f.write(json.dumps(c.to_row(), ensure_ascii=False) + "\n")
    tmp.replace(out)
    m = BalanceManifest(
        mix=str(mix), mix_sha256=_sha(mix), output=str(out), output_sha256=_sha(out),
        chunk={"match": plan.match, "match_side": plan.match_side, "source": plan.source, "limit": plan.limit},
        chunk_rows=len(chunk), methods=reports, rows=len(rows),
        params={"strip": plan.strip, "template": plan.template, "rewrite_model": plan.rewrite_model,
                "detector": plan.detector, "behaviour": plan.behaviour},
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        elapsed_s=round(time.perf_counter() - start, 3),
    )
    manifest_path(out).write_text(json.dumps(m.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    return m


def rejected_total(m: BalanceManifest) -> int:
    return sum(r.rejected for r in m.methods)
