"""The records of one attribution (`TraceResult` and the parts it is made of), and their JSON form.

A trace is saved as JSON (RUN/traces/<candidate_id>.json or IDX/traces/<id>.json) and read back by the
explorer (chunky.web.artifacts) and `chunky trace --show`; `to_dict()` / `from_dict()` are the project's one
(de)serialiser, `chunky.serde`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.errors import ChunkyError

TRACE_FORMAT = "chunky-trace"
TRACE_VERSION = 1


@dataclass
class SourceShare:
    """A source behind a set of hits: its share of the hits against its share of the mix."""

    source: str
    hits: int
    share: float  # hits / all hits
    mix_share: float  # the source's examples / all examples
    lift: float  # share / mix_share


@dataclass
class TrainingExample:
    example_id: int
    id: str
    source: str
    query: str
    response: str
    similarity: float  # cosine of the retrieved vector to the crux / response
    matched: str = ""  # the retrieved response attribute (LLM channel)


@dataclass
class ClusterHit:
    cluster: int
    summary: str
    hits: int
    total: int
    size: int  # examples whose query has the cluster, whole mix
    base_rate: float
    lift: float  # P(cluster | hits) / P(cluster)
    lift_low: float = 0.0  # lower end of the lift's 95% interval


@dataclass
class QueryAttribute:
    """An attribute of the failing query, assigned to its nearest query cluster."""

    text: str
    cluster: int
    cluster_summary: str
    similarity: float
    hits: int
    lift: float  # P(cluster | hits) / P(cluster)
    lift_low: float = 0.0  # lower end of the lift's 95% interval

    @property
    def stands_out(self) -> bool:
        """Over-represented beyond chance: lift > 1 with a 95% interval above 1."""
        return self.hits > 0 and self.lift > 1.0 and self.lift_low > 1.0


@dataclass
class CruxTrace:
    crux: str
    k: int  # retrieved response attributes
    trigger: QueryAttribute | None
    query_attributes: list[QueryAttribute]  # ranked: most hits first
    clusters: list[ClusterHit]  # the clusters with most hits overall
    sources: list[SourceShare]  # sources of all retrieved examples
    trigger_sources: list[SourceShare]  # sources of the retrieved examples in the trigger's cluster
    examples: list[TrainingExample]  # retrieved examples in the trigger's cluster
    statement: str


@dataclass
class LLMChannel:
    blind_attributes: list[str]
    crux: list[str]
    query_attributes: list[str]
    search: str  # exact | ivf
    traces: list[CruxTrace]


@dataclass
class FeatureHit:
    """A lexical feature of the failing query among the queries of the retrieved examples."""

    feature: str
    kind: str
    hits: int  # retrieved examples whose query has it
    total: int  # retrieved examples
    df: int  # examples having it, whole mix
    base_rate: float
    lift: float  # P(feature | hits) / P(feature)
    log_odds: float
    z: float
    sources: list[SourceShare]  # the sources of its hits
    lower: float = 0.0  # lower end of the log-odds' 95% interval: the ranking statistic
    lift_low: float = 0.0  # lower end of the lift's 95% interval

    def stands_out(self, min_hits: int = 1) -> bool:
        """Over-represented beyond chance: at least min_hits, lift > 1 with a 95% interval above 1."""
        return self.hits >= min_hits and self.lift > 1.0 and self.lift_low > 1.0


@dataclass
class LexicalAnchor:
    anchor: str  # "response" / "crux" (embedding neighbours) or "response feature" (exact feature match)
    text: str
    k: int
    trigger: FeatureHit | None  # the strongest query feature that stands out (None: none does)
    features: list[FeatureHit]  # the failing query's features, most significant first
    sources: list[SourceShare]  # sources of the retrieved examples
    examples: list[TrainingExample]  # nearest retrieved examples having the trigger feature
    statement: str
    carries_violation: bool = False  # a response feature the rubric's detector fires on (see trace_response_features)


@dataclass
class LexicalChannel:
    query_features: list[str]  # the failing query's features known to the index
    unseen_features: int  # features of the failing query the index never saw
    anchors: list[LexicalAnchor]


@dataclass
class TraceResult:
    """One attribution. Saved as JSON (RUN/traces/<candidate_id>.json or IDX/traces/<id>.json)."""

    id: str
    created_at: str
    index: str
    query: str
    response: str
    k: int
    statement: str
    rubric: str | None = None
    violation: str | None = None
    judge: str | None = None
    candidate_id: int | None = None
    run: str | None = None
    score: float | None = None
    llm: LLMChannel | None = None
    lexical: LexicalChannel | None = None
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int | float] = field(default_factory=dict)  # input_tokens, output_tokens, cost_usd
    warnings: list[str] = field(default_factory=list)
    format: str = TRACE_FORMAT
    version: int = TRACE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return serde.to_dict(self)

    @classmethod
    def from_dict(cls, d: object, *, where: str = "") -> TraceResult:
        """The trace from its `to_dict()` form; `where` (a file) starts the error message of a bad one."""
        if not isinstance(d, dict) or d.get("format", TRACE_FORMAT) != TRACE_FORMAT:
            found = f"field 'format' is {d.get('format')!r}" if isinstance(d, dict) else f"a JSON {type(d).__name__}"
            raise ChunkyError(f"{where + ': ' if where else ''}not a chunky trace: {found}")
        return serde.from_dict(cls, d, where=where)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> TraceResult:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ChunkyError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
        return cls.from_dict(data, where=str(path))
