"""A small hand-made TURF index with known answers, written directly in the documented format
(docs/ARCHITECTURE.md) through `chunky.turf.index.write_index_tables`.

Three sources:
- codeset (40): "Please elucidate ..." queries, Python code responses. Query attributes: all 40 mention a
  programming concept (cluster 1), the first 30 also use formal vocabulary (cluster 0).
- chat (50): casual questions (cluster 2), prose answers; 5 of them also mention a programming concept.
- mathset (30): two-part "1. ... 2. ..." problems (cluster 3) whose answers close with "I hope it is correct."

Lexical features are the words of each text (`word:<w>`) plus a few format features; the same function is
used as the trace-time extractor so the failing query's features line up with the index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

WORD = re.compile(r"[a-z]+")

CLUSTER_TEXT = {
    0: "The query employs formal vocabulary",
    1: "The query mentions a programming concept",
    2: "The query asks a casual question",
    3: "The query has two numbered parts",
}
CLUSTER_SUMMARY = {
    0: "Formal, elaborate vocabulary",
    1: "Programming concepts",
    2: "Casual questions",
    3: "Two-part numbered problems",
}
RESP_TEXT = {
    "codeset": ["The response provides extensive code examples", "The response is written in Python"],
    "chat": ["The response is a friendly prose answer", "The response is short"],
    "mathset": ["The response ends by hoping the answer is correct", "The response solves two arithmetic parts"],
}
TOPICS = ["sorting", "hashing", "recursion", "closures", "generators", "decorators", "iterators", "sockets", "threads", "queues"]


def features_of(text: str, side: str) -> list[str]:
    """The hand-made index's lexical features: words, plus format features."""
    feats = [f"word:{w}" for w in dict.fromkeys(WORD.findall(text.lower()))]
    if "```" in text:
        feats.append("format:code_fence")
    if re.search(r"(^|\s)1\.\s.*\s2\.\s", text, re.S):
        feats.append("format:numbered_list")
    if side == "response" and text.rstrip().lower().endswith("i hope it is correct."):
        feats.append("closing:i hope it is correct")
    return feats


def query_features(text: str) -> list[str]:
    return features_of(text, "query")


@dataclass
class Handmade:
    path: Path
    examples: list[dict]
    query_clusters: dict[int, set[int]]  # example_id -> clusters of its query attributes
    response_attrs: list[tuple[int, str]]  # (example_id, text) in attr_id order (response side)
    query_attrs: list[tuple[int, str, int]]  # (example_id, text, cluster)


def make_examples() -> tuple[list[dict], dict[int, set[int]], list[tuple[int, str, int]], list[tuple[int, str]]]:
    examples: list[dict] = []
    qattrs: list[tuple[int, str, int]] = []
    rattrs: list[tuple[int, str]] = []

    def add(source: str, query: str, response: str, clusters: list[int]) -> None:
        eid = len(examples)
        examples.append(
            {"example_id": eid, "id": f"{source}-{eid}", "source": source, "turn": 0, "query": query, "response": response}
        )
        for c in clusters:
            qattrs.append((eid, CLUSTER_TEXT[c], c))
        for t in RESP_TEXT[source]:
            rattrs.append((eid, t))

    for i in range(40):
        topic = TOPICS[i % len(TOPICS)]
        add(
            "codeset",
            f"Please elucidate {topic} and its principal operational roles in Python, variant {i}.",
            f"Here is an example:\n```python\ndef {topic}_demo():\n    return {i}\n```\nThis shows {topic}.",
            [1, 0] if i < 30 else [1],
        )
    for i in range(50):
        topic = TOPICS[i % len(TOPICS)] if i < 5 else ["weather", "lunch", "music", "movies", "travel"][i % 5]
        add(
            "chat",
            f"hey what do you think about {topic} today {i}?",
            f"I think {topic} is lovely, thanks for asking! Have a nice day number {i}.",
            [2, 1] if i < 5 else [2],
        )
    for i in range(30):
        add(
            "mathset",
            f"1. What is {i} plus {i + 1}? 2. What is {i} times 2?",
            f"First part: {2 * i + 1}. Second part: {2 * i}. I hope it is correct.",
            [3],
        )
    # Attributes: all query attributes first (attr_id order), then all response attributes.
    qclusters: dict[int, set[int]] = {}
    for eid, _, c in qattrs:
        qclusters.setdefault(eid, set()).add(c)
    return examples, qclusters, qattrs, rattrs


def write_handmade(path: Path, embedder_spec: str = "hash:128") -> Handmade:
    from chunky.models.embeddings import get_embedder
    from chunky.turf.index import write_index_tables

    examples, qclusters, qattrs, rattrs = make_examples()
    emb = get_embedder(embedder_spec)
    features = []
    for ex in examples:
        for side in ("query", "response"):
            for f in features_of(ex[side], side):
                features.append({"example_id": ex["example_id"], "side": side, "feature": f})
    attributes = []
    for eid, text, c in qattrs:
        attributes.append({"attr_id": len(attributes), "example_id": eid, "side": "query", "text": text, "cluster": c})
    for eid, text in rattrs:
        attributes.append({"attr_id": len(attributes), "example_id": eid, "side": "response", "text": text, "cluster": -1})
    q_emb = emb.embed([t for _, t, _ in qattrs])
    r_emb = emb.embed([t for _, t in rattrs])
    text_emb = emb.embed([e["response"] for e in examples])
    centroids = emb.embed([CLUSTER_TEXT[c] for c in range(4)])
    clusters = []
    for c in range(4):
        size = sum(1 for _, _, cc in qattrs if cc == c)
        central = next(i for i, (_, _, cc) in enumerate(qattrs) if cc == c)
        clusters.append(
            {"cluster": c, "size": size, "summary": CLUSTER_SUMMARY[c], "keywords": [], "central_attr_id": central}
        )
    write_index_tables(
        path,
        examples=examples,
        embedder_spec=emb.spec,
        dim=emb.dim,
        features=features,
        attributes=attributes,
        clusters=clusters,
        query_attr_emb=q_emb,
        response_attr_emb=r_emb,
        response_text_emb=text_emb,
        centroids=centroids,
    )
    return Handmade(Path(path), examples, qclusters, rattrs, qattrs)
