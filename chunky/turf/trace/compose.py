"""`trace()`: one failing (query, response) attributed through both channels into one `TraceResult`.

The judges (when a model is given) supply the crux and the failing query's attributes; the LLM channel
attributes each crux to query clusters, the lexical channel to query features; the headline names the
strongest trigger that stands out. A channel that cannot run leaves a warning saying why."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from chunky.errors import ChunkyError, ConfigError, ModelError
from chunky.turf.trace.lexical_channel import (
    feature_examples,
    query_features,
    rubric_detector,
    trace_lexical_anchor,
    trace_response_features,
)
from chunky.turf.trace.llm_channel import (
    blind_attributes,
    informed_crux,
    query_attributes,
    trace_llm_crux,
)
from chunky.turf.trace.records import LexicalChannel, LLMChannel, TraceResult
from chunky.turf.trace.statements import behaviour_phrase, headline, violation_phrase

if TYPE_CHECKING:  # pragma: no cover
    from chunky.models import Model
    from chunky.models.embeddings import Embedder
    from chunky.surf.rubric import Rubric
    from chunky.turf.index import TurfIndex

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class TraceOptions:
    k: int = 1000
    k_lexical: int = 1000
    exact: bool | None = None  # None: exact below IVF_THRESHOLD vectors, IVF above
    n_attributes: int = 10
    n_crux: int = 3
    channels: tuple[str, ...] = ("llm", "lexical")
    min_hits: int = 3
    prior_strength: float = 100.0
    # response words / n-grams seen in at most this share of the mix can anchor the lexical channel; format-level
    # response features (a chunk's answer line, its annotations) up to the second share
    feature_max_df: float = 0.02
    format_max_df: float = 0.2


@dataclass
class _Context:
    """What every stage of one trace reads, and the warnings and timings the stages add to."""

    idx: TurfIndex
    query: str
    response: str
    opts: TraceOptions
    violation: str | None
    say: Callable[[str], None]
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


async def trace(
    idx: TurfIndex,
    query: str,
    response: str,
    *,
    rubric: Rubric | None = None,
    judge: Model | None = None,
    crux: Sequence[str] | None = None,
    query_attrs: Sequence[str] | None = None,
    options: TraceOptions | None = None,
    embedder: Embedder | None = None,
    extract_features: Callable[[str], list[str]] | None = None,
    trace_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> TraceResult:
    """Attribute one failing (query, response). `progress` hears what stage it is in (the CLI prints it on
    stderr).

    `judge` (a chunky Model) runs the blind judge, the informed judge (needs `rubric`) and the query
    attribute extraction; `crux` / `query_attrs` given directly skip those calls. Without a judge and
    without them, the LLM channel is skipped and only the lexical channel (no LLM calls) runs."""
    opts = options or TraceOptions()
    if not query or not response:
        raise ConfigError("trace: both a query and a response are needed")
    t_start = time.perf_counter()
    ctx = _Context(idx, query, response, opts, violation_phrase(rubric), progress or (lambda _msg: None))
    # Both embedders first: one the index refuses fails the trace before any model call is paid for.
    emb_text = embedder if embedder is not None else _embedder_for(idx, "text_tokens")
    emb_attr = embedder if embedder is not None else _embedder_for(idx, "attr_tokens")
    usage_before = _usage_snapshot(judge)

    blind: list[str] = []
    crux_list = [c for c in (crux or []) if c.strip()]
    q_attrs = [a for a in (query_attrs or []) if a.strip()]
    want_llm = "llm" in opts.channels
    if want_llm and judge is not None:
        asked = await _ask_judges(ctx, judge, rubric, crux_list, q_attrs)
        if asked is None:  # the model failed: the lexical channel needs none, so the trace goes on without it
            crux_list, q_attrs, want_llm = [], [], False
        else:
            blind, crux_list, q_attrs = asked

    llm = _llm_channel(ctx, emb_attr, blind, crux_list, q_attrs) if want_llm else None
    lexical = _lexical_channel(ctx, emb_text, crux_list, rubric, extract_features) if "lexical" in opts.channels \
        else None
    if llm is None and lexical is None:
        raise ChunkyError(
            f"{idx.path}: nothing to trace with: " + ("; ".join(ctx.warnings) or "no channel selected")
        )
    ctx.timings["total_s"] = time.perf_counter() - t_start
    return TraceResult(
        id=trace_id or uuid.uuid4().hex[:12],
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        index=str(idx.path),
        query=query,
        response=response,
        k=opts.k,
        statement=headline(llm, lexical, crux_given=bool(crux_list) and bool(crux)),
        rubric=rubric.name if rubric is not None else None,
        violation=ctx.violation,
        judge=judge.name if judge is not None else None,
        llm=llm,
        lexical=lexical,
        timings={k: round(v, 4) for k, v in ctx.timings.items()},
        usage=_usage_delta(judge, usage_before),
        warnings=ctx.warnings,
    )


async def _ask_judges(
    ctx: _Context, judge: Model, rubric: Rubric | None, crux: list[str], query_attrs: list[str]
) -> tuple[list[str], list[str], list[str]] | None:
    """(blind attributes, crux, query attributes): the blind judge and the informed judge run unless the crux
    is given, the query's attributes are extracted unless given (and only for an index with the LLM channel).
    None, with a warning, when the model fails for good."""
    ctx.say("judges: blind attributes, informed crux, query attributes")
    t0 = time.perf_counter()
    need_blind = not crux
    need_query = not query_attrs and ctx.idx.has_llm
    rubric_text = ""
    if need_blind:
        if rubric is None:
            raise ConfigError("trace: the informed judge needs a rubric (--rubric NAME or a YAML path)")
        rubric_text = rubric.judge_text()
    blind: list[str] = []
    jobs = []
    if need_blind:
        jobs.append(blind_attributes(judge, ctx.response, ctx.opts.n_attributes))
    if need_query:
        jobs.append(query_attributes(judge, ctx.query, ctx.opts.n_attributes))
    try:
        got = list(await asyncio.gather(*jobs))
        if need_blind:
            blind = got.pop(0)
        if need_query:
            query_attrs = got.pop(0)
        if need_blind:
            crux = await informed_crux(judge, rubric_text, ctx.query, ctx.response, blind, ctx.opts.n_crux)
    except ModelError as e:
        # The lexical channel needs no model: keep it, and say why the LLM channel is missing.
        ctx.warnings.append(f"LLM channel failed: {e}")
        ctx.timings["judges_s"] = time.perf_counter() - t0
        return None
    ctx.timings["judges_s"] = time.perf_counter() - t0
    return blind, crux, query_attrs


def _llm_channel(
    ctx: _Context, emb_attr: Embedder, blind: list[str], crux: list[str], query_attrs: list[str]
) -> LLMChannel | None:
    """Each crux attributed to the query clusters; None, with a warning saying why, when it cannot run."""
    idx = ctx.idx
    if not crux:
        if idx.has_llm:
            ctx.warnings.append("LLM channel skipped: no judge (pass --judge MODEL and --rubric, or --crux)")
        return None
    if not idx.has_llm:
        ctx.warnings.append(f"{idx.path}: built without the LLM channel; only the lexical channel ran")
        return None
    if not query_attrs:
        ctx.warnings.append("LLM channel skipped: no attributes of the failing query (pass --judge or query attributes)")
        return None
    ctx.say(f"LLM channel: retrieving and counting hits for {len(crux)} crux")
    t0 = time.perf_counter()
    k = _capped_k(ctx.opts.k, idx.meta.counts.response_attributes, "--k", ctx.warnings)
    vecs = emb_attr.embed(list(crux) + list(query_attrs))
    cvecs, qvecs = vecs[: len(crux)], vecs[len(crux) :]
    traces = [
        trace_llm_crux(idx, c, cvecs[i : i + 1], list(query_attrs), qvecs, k=k, exact=ctx.opts.exact,
                       violation=ctx.violation)
        for i, c in enumerate(crux)
    ]
    search_kind = idx.searcher("response_attr", ctx.opts.exact).kind
    ctx.timings["llm_channel_s"] = time.perf_counter() - t0
    return LLMChannel(blind, list(crux), list(query_attrs), search_kind, traces)


def _lexical_channel(
    ctx: _Context,
    emb_text: Embedder,
    crux: list[str],
    rubric: Rubric | None,
    extract_features: Callable[[str], list[str]] | None,
) -> LexicalChannel | None:
    """The failing query's features among the nearest training responses (to the response and to each crux)
    and among the examples sharing a distinctive response feature; None, with a warning, without the channel."""
    idx, opts = ctx.idx, ctx.opts
    if not idx.has_lexical:
        ctx.warnings.append(f"{idx.path}: built without the lexical channel")
        return None
    ctx.say("lexical channel: the failing query's features")
    t0 = time.perf_counter()
    feats, unseen = query_features(idx, ctx.query, extract_features)
    k = _capped_k(opts.k_lexical, idx.meta.counts.examples, "--k-lexical", ctx.warnings)
    having = feature_examples(idx, feats)
    anchors_in = [("response", ctx.response)] + [("crux", c) for c in crux]
    ctx.say(f"lexical channel: nearest training responses to {len(anchors_in)} anchor(s)")
    avecs = emb_text.embed([t for _, t in anchors_in])
    anchors = [
        trace_lexical_anchor(
            idx, kind, text, avecs[i : i + 1], feats, k=k, exact=opts.exact, violation=ctx.violation,
            behaviour=behaviour_phrase(text) if kind == "crux" else None, min_hits=opts.min_hits,
            prior_strength=opts.prior_strength, having=having,
        )
        for i, (kind, text) in enumerate(anchors_in)
    ]
    ctx.say("lexical channel: training examples sharing the failing response's features")
    anchors += trace_response_features(
        idx, ctx.response, feats, violation=ctx.violation, min_hits=opts.min_hits,
        prior_strength=opts.prior_strength, max_df_frac=opts.feature_max_df, having=having,
        query=ctx.query, detector=rubric_detector(rubric) if rubric is not None else None,
        format_max_df_frac=opts.format_max_df,
    )
    ctx.timings["lexical_channel_s"] = time.perf_counter() - t0
    return LexicalChannel(feats, unseen, anchors)


def _embedder_for(idx: TurfIndex, budget: str) -> Embedder:
    """The build's embedder with the build's token budget for this kind of text (`chunky index` records
    text_tokens for response texts and attr_tokens for attributes), so trace-time vectors match."""
    tokens = idx.meta.params.get(budget)
    # Through the index, which refuses an embedder whose vectors are not comparable with the build's.
    return idx.embedder(max_tokens=int(tokens)) if tokens else idx.embedder()


def _capped_k(k: int, n: int, flag: str, warnings: list[str]) -> int:
    """Retrieving most of a small index makes every feature look like its base rate: keep k ≤ half of it."""
    cap = max(10, n // 2)
    if k > cap:
        warnings.append(f"{flag} {k} lowered to {cap}: at most half of the index's {n} vectors")
        return cap
    return k


def _usage_snapshot(judge: Model | None) -> tuple[int, int, float]:
    """(input tokens, output tokens, cost) the judge's usage tracker has counted so far."""
    if judge is None:
        return (0, 0, 0.0)
    t = judge.usage.total()
    return (int(t.input_tokens), int(t.output_tokens), float(t.cost_usd or 0.0))


def _usage_delta(judge: Model | None, before: tuple[int, int, float]) -> dict[str, int | float]:
    """What this trace's judge calls used (a tracker may be shared by other calls of the run)."""
    if judge is None:
        return {}
    after = _usage_snapshot(judge)
    return {"input_tokens": after[0] - before[0], "output_tokens": after[1] - before[1], "cost_usd": round(after[2] - before[2], 6)}


def _blocking(fn: Callable[P, Coroutine[object, object, R]]) -> Callable[P, R]:
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return asyncio.run(fn(*args, **kwargs))

    run.__doc__ = f"`{fn.__name__}` in a new event loop, for callers that have none (takes the same arguments)."
    return run


trace_sync = _blocking(trace)
