"""Typed records of a regression suite and of a check, with strict loading (bad input names file, line, field).

A suite directory holds `suite.json` (format, version, provenance) and `cases.jsonl` (one `Case` a line).
A check is one JSON file (`CheckResult`), written by `chunky check --out CHECK.json`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from chunky.config import read_mapping
from chunky.errors import ConfigError

SUITE_FORMAT = "chunky-suite"
SUITE_VERSION = 1
CHECK_FORMAT = "chunky-check"
CHECK_VERSION = 1
SUITE_FILE = "suite.json"
CASES_FILE = "cases.jsonl"

ScorerKind = Literal["detector", "rubric"]


@dataclass(frozen=True)
class Scorer:
    """How a case's behaviour is scored on one response.

    `detector`: the behaviour is shown when the detector (chunky.measure.detectors spec) fires.
    `rubric`: a judge scores the response 0-100 against the rubric; shown when the score is above `threshold`.
    A rubric scorer may have a `gate` detector (no hit: score 0, no judge call), as in SURF."""

    kind: ScorerKind
    detector: str | None = None
    rubric: dict[str, Any] | None = None  # chunky.surf.rubric.Rubric.to_dict()
    threshold: float = 50.0
    gate: str | None = None
    judge: str | None = None  # the judge model spec the finding was scored with (a default for `chunky check`)
    style: Literal["full", "compact"] = "full"

    @property
    def label(self) -> str:
        if self.kind == "detector":
            return f"detector:{self.detector}"
        name = (self.rubric or {}).get("name", "?")
        return f"rubric:{name}" + (f" (gate {self.gate})" if self.gate else "")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind == "detector":
            d["detector"] = self.detector
        else:
            d.update(rubric=self.rubric, threshold=self.threshold, gate=self.gate, judge=self.judge, style=self.style)
        return d


@dataclass(frozen=True)
class Rate:
    """A behaviour rate measured on repeated samples: hits of n judged, with its 95% Wilson interval."""

    rate: float | None
    low: float | None
    high: float | None
    hits: int
    n: int
    source: str = ""  # robustness | steer | check

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PromptPair:
    """A steering-derived case: the prompt before and after the transform that raised the behaviour."""

    original: str
    transformed: str
    original_system: str | None = None
    transformed_system: str | None = None
    transform: str = ""
    original_rate: float | None = None
    transformed_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Case:
    id: str
    prompt: str
    scorer: Scorer
    system: str | None = None
    response: str | None = None  # the original response that showed the behaviour
    score: float | None = None  # its original score (judge 0-100, or 100 for a detector hit)
    rate: Rate | None = None
    pair: PromptPair | None = None
    attributes: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)  # run / candidate_id, or steer dir / example id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "system": self.system,
            "scorer": self.scorer.to_dict(),
            "response": self.response,
            "score": self.score,
            "rate": self.rate.to_dict() if self.rate else None,
            "pair": self.pair.to_dict() if self.pair else None,
            "attributes": list(self.attributes),
            "source": self.source,
        }


@dataclass
class SuiteMeta:
    name: str
    created_at: str
    chunky_version: str
    cases: int
    suite_id: str  # a digest of the cases' ids, prompts and scorers: a check's baseline must share it
    provenance: dict[str, Any] = field(default_factory=dict)  # runs, steers, rubrics, models, options
    generation: dict[str, Any] = field(default_factory=dict)  # target sampling the findings were made with
    format: str = SUITE_FORMAT
    version: int = SUITE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "name": self.name,
            "suite_id": self.suite_id,
            "created_at": self.created_at,
            "chunky_version": self.chunky_version,
            "cases": self.cases,
            "generation": self.generation,
            "provenance": self.provenance,
        }


@dataclass
class Suite:
    path: Path
    meta: SuiteMeta
    cases: list[Case]


def suite_id(cases: list[Case]) -> str:
    blob = json.dumps(
        [[c.id, c.system, c.prompt, c.scorer.to_dict()] for c in cases], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- strict parsing -------------------------------------------------------------------------------


def _str(d: dict[str, Any], key: str, where: str, *, required: bool = True, empty_ok: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise ConfigError(f"{where}: missing field '{key}'")
        return None
    if not isinstance(v, str) or (not empty_ok and not v.strip()):
        raise ConfigError(f"{where}: field '{key}' must be non-empty text")
    return v


def _num(d: dict[str, Any], key: str, where: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{where}: field '{key}' must be a number")
    return float(v)


def parse_scorer(d: Any, where: str) -> Scorer:
    from chunky.measure.detectors import get_detector
    from chunky.surf.rubric import Rubric

    if not isinstance(d, dict):
        raise ConfigError(f"{where}: field 'scorer' must be an object with 'kind' detector or rubric")
    kind = d.get("kind")
    if kind == "detector":
        spec = _str(d, "detector", f"{where}: scorer")
        assert spec is not None
        try:
            get_detector(spec)
        except ConfigError as e:
            raise ConfigError(f"{where}: field 'scorer.detector': {e}") from None
        return Scorer("detector", detector=spec)
    if kind == "rubric":
        rub = d.get("rubric")
        if not isinstance(rub, dict) or not rub.get("name"):
            raise ConfigError(f"{where}: field 'scorer.rubric' must be a rubric object with a name")
        try:
            Rubric.from_dict(rub)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise ConfigError(f"{where}: field 'scorer.rubric' is not a valid rubric ({e})") from None
        gate = d.get("gate")
        if gate is not None:
            if not isinstance(gate, str):
                raise ConfigError(f"{where}: field 'scorer.gate' must be a detector spec")
            try:
                get_detector(gate)
            except ConfigError as e:
                raise ConfigError(f"{where}: field 'scorer.gate': {e}") from None
        threshold = _num(d, "threshold", f"{where}: scorer")
        raw_style = d.get("style") or "full"
        if raw_style not in ("full", "compact"):
            raise ConfigError(f"{where}: field 'scorer.style' must be full or compact")
        style: Literal["full", "compact"] = "compact" if raw_style == "compact" else "full"
        judge = d.get("judge")
        if judge is not None and not isinstance(judge, str):
            raise ConfigError(f"{where}: field 'scorer.judge' must be a model spec")
        return Scorer("rubric", rubric=rub, threshold=50.0 if threshold is None else threshold, gate=gate,
                      judge=judge, style=style)
    raise ConfigError(f"{where}: field 'scorer.kind' must be 'detector' or 'rubric' (got {kind!r})")


def parse_rate(d: Any, where: str) -> Rate | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: field 'rate' must be an object")
    try:
        return Rate(
            rate=_num(d, "rate", where), low=_num(d, "low", where), high=_num(d, "high", where),
            hits=int(d.get("hits") or 0), n=int(d.get("n") or 0), source=str(d.get("source") or ""),
        )
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: field 'rate' has a non-numeric hits or n") from None


def parse_case(d: Any, where: str) -> Case:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: a case is a JSON object")
    cid = _str(d, "id", where)
    prompt = _str(d, "prompt", where)
    assert cid is not None and prompt is not None
    system = _str(d, "system", where, required=False, empty_ok=True) or None
    if "scorer" not in d:
        raise ConfigError(f"{where}: missing field 'scorer'")
    scorer = parse_scorer(d["scorer"], where)
    pair = None
    if d.get("pair") is not None:
        p = d["pair"]
        if not isinstance(p, dict):
            raise ConfigError(f"{where}: field 'pair' must be an object")
        pair = PromptPair(
            original=_str(p, "original", f"{where}: pair") or "",
            transformed=_str(p, "transformed", f"{where}: pair") or "",
            original_system=p.get("original_system"),
            transformed_system=p.get("transformed_system"),
            transform=str(p.get("transform") or ""),
            original_rate=_num(p, "original_rate", where),
            transformed_rate=_num(p, "transformed_rate", where),
        )
    attrs = d.get("attributes") or []
    if not isinstance(attrs, list):
        raise ConfigError(f"{where}: field 'attributes' must be a list")
    source = d.get("source") or {}
    if not isinstance(source, dict):
        raise ConfigError(f"{where}: field 'source' must be an object")
    return Case(
        id=cid, prompt=prompt, system=system, scorer=scorer,
        response=d.get("response") if isinstance(d.get("response"), str) else None,
        score=_num(d, "score", where), rate=parse_rate(d.get("rate"), where), pair=pair,
        attributes=tuple(str(a) for a in attrs), source=source,
    )


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite directory (or its suite.json)."""
    p = Path(path)
    if p.is_file() and p.name == SUITE_FILE:
        p = p.parent
    meta_path, cases_path = p / SUITE_FILE, p / CASES_FILE
    if not p.is_dir():
        raise ConfigError(f"{p}: no such suite directory")
    if not meta_path.is_file():
        raise ConfigError(f"{p}: not a suite directory (no {SUITE_FILE}; build one with `chunky suite build`)")
    raw = read_mapping(meta_path, "a suite's metadata")
    if raw.get("format") != SUITE_FORMAT:
        raise ConfigError(f"{meta_path}: field 'format' must be '{SUITE_FORMAT}'")
    if raw.get("version") != SUITE_VERSION:
        raise ConfigError(f"{meta_path}: field 'version' is {raw.get('version')!r}; this chunky reads version {SUITE_VERSION}")
    if not cases_path.is_file():
        raise ConfigError(f"{p}: missing {CASES_FILE}")
    cases: list[Case] = []
    seen: dict[str, int] = {}
    with cases_path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{cases_path}: line {n}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{where}: not valid JSON ({e.msg})") from None
            c = parse_case(d, where)
            if c.id in seen:
                raise ConfigError(f"{where}: field 'id': '{c.id}' repeats line {seen[c.id]}")
            seen[c.id] = n
            cases.append(c)
    if not cases:
        raise ConfigError(f"{cases_path}: no cases")
    meta = SuiteMeta(
        name=str(raw.get("name") or p.name),
        created_at=str(raw.get("created_at") or ""),
        chunky_version=str(raw.get("chunky_version") or ""),
        cases=len(cases),
        suite_id=suite_id(cases),
        provenance=raw.get("provenance") or {},
        generation=raw.get("generation") or {},
    )
    recorded = raw.get("suite_id")
    if recorded and recorded != meta.suite_id:
        raise ConfigError(
            f"{meta_path}: field 'suite_id' is {recorded} but {CASES_FILE} hashes to {meta.suite_id} "
            "(cases were edited; run `chunky suite build` again or update suite_id)"
        )
    return Suite(p, meta, cases)


def write_suite(out: Path, meta: SuiteMeta, cases: list[Case]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CASES_FILE + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(out / CASES_FILE)
    mt = out / (SUITE_FILE + ".tmp")
    mt.write_text(json.dumps(meta.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    mt.replace(out / SUITE_FILE)
