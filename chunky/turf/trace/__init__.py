"""TURF attribution: trace a failing (query, response) to its trigger and the training chunks behind it.

Two channels over one index (docs/ARCHITECTURE.md, paper §4.1 and App. D.1):

- LLM channel (paper): a blind judge lists 10 attributes of the response without the rubric; an informed
  judge picks the top-3 crux; for each crux the k nearest training *response attributes* (FAISS) give a
  retrieved set; hit counts per *query cluster* over that set; the failing query's attributes are assigned
  to their nearest centroids and the trigger is the attribute whose cluster has the most hits (lift against
  the cluster's base rate is reported too, since raw counts favour big clusters).
- Lexical channel (no LLM calls): groups of training examples — the k whose responses are nearest to the
  failing response (and to each crux, when there is one), and those sharing one of the failing response's
  distinctive lexical features (an opening, a closing line, an n-gram) — and which lexical features of the
  failing query are over-represented among each group's queries: hits, lift, and the log-odds with an
  informative Dirichlet prior (Monroe et al. 2008), ranked by the lower end of its 95% interval; overall
  and per source.

The output reads "When the model sees [trigger], it [behaviour], causing [violation]", with hit counts,
ranked clusters / features, the sources behind the hits (share and lift against the mix) and examples.

The parts, one module each:

- `records`: `TraceResult` and the records it is made of, and their JSON form;
- `search`: `VectorSearch`, exact or IVF k-NN over one embedding matrix (built and kept by `TurfIndex.searcher`;
  the other per-index data the channels read, such as sources, clusters and feature counts, are cached
  methods of `chunky.turf.index.TurfIndex` too);
- `evidence`: the sources and examples behind a retrieved group; `statements`: the sentences and the headline;
- `llm_channel`: the judges, their prompts, and one crux's attribution; `lexical_channel`: the lexical channel;
- `compose`: `trace()` (and `trace_sync`), composing them; `run`: `trace_run`, a SURF run's top findings.
"""

from chunky.turf.trace.compose import TraceOptions, trace, trace_sync
from chunky.turf.trace.lexical_channel import (
    SHAPE_KINDS,
    TRIGGER_MAX_DF,
    candidate_query_features,
    feature_examples,
    query_features,
    rank_query_features,
    rubric_detector,
    trace_lexical_anchor,
    trace_response_features,
    violation_features,
)
from chunky.turf.trace.llm_channel import (
    INFORMED_PROMPT,
    INFORMED_SYSTEM,
    blind_attributes,
    informed_crux,
    query_attributes,
    trace_llm_crux,
)
from chunky.turf.trace.records import (
    TRACE_FORMAT,
    TRACE_VERSION,
    ClusterHit,
    CruxTrace,
    FeatureHit,
    LexicalAnchor,
    LexicalChannel,
    LLMChannel,
    QueryAttribute,
    SourceShare,
    TraceResult,
    TrainingExample,
)
from chunky.turf.trace.run import trace_run
from chunky.turf.trace.search import IVF_THRESHOLD, VectorSearch
from chunky.turf.trace.statements import (
    NO_TRIGGER,
    behaviour_phrase,
    statement,
    trigger_phrase,
    violation_phrase,
)

__all__ = [
    "INFORMED_PROMPT",
    "INFORMED_SYSTEM",
    "IVF_THRESHOLD",
    "NO_TRIGGER",
    "SHAPE_KINDS",
    "TRACE_FORMAT",
    "TRACE_VERSION",
    "TRIGGER_MAX_DF",
    "ClusterHit",
    "CruxTrace",
    "FeatureHit",
    "LLMChannel",
    "LexicalAnchor",
    "LexicalChannel",
    "QueryAttribute",
    "SourceShare",
    "TraceOptions",
    "TraceResult",
    "TrainingExample",
    "VectorSearch",
    "behaviour_phrase",
    "blind_attributes",
    "candidate_query_features",
    "feature_examples",
    "informed_crux",
    "query_attributes",
    "query_features",
    "rank_query_features",
    "rubric_detector",
    "statement",
    "trace",
    "trace_lexical_anchor",
    "trace_llm_crux",
    "trace_response_features",
    "trace_run",
    "trace_sync",
    "trigger_phrase",
    "violation_features",
    "violation_phrase",
]
