"""Vector search: exact or IVF inner-product k-NN over one of the index's embedding matrices (FAISS).

`TurfIndex.searcher(name, exact)` builds one per matrix and keeps it on the index object; both channels
retrieve through it (the LLM channel over response attributes and centroids, the lexical channel over
response texts)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import faiss

IVF_THRESHOLD = 2_000_000  # above this many vectors, exact search costs more than an IVF index
_ADD_CHUNK = 262_144


class VectorSearch:
    """Inner-product (cosine: rows are L2-normalised) k-NN over one embedding matrix with FAISS."""

    def __init__(self, matrix: np.ndarray, *, exact: bool | None = None, cache_file: Path | None = None):
        import faiss

        self.n = int(matrix.shape[0])
        self.d = int(matrix.shape[1])
        use_ivf = exact is False or (exact is None and self.n > IVF_THRESHOLD)
        self.kind = "ivf" if use_ivf and self.n >= 64 else "exact"
        self.index: faiss.Index
        if self.kind == "exact":
            self.index = faiss.IndexFlatIP(self.d)
            self._add(self.index, matrix)
        else:
            self.index = self._ivf(matrix, cache_file)

    def _add(self, index: faiss.Index, matrix: np.ndarray) -> None:
        # In chunks: the matrix may be a float16 memmap larger than we want to convert at once.
        for s in range(0, self.n, _ADD_CHUNK):
            index.add(np.ascontiguousarray(matrix[s : s + _ADD_CHUNK], dtype=np.float32))

    def _ivf(self, matrix: np.ndarray, cache_file: Path | None) -> faiss.Index:
        import faiss

        nlist = max(1, min(int(4 * math.sqrt(self.n)), self.n // 39))
        nprobe = max(8, nlist // 16)
        if cache_file is not None and cache_file.exists():
            cached = faiss.read_index(str(cache_file))
            if isinstance(cached, faiss.IndexIVFFlat) and cached.ntotal == self.n and cached.d == self.d:
                cached.nprobe = nprobe
                return cached
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.d), self.d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(self.n, size=min(self.n, nlist * 64), replace=False))
        index.train(np.ascontiguousarray(matrix[sample], dtype=np.float32))
        self._add(index, matrix)
        index.nprobe = nprobe
        if cache_file is not None:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_name(cache_file.name + ".tmp")
                faiss.write_index(index, str(tmp))
                tmp.replace(cache_file)
            except OSError:
                pass  # a read-only index still traces; it just rebuilds the IVF next time
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [q, k'], sims float32 [q, k']) with k' = min(k, n)."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(0, min(int(k), self.n))
        if k == 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        sims, ids = self.index.search(q, k)
        return ids.astype(np.int64), sims.astype(np.float32)
