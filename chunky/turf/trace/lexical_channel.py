"""The lexical channel (no LLM calls): which lexical features of the failing query are over-represented among
the queries of a group of training examples.

Groups: the k examples whose responses are nearest to the failing response (and to each crux, when there is
one), and those sharing one of the failing response's distinctive lexical features (an opening, a closing
line, an n-gram; the features the rubric's detector fires on first). Each of the failing query's features
gets hits, lift, and the log-odds with an informative Dirichlet prior (Monroe et al. 2008), ranked by the
lower end of its 95% interval; the trigger is the first that stands out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from chunky.errors import ConfigError
from chunky.turf.hits import lift, lift_lower, log_odds_bound, log_odds_z
from chunky.turf.trace.evidence import clip, source_shares, training_examples
from chunky.turf.trace.records import FeatureHit, LexicalAnchor, TrainingExample
from chunky.turf.trace.statements import statement

if TYPE_CHECKING:  # pragma: no cover
    from chunky.measure.detectors import Detection
    from chunky.surf.rubric import Rubric
    from chunky.turf.index import TurfIndex

    Detector = Callable[[str], Detection]

def feature_examples(idx: TurfIndex, feats: Sequence[str]) -> dict[str, np.ndarray]:
    """For each query-side feature, the examples whose query has it (one DuckDB scan of features.parquet,
    filtered to these features; nothing else of the table is loaded)."""
    if not feats:
        return {}
    from chunky.turf.analyses import feature_lookup

    return feature_lookup(idx).examples_of("query", feats)


def candidate_query_features(text: str, ngram_max: int = 3, side: str = "query") -> list[str]:
    """Every feature the index builder could have given this text: its regex-level features plus each
    word (not a stop word or number) and each 2-/3-gram inside a sentence that is not only stop words —
    the same rules as `chunky.turf.lexical.LexicalBuilder`; the index's vocabulary then keeps the real ones."""
    from chunky.turf.lexical import (
        BOUNDARY_CHARS,
        ENGLISH_STOP,
        regex_features,
        tokenize,
    )

    toks = tokenize(text)
    weak = [t in ENGLISH_STOP or t.isdigit() for t in toks]
    cut = [t in BOUNDARY_CHARS for t in toks]
    feats = [f"word:{t}" for t, w, c in zip(toks, weak, cut) if not w and not c]
    for n in range(2, ngram_max + 1):
        for i in range(len(toks) - n + 1):
            if any(cut[i : i + n]) or all(weak[i : i + n]):
                continue
            feats.append("ngram:" + " ".join(toks[i : i + n]))
    feats.extend(regex_features(text, side))
    return list(dict.fromkeys(feats))


def query_features(idx: TurfIndex, query: str, extract: Callable[[str], list[str]] | None = None) -> tuple[list[str], int]:
    """The failing query's lexical features that the index knows, and how many it does not.

    Regex-level features come from the index builder's extractor; words and n-grams are candidates the
    index keeps only above its document-frequency floor, so we propose them and keep those it has."""
    if extract is None:
        extract = candidate_query_features
    stats = idx.feature_df()
    cand = list(dict.fromkeys(extract(query)))
    known = [f for f in cand if f in stats]
    return known, len(cand) - len(known)


# A query-shape feature (one line, ends in "?", short) in more of the mix than this explains nothing: it is never
# named as the trigger (it still shows in the ranked table).
TRIGGER_MAX_DF = 0.25
SHAPE_KINDS = frozenset({"format", "question", "length", "script", "language"})


def trace_lexical_anchor(
    idx: TurfIndex,
    anchor: str,
    text: str,
    vec: np.ndarray,
    feats: list[str],
    *,
    k: int = 1000,
    exact: bool | None = None,
    violation: str | None = None,
    behaviour: str | None = None,
    min_hits: int = 3,
    prior_strength: float = 100.0,
    n_examples: int = 5,
    having: dict[str, np.ndarray] | None = None,
) -> LexicalAnchor:
    """Nearest training responses to `vec`; which of the failing query's features their queries share."""
    ids, sims = idx.searcher("response_text", exact).search(vec, k)
    ids, sims = ids[0], sims[0]
    keep = ids >= 0
    return rank_query_features(
        idx, anchor, text, ids[keep], sims[keep], feats,
        violation=violation, behaviour=behaviour or "answers like its nearest training responses",
        group="nearest training responses", min_hits=min_hits, prior_strength=prior_strength,
        n_examples=n_examples, having=having,
    )


def rank_query_features(
    idx: TurfIndex,
    anchor: str,
    text: str,
    ids: np.ndarray,
    sims: np.ndarray,
    feats: list[str],
    *,
    violation: str | None,
    behaviour: str,
    group: str,
    min_hits: int,
    prior_strength: float,
    n_examples: int,
    having: dict[str, np.ndarray] | None,
    exclude: set[str] | None = None,
    trigger_max_df: float = TRIGGER_MAX_DF,
) -> LexicalAnchor:
    """Given a retrieved group of training examples, rank the failing query's features by how
    over-represented they are among the group's queries (log-odds z with an informative prior). The trigger
    is the first that stands out and is not a ubiquitous query shape (a format / question / length feature
    in more than `trigger_max_df` of the mix: "the query is one line" or "ends in ?" explains nothing)."""
    srcs = idx.source_codes()
    stats = idx.feature_df()
    fex = feature_examples(idx, feats) if having is None else having
    n = srcs.n
    total = len(ids)
    member = np.zeros(n, dtype=bool)
    member[ids] = True

    hits_list: list[FeatureHit] = []
    for f in feats:
        df, kind = stats[f]
        ids_f = fex.get(f, np.zeros(0, np.int64))
        hit_ids = ids_f[member[ids_f]]
        h = len(hit_ids)
        delta, z = log_odds_z(h, total, df, n, prior_strength)
        lower = log_odds_bound(h, total, df, n, prior_strength)
        hits_list.append(
            FeatureHit(
                feature=f,
                kind=kind,
                hits=h,
                total=total,
                df=df,
                base_rate=df / n if n else 0.0,
                lift=lift(h, total, df, n),
                log_odds=delta,
                z=z,
                lower=lower,
                lift_low=lift_lower(h, total, df, n),
                sources=source_shares(srcs, hit_ids, top=5),
            )
        )
    hits_list.sort(key=lambda h: (-h.lower, -h.hits, h.feature))
    cands = [h for h in hits_list if h.stands_out(min_hits) and h.feature not in (exclude or ())
             and not (h.kind in SHAPE_KINDS and h.df > trigger_max_df * n)]
    trigger = cands[0] if cands else None
    examples: list[TrainingExample] = []
    if trigger is not None:
        has = np.zeros(n, dtype=bool)
        has[fex[trigger.feature]] = True
        chosen = [(int(e), float(s), "") for e, s in zip(ids, sims) if has[e]][:n_examples]
        examples = training_examples(idx, chosen)
        evidence = (f"hit count {trigger.hits}/{total}: {group} with it in their query; lift {trigger.lift:.1f}× "
                    f"(95% ≥ {trigger.lift_low:.1f}×), log-odds ≥ {trigger.lower:.1f}")
        if trigger.sources:
            evidence += f"; {trigger.sources[0].share:.0%} from {trigger.sources[0].source}"
        stmt = statement(f"the query feature {trigger.feature}", behaviour, violation, evidence)
    else:
        stmt = (f"No trigger stands out: no feature of the failing query is over-represented among the {total} "
                f"{group} (lift > 1 with a 95% interval above 1).")
    return LexicalAnchor(
        anchor=anchor,
        text=clip(text, 300),
        k=total,
        trigger=trigger,
        features=hits_list,
        sources=source_shares(srcs, ids),
        examples=examples,
        statement=stmt,
    )


def rubric_detector(rubric: Rubric) -> Detector | None:
    """The rubric's detector: its `detector` key, else the built-in detector of the rubric's name (`math`,
    `code`, `refusal`...), else None."""
    from chunky.measure.detectors import get_detector

    for spec in (rubric.detector, rubric.name):
        if spec:
            try:
                return get_detector(str(spec))
            except ConfigError:
                continue
    return None


def violation_features(response: str, detector: Detector) -> set[str]:
    """The lexical features of the lines of `response` the detector fires on (its evidence's lines): the
    features that carry the violation."""
    hit = detector(response)
    if not hit.hit:
        return set()
    evidence = (hit.evidence or "").strip()
    if not evidence or evidence not in response:
        return set()
    start = response.rfind("\n", 0, response.find(evidence)) + 1
    end = response.find("\n", response.find(evidence) + len(evidence))
    lines = response[start : end if end >= 0 else len(response)]
    return set(candidate_query_features(lines, side="response")) - {f for f in candidate_query_features(lines, side="response")
                                                                   if f.split(":", 1)[0] in ("length", "script", "language")}


def trace_response_features(
    idx: TurfIndex,
    response: str,
    feats: list[str],
    *,
    violation: str | None = None,
    min_hits: int = 3,
    prior_strength: float = 100.0,
    max_df_frac: float = 0.02,
    max_candidates: int = 300,
    n_examples: int = 5,
    having: dict[str, np.ndarray] | None = None,
    n_anchors: int = 3,
    query: str = "",
    detector: Detector | None = None,
    format_max_df_frac: float = 0.2,
) -> list[LexicalAnchor]:
    """Exact lexical anchors, no embeddings: each distinctive lexical feature of the failing response
    (an opening, a closing line, an n-gram, a format seen in at most `max_df_frac` of the mix) selects the
    training examples whose responses have it; the anchors kept are those whose examples' queries
    over-represent a feature of the failing query most strongly (highest lower bound of the log-odds).
    This finds a planted behaviour even when the rest of the response is about something else.

    Response features that carry the violation come first: a response feature that only repeats a word of
    the failing query (`word:weighs` for "How much does a whale weigh?") is the topic echoing and is skipped;
    with the rubric's `detector`, the features of the span it fires on (GSM8K's answer line, a `\\boxed{}`)
    are anchors before the others. `format:` features (a chunk's answer line, its annotations) may be
    common in the mix, up to `format_max_df_frac`; the others up to `max_df_frac`."""
    from chunky.turf.lexical import content_stems

    rstats = idx.feature_df("response")
    n = idx.source_codes().n
    query_stems = frozenset().union(*(content_stems(f) for f in candidate_query_features(query) if f.startswith("word:"))) \
        if query else frozenset()
    cand = [f for f in candidate_query_features(response, side="response") if f in rstats
            and not (content_stems(f) & query_stems)]
    lo = max(min_hits, 3)

    def hi(f: str) -> float:
        return max((format_max_df_frac if f.startswith("format:") else max_df_frac) * n, min_hits)

    carriers = violation_features(response, detector) if detector is not None else set()
    cand = sorted((f for f in cand if lo <= rstats[f][0] <= hi(f)),
                  key=lambda f: (f not in carriers, rstats[f][0], f))[:max_candidates]
    if not cand or not feats:
        return []
    from chunky.turf.analyses import feature_lookup

    rex = feature_lookup(idx).examples_of("response", cand)
    qex = feature_examples(idx, feats) if having is None else having
    qstats = idx.feature_df()
    qdf = np.array([qstats[f][0] for f in feats], dtype=np.float64)
    masks = np.zeros((len(feats), n), dtype=bool)
    for i, f in enumerate(feats):
        masks[i, qex.get(f, np.zeros(0, np.int64))] = True
    # A query feature sharing a word with the response feature is the topic echoing, not a trigger.
    qtok = [set(f.split(":", 1)[1].split()) if f.startswith(("word:", "ngram:")) else set() for f in feats]
    shape = np.array([f.split(":", 1)[0] in SHAPE_KINDS for f in feats], dtype=bool)
    scored: list[tuple[float, str, str]] = []
    a0 = prior_strength
    p = np.clip(qdf / n, 1e-9, 1 - 1e-9)
    for rf in cand:
        e = rex[rf]
        g = len(e)
        if g == 0:
            continue
        h = masks[:, e].sum(axis=1).astype(np.float64)
        # log_odds_bound (chunky.turf.hits), vectorised over the query features
        gy, gn = h + a0 * p, (g - h) + a0 * (1 - p)
        ry, rn = (qdf - h) + a0 * p, ((n - g) - (qdf - h)) + a0 * (1 - p)
        lower = (np.log(gy / gn) - np.log(ry / rn)) - 1.959964 * np.sqrt(1 / gy + 1 / gn + 1 / ry + 1 / rn)
        rtok = set(rf.split(":", 1)[1].split()) if rf.startswith(("word:", "ngram:")) else set()
        echo = np.array([bool(rtok & t) for t in qtok])
        ok = (h >= min_hits) & (h / g > qdf / n) & ~echo & ~(shape & (qdf > TRIGGER_MAX_DF * n))
        if not ok.any():
            continue
        j = int(np.flatnonzero(ok)[np.argmax(lower[ok])])
        scored.append((float(lower[j]), rf, feats[j]))
    # The strongest few response features, each with a different best query feature, as separate anchors
    # (like the LLM channel's three cruxes): a response often carries its own chunk's signature too. Features
    # the rubric's detector fires on lead.
    scored.sort(key=lambda x: (x[1] not in carriers, -x[0], x[1]))
    anchors: list[LexicalAnchor] = []
    used_q: set[str] = set()
    for _, rf, qf in scored:
        if qf in used_q:
            continue
        used_q.add(qf)
        ids = rex[rf]
        rtok = set(rf.split(":", 1)[1].split()) if rf.startswith(("word:", "ngram:")) else set()
        a = rank_query_features(
            idx, "response feature", rf, ids, np.ones(len(ids), dtype=np.float32), feats,
            violation=violation, behaviour=f"produces the response feature {rf}",
            group=f"training examples whose response has {rf}", min_hits=min_hits,
            prior_strength=prior_strength, n_examples=n_examples, having=qex,
            exclude={f for f, t in zip(feats, qtok) if rtok & t},
        )
        a.carries_violation = rf in carriers
        anchors.append(a)
        if len(anchors) >= n_anchors:
            break
    return anchors
