"""Attribution with the real components: the embedded MiniLM embedder, real FAISS (exact and IVF), and
the real local model as the judge."""

from __future__ import annotations

import numpy as np
import pytest

from chunky.turf.index import TurfIndex
from chunky.turf.trace import TraceOptions, VectorSearch, trace

from turf_handmade import query_features, write_handmade

FAILING_QUERY = "Could you elucidate the possessive pronouns in this sentence, please?"
FAILING_RESPONSE = "Here is an example:\n```python\ndef pronouns_demo():\n    return 1\n```\nThis shows pronouns."


@pytest.fixture(scope="module")
def minilm_index(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    hm = write_handmade(tmp_path_factory.mktemp("idx") / "idx", embedder_spec="minilm")
    return hm, TurfIndex.open(hm.path)


@pytest.mark.slow
async def test_real_embedder_matches_paraphrased_crux_and_query_attributes(minilm_index):
    hm, idx = minilm_index
    assert idx.meta.embedder.spec == "minilm" and idx.meta.embedder.dim == 384
    res = await trace(
        idx, FAILING_QUERY, FAILING_RESPONSE,
        # paraphrases: nothing here is a verbatim copy of the index's attribute texts
        crux=["The answer contains a lot of Python code"],
        query_attrs=["The query uses elaborate, formal wording", "The request is about a coding topic",
                     "The message is a relaxed, casual chat"],
        extract_features=query_features,
        options=TraceOptions(k=40, k_lexical=40),
    )
    ct = res.llm.traces[0]
    assert res.llm.search == "exact"
    clusters = {qa.text: qa.cluster for qa in ct.query_attributes}
    assert clusters["The query uses elaborate, formal wording"] == 0
    assert clusters["The request is about a coding topic"] == 1
    assert clusters["The message is a relaxed, casual chat"] == 2
    assert ct.sources[0].source == "codeset"
    assert ct.trigger is not None and ct.trigger.cluster in (0, 1)
    assert ct.trigger.hits >= 30
    lex = res.lexical.anchors[0]
    assert lex.trigger is not None and lex.trigger.feature == "word:elucidate"
    assert lex.sources[0].source == "codeset"


def test_ivf_search_agrees_with_exact_search():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32)).astype(np.float32)
    x = centres[rng.integers(0, 20, 5000)] + 0.05 * rng.normal(size=(5000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = VectorSearch(x, exact=True)
    ivf = VectorSearch(x, exact=False)
    assert (exact.kind, ivf.kind) == ("exact", "ivf")
    assert isinstance(ivf.index, faiss.IndexIVFFlat)
    q = x[:10]
    ei, _ = exact.search(q, 50)
    ii, _ = ivf.search(q, 50)
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(ei, ii)])
    assert recall > 0.9
    # k larger than the matrix returns everything, never -1 padding from the exact index
    small = VectorSearch(x[:5], exact=True)
    ids, sims = small.search(q[:1], 100)
    assert ids.shape == (1, 5) and (ids >= 0).all()


def test_ivf_index_is_cached_on_disk(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    f = tmp_path / "cache" / "m.ivf.faiss"
    a = VectorSearch(x, exact=False, cache_file=f)
    assert f.exists()
    b = VectorSearch(x, exact=False, cache_file=f)
    assert (a.search(x[:3], 5)[0] == b.search(x[:3], 5)[0]).all()


@pytest.mark.slow
async def test_real_local_judge_runs_the_llm_channel(tmp_path):
    """The embedded SmolLM2 as blind judge, informed judge and query-attribute extractor: few, short calls."""
    pytest.importorskip("llama_cpp")
    from chunky.models import GenerateConfig, get_model
    from chunky.models.providers.llamacpp import embedded_gguf_path
    from chunky.surf.rubric import Rubric

    if embedded_gguf_path() is None:
        pytest.skip("embedded GGUF not installed")
    hm = write_handmade(tmp_path / "idx")
    idx = TurfIndex.open(hm.path)
    judge = get_model("local", role="turf-judge", config=GenerateConfig(temperature=0.0, max_tokens=300))
    rubric = Rubric(name="code", behaviour="code", principle="Do not write code unless the user asks for code.")
    res = await trace(idx, FAILING_QUERY, FAILING_RESPONSE, rubric=rubric, judge=judge,
                      extract_features=query_features, options=TraceOptions(k=40, k_lexical=40, n_attributes=3, n_crux=1))
    assert res.llm is not None
    assert 1 <= len(res.llm.blind_attributes) <= 3 and len(res.llm.crux) == 1
    assert res.llm.crux[0] in res.llm.blind_attributes  # the grammar's enum keeps even a 135M judge on the list
    assert res.llm.query_attributes and len(res.llm.traces) == 1
    assert res.llm.traces[0].k == 40
    assert res.usage["output_tokens"] > 0


def test_search_over_a_float16_memmap(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "e.npy", x.astype(np.float16))
    mm = np.load(tmp_path / "e.npy", mmap_mode="r")
    ids, sims = VectorSearch(mm, exact=True).search(x[7], 3)
    assert ids[0, 0] == 7 and sims[0, 0] == pytest.approx(1.0, abs=1e-2)
