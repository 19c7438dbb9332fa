"""The LLM channel (paper §4.1, App. D.1): its judges and their prompts, and the attribution of one crux.

A blind judge lists attributes of the failing response without the rubric (the index builder's own
response prompt, so they are phrased like the training response attributes); an informed judge picks the
crux among them for the rubric's violation. For each crux, the k nearest training response attributes are
retrieved, their examples' query clusters counted against the clusters' base rates, and the failing
query's attributes (assigned to their nearest centroids) name the trigger."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from chunky.errors import ModelError, StructuredOutputError
from chunky.turf.hits import HitCounts, lift_lower
from chunky.turf.trace.evidence import source_shares, training_examples
from chunky.turf.trace.records import (
    ClusterHit,
    CruxTrace,
    QueryAttribute,
    SourceShare,
    TrainingExample,
)
from chunky.turf.trace.statements import behaviour_phrase, statement, trigger_phrase

if TYPE_CHECKING:  # pragma: no cover
    from chunky.models import Model
    from chunky.turf.index import TurfIndex

INFORMED_SYSTEM = "You are an expert auditor of AI assistant behaviour."
INFORMED_PROMPT = """An AI assistant's response violated this rubric:

<rubric>
{rubric}
</rubric>

<query>
{query}
</query>

<response>
{response}
</response>

A reviewer who did not see the rubric described the response with these attributes:
{attributes}

Pick the {n} attribute(s) most causally responsible for the violation of the rubric, most responsible first.
Copy each one exactly as it is written in the list above. Answer with JSON: {{"crux": [{slots}]}}"""


def _list_schema(key: str, n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: {"type": "array", "items": {"type": "string"}, "minItems": n, "maxItems": n}},
        "required": [key],
    }


def _clean(items: object, what: str, judge: str) -> list[str]:
    if not isinstance(items, list):
        raise ModelError(f"{judge}: the {what} judge returned no list")
    out, seen = [], set()
    for x in items:
        s = " ".join(str(x).split())
        if s and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    if not out:
        raise ModelError(f"{judge}: the {what} judge returned an empty list")
    return out


async def blind_attributes(model: Model, response: str, n: int = 10) -> list[str]:
    """Judge 1 (blind): attributes of the response, without the rubric. It uses the index builder's own
    response prompt, so the crux is phrased like the training response attributes it is matched against."""
    from chunky.turf.extract import extract_side

    return await extract_side(model, "response", response, n)


async def query_attributes(model: Model, query: str, n: int = 10) -> list[str]:
    """Attributes of the failing query (the builder's query prompt), to assign to the query clusters."""
    from chunky.turf.extract import extract_side

    return await extract_side(model, "query", query, n)


async def informed_crux(model: Model, rubric_text: str, query: str, response: str, attributes: list[str], n: int = 3) -> list[str]:
    """Judge 2 (informed): the top-n crux attributes for the rubric violation."""
    n = min(n, len(attributes))
    listed = "\n".join(f"{i + 1}. {a}" for i, a in enumerate(attributes))
    slots = ", ".join(f'"<attribute {i + 1} of your choice>"' for i in range(n))
    # The crux must be attributes of the list: an enum makes grammar-constrained providers (llama.cpp, OpenAI's
    # strict schemas) choose among them instead of inventing text; _pick_from_list handles the others.
    schema = _list_schema("crux", n)
    schema["properties"]["crux"]["items"] = {"type": "string", "enum": list(attributes)}
    try:
        res = await model.generate(
            INFORMED_PROMPT.format(rubric=rubric_text, query=query, response=response, attributes=listed, n=n, slots=slots),
            system=INFORMED_SYSTEM,
            json_schema=schema,
            # The mock has no judgement; it answers with the first n attributes, which keeps runs deterministic.
            hints={"task": "json", "payload": {"crux": attributes[:n]}},
            temperature=0.0,
        )
        picked = (res.parsed or {}).get("crux")
    except StructuredOutputError as e:
        # Still off the list after the repair (a provider that cannot enforce the enum): read what it wrote and
        # map it below, rather than lose the channel over a changed capital letter.
        from chunky.models.structured import parse_structured

        loose = {"type": "object", "properties": {"crux": {"type": "array", "items": {"type": "string"}}}, "required": ["crux"]}
        value, problem = parse_structured(e.raw_text or "", loose)
        if problem is not None:
            raise
        picked = value["crux"]
    crux: list[str] = []
    for c in _clean(picked, "informed", model.name):
        picked = _pick_from_list(c, attributes)
        if picked is not None and picked not in crux:
            crux.append(picked)
    if not crux:
        raise ModelError(f"{model.name}: the informed judge named no usable crux attribute (it answered placeholders)")
    return crux[:n]


_CRUX_NUMBER = re.compile(r"^\s*#?(\d{1,2})[.)]?\s*$")


def _pick_from_list(c: str, attributes: list[str]) -> str | None:
    """The judge was asked to copy crux attributes verbatim from the blind list. Map what it wrote back onto
    that list: a near-copy (case, trailing dot) or a bare list number ("2", "#2", "2.") is the blind wording;
    a sentence of its own is kept as given (a capable judge sometimes sharpens one); an echo of the prompt's
    placeholders ("...", "N/A", one word) is dropped, since it matches nothing in the index meaningfully."""
    norm = {a.lower().rstrip("."): a for a in attributes}
    key = c.lower().rstrip(".")
    if key in norm:
        return norm[key]
    m = _CRUX_NUMBER.match(c)
    if m:
        i = int(m.group(1)) - 1
        return attributes[i] if 0 <= i < len(attributes) else None
    if len(re.findall(r"[^\W\d_]{2,}", c)) < 2 or key in ("n/a", "none", "null", "attribute"):
        return None
    return c


def trace_llm_crux(
    idx: TurfIndex,
    crux: str,
    crux_vec: np.ndarray,
    query_attrs: list[str],
    query_vecs: np.ndarray,
    *,
    k: int = 1000,
    exact: bool | None = None,
    violation: str | None = None,
    top_clusters: int = 15,
    n_examples: int = 5,
) -> CruxTrace:
    """Steps 2–4 of the paper for one crux: retrieve, count hits per query cluster, match the trigger."""
    resp_ex, resp_text = idx.response_attrs()
    ec = idx.example_clusters()
    summaries = idx.cluster_summaries()
    srcs = idx.source_codes()
    ids, sims = idx.searcher("response_attr", exact).search(crux_vec, k)
    ids, sims = ids[0], sims[0]
    keep = ids >= 0
    ids, sims = ids[keep], sims[keep]
    retrieved_examples = resp_ex[ids]
    hc = HitCounts.count(ec, retrieved_examples)

    # Step 4: assign each query attribute to its nearest centroid; the trigger is the one whose cluster has
    # the most hits (ties: higher lift, then the judge's order).
    qas: list[QueryAttribute] = []
    if len(query_attrs) and ec.n_clusters:
        cids, csims = idx.searcher("centroids", True).search(query_vecs, 1)
        for text, c, s in zip(query_attrs, cids[:, 0], csims[:, 0]):
            c = int(c)
            low = lift_lower(hc.hit(c), hc.total, int(hc.df[c]), hc.n_examples) if c >= 0 else 0.0
            qas.append(QueryAttribute(text, c, summaries.get(c, ""), float(s), hc.hit(c),
                                      hc.lift(c) if c >= 0 else 0.0, low))
    ranked_qas = sorted(qas, key=lambda a: (-a.hits, -a.lift))
    # the trigger is over-represented beyond chance, not merely the attribute with most hits
    trigger = next((a for a in ranked_qas if a.stands_out), None)

    clusters = [
        ClusterHit(c, summaries.get(c, ""), hc.hit(c), hc.total, int(hc.df[c]), hc.base_rate(c), hc.lift(c),
                   lift_lower(hc.hit(c), hc.total, int(hc.df[c]), hc.n_examples))
        for c in hc.ranked(top_clusters)
    ]
    sources = source_shares(srcs, np.unique(retrieved_examples))
    trig_sources: list[SourceShare] = []
    examples: list[TrainingExample] = []
    if trigger is not None:
        item, cl = ec.gather(retrieved_examples)
        in_trig = np.zeros(len(retrieved_examples), dtype=bool)
        in_trig[item[cl == trigger.cluster]] = True
        trig_sources = source_shares(srcs, retrieved_examples[in_trig])
        order = [i for i in np.flatnonzero(in_trig)]  # retrieved order = most similar first
        chosen, seen = [], set()
        for i in order:
            e = int(retrieved_examples[i])
            if e not in seen:
                seen.add(e)
                chosen.append(i)
            if len(chosen) >= n_examples:
                break
        examples = training_examples(
            idx, [(int(retrieved_examples[i]), float(sims[i]), resp_text[int(ids[i])]) for i in chosen])
        evidence = f"hit count {trigger.hits}/{hc.total}, lift {trigger.lift:.1f}× (95% ≥ {trigger.lift_low:.1f}×)"
        if trig_sources:
            top = trig_sources[0]
            evidence += f"; {top.share:.0%} of those hits from {top.source}"
        stmt = statement(trigger_phrase(trigger.text), behaviour_phrase(crux), violation, evidence)
    else:
        stmt = (f"No trigger stands out for the crux {crux!r}: no query attribute of the failing query falls in a "
                f"cluster over-represented among its {hc.total} hits (lift > 1 with a 95% interval above 1).")
    return CruxTrace(
        crux=crux,
        k=hc.total,
        trigger=trigger,
        query_attributes=ranked_qas,
        clusters=clusters,
        sources=sources,
        trigger_sources=trig_sources,
        examples=examples,
        statement=stmt,
    )
