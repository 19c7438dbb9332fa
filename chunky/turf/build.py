"""`chunky index`: build a TURF index (docs/ARCHITECTURE.md) from a training mix, locally, resumably.

Stages, in order (each recorded in index.json `stages` when finished):
  load        the data → examples.parquet (streamed; bad rows counted, not fatal)
  lexical     regex features + words / n-grams → features.parquet, feature_stats.parquet
  embed_text  response texts → emb/response_text.npy (lexical channel)
  extract     LLM attributes of both sides, per example, in .work/extract.sqlite
  embed_attrs attribute sentences → emb/query_attr.npy, emb/response_attr.npy
  cluster     FAISS spherical k-means → emb/centroids.npy, clusters.parquet, attributes.cluster
  finalize    checksums, counts, sources → index.json; .work/ removed

A rerun continues where a killed run stopped: finished stages are skipped, and the long stages keep their own
progress inside a stage (lexical per batch, embeddings per chunk of texts, extraction per example). A rerun with
different parameters is refused unless `--force`, which deletes the index's files and starts over.
Identical texts are embedded once, in length order (less padding); a float16 index halves the embedding files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chunky.errors import ConfigError
from chunky.models.embeddings import DEFAULT_EMBEDDER, Embedder, canonical_spec, get_embedder
from chunky.turf import index as ix
from chunky.turf.load import Example, LoadReport, iter_examples, load_examples

Extractor = Literal["lexical", "llm", "both"]
STAGES = ["load", "lexical", "embed_text", "extract", "embed_attrs", "cluster", "finalize"]
WORK = ".work"
INDEX_FILES = [f"{t}.parquet" for t in ix.TABLES] + [f"emb/{e}.npy" for e in ix.EMBEDDINGS] + ["index.json"]


@dataclass
class BuildOptions:
    data: str
    out: Path
    extractor: Extractor = "lexical"
    extract_model: str | None = None
    attributes_per_side: int = 10
    extract_concurrency: int | None = None
    embedder: str = DEFAULT_EMBEDDER
    dtype: Literal["float32", "float16"] = "float32"
    text_tokens: int = 128
    attr_tokens: int = 64
    embed_batch: int = 64
    embed_workers: int | None = None  # processes for a local embedder (default: CPU cores, at most 4)
    parallel_embed_min: int = 8192  # fewer distinct texts than this are embedded in-process
    clusters: int | None = None
    summary_model: str | None = None
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    source_field: str | None = None
    turns: Literal["first", "all"] = "first"
    min_df: int | None = None
    max_df: float = 0.5
    batch_size: int = 4096
    force: bool = False
    dry_run: bool = False
    use_cache: bool = True

    def channels(self) -> list[str]:
        return {"lexical": ["lexical"], "llm": ["llm"], "both": ["lexical", "llm"]}[self.extractor]

    def fingerprint(self) -> dict[str, Any]:
        """The parameters that determine the index's content (a resume must match them)."""
        return {
            "extractor": self.extractor,
            "extract_model": self.resolved_extract_model(),
            "attributes_per_side": self.attributes_per_side,
            "embedder": canonical_spec(self.embedder),
            "dtype": self.dtype,
            "text_tokens": self.text_tokens,
            "attr_tokens": self.attr_tokens,
            "clusters": self.clusters,
            "summary_model": self.summary_model,
            "limit": self.limit,
            "sample": self.sample,
            "seed": self.seed,
            "source_field": self.source_field,
            "turns": self.turns,
            "min_df": self.min_df,
            "max_df": self.max_df,
            "batch_size": self.batch_size,
        }

    def resolved_extract_model(self) -> str | None:
        if "llm" not in self.channels():
            return None
        return self.extract_model or "local"

    def validate(self) -> None:
        if self.extractor not in ("lexical", "llm", "both"):
            raise ConfigError(f"--extractor must be lexical, llm or both, not {self.extractor!r}")
        if self.dtype not in ("float32", "float16"):
            raise ConfigError(f"--dtype must be float32 or float16, not {self.dtype!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, not {self.limit}")
        if self.clusters is not None and self.clusters < 1:
            raise ConfigError(f"--clusters must be at least 1, not {self.clusters}")
        if not 0 < self.max_df <= 1:
            raise ConfigError(f"--max-df must be in (0, 1], not {self.max_df}")
        if self.attributes_per_side < 1:
            raise ConfigError("--attributes-per-side must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"--sample must be at least 1, not {self.sample}")
        if self.turns not in ("first", "all"):
            raise ConfigError(f"--turns must be 'first' or 'all', not {self.turns!r}")
        if self.text_tokens < 1 or self.attr_tokens < 1:
            raise ConfigError("--text-tokens must be at least 1")
        if self.source_field is not None and not self.source_field.strip():
            raise ConfigError("--source-field must name a field")
        from chunky.models.embeddings import check_spec

        check_spec(self.embedder)
        from chunky.models.registry import parse_spec

        for flag, spec in (("--extract-model", self.resolved_extract_model()), ("--summary-model", self.summary_model)):
            if spec is not None and not spec.startswith("vllm:"):
                try:
                    parse_spec(spec)
                except ConfigError as e:
                    raise ConfigError(f"{flag}: {e}") from None

    def check_data(self) -> None:
        """The data exists, is not empty, and has --source-field (reads its first rows only)."""
        from chunky.turf.load import check_data

        check_data(self.data, source_field=self.source_field)


# ---- progress ----------------------------------------------------------------------------------------


class StageProgress:
    """What the running stage has done (and saved: every stage advances after it persists its work)."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.done = 0
        self.total: int | None = None

    def wrap(self, name: str, total: int | None, advance: Callable[[int], None]) -> Callable[[int], None]:
        self.stage, self.done, self.total = name, 0, total

        def step(n: int) -> None:
            self.done += n
            advance(n)

        return step


class _Tracked:
    """A Reporter proxy that records the running stage's progress into a StageProgress."""

    def __init__(self, inner: Reporter, progress: StageProgress):
        self.inner = inner
        self.progress = progress

    def stage(self, name: str, total: int | None) -> Callable[[int], None]:
        return self.progress.wrap(name, total, self.inner.stage(name, total))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Reporter:
    """Progress per stage. The default prints nothing; the CLI passes a rich-backed one."""

    def stage(self, name: str, total: int | None) -> Callable[[int], None]:
        return lambda n: None

    def done(self, name: str, note: str = "") -> None:
        return None

    def info(self, message: str) -> None:
        return None

    def close(self) -> None:
        return None


class RichReporter(Reporter):
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self._tasks: dict[str, Any] = {}

    def stage(self, name: str, total: int | None) -> Callable[[int], None]:
        tid = self.progress.add_task(name, total=total)
        self._tasks[name] = tid
        return lambda n: self.progress.advance(tid, n)

    def done(self, name: str, note: str = "") -> None:
        from rich.markup import escape

        tid = self._tasks.get(name)
        if tid is not None:
            task = next(t for t in self.progress.tasks if t.id == tid)
            # A stage whose size was unknown up front (streamed data) ends as a full bar of what it did.
            total = task.total if task.total is not None else max(task.completed, 1)
            self.progress.update(tid, total=total, completed=total)
        if note:
            self.progress.console.print(f"[dim]{escape(name)}: {escape(note)}[/dim]")

    def info(self, message: str) -> None:
        from rich.markup import escape

        self.progress.console.print(escape(message))

    def close(self) -> None:
        self.progress.stop()


# ---- resumable embedding ---------------------------------------------------------------------------------


EmbedStream = Callable[[list[str]], Iterator[np.ndarray]]


def chunked_stream(embed: Callable[[list[str]], np.ndarray], chunk: int = 2048) -> EmbedStream:
    """An EmbedStream that embeds `chunk` texts at a time in this process."""

    def stream(texts: list[str]) -> Iterator[np.ndarray]:
        for s in range(0, len(texts), chunk):
            yield embed(texts[s : s + chunk])

    return stream


def embed_resumable(
    texts: list[str],
    stream: EmbedStream,
    dim: int,
    out_path: Path,
    work: Path,
    name: str,
    dtype: str,
    advance: Callable[[int], None],
    info: Callable[[str], None] | None = None,
) -> str:
    """Embed texts into out_path (.npy, row i <-> texts[i]); identical texts once, in length order.

    `stream(remaining_texts)` yields their vectors in order, in blocks of any size. Finished blocks are kept in
    work/<name>.partial.npy (a memmap) with the count in work/<name>.json, so a kill loses one block at most.
    """
    work.mkdir(parents=True, exist_ok=True)
    if not texts:
        return ix.write_npy(out_path, np.zeros((0, dim), dtype=dtype))
    uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    order = np.argsort(np.fromiter((len(t) for t in uniq), dtype=np.int64, count=len(uniq)), kind="stable")
    h = hashlib.sha256()
    for t in uniq:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    digest = h.hexdigest()
    meta_path = work / f"{name}.json"
    part_path = work / f"{name}.partial.npy"
    done = 0
    if meta_path.exists() and part_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("digest") == digest and meta.get("dim") == dim:
            done = int(meta["done"])
    if done == 0:
        mm = np.lib.format.open_memmap(part_path, mode="w+", dtype=np.float32, shape=(len(uniq), dim))
    else:
        mm = np.load(part_path, mmap_mode="r+")
    if done and info is not None:
        info(f"{name}: resuming after {done:,} of {len(uniq):,} distinct texts")
    advance(done)
    pos = done
    for block in stream([uniq[i] for i in order[done:]]):
        k = len(block)
        mm[order[pos : pos + k]] = block
        mm.flush()
        pos += k
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"digest": digest, "dim": dim, "done": pos}))
        os.replace(tmp, meta_path)
        advance(k)
    if pos != len(uniq):
        raise RuntimeError(f"embedding {name}: {pos} of {len(uniq)} texts came back")
    full = np.asarray(mm)[inverse.reshape(-1)].astype(dtype)
    del mm
    sha = ix.write_npy(out_path, full)
    part_path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    return sha


# Worker-process state for parallel local embedding (one embedder per process, one torch thread each:
# on few cores, separate processes scale better than torch's intra-op threads).
_WORKER_EMBEDDER: Embedder | None = None


def _init_embed_worker(spec: str, max_tokens: int, batch_size: int) -> None:
    global _WORKER_EMBEDDER
    import signal

    # Ctrl-C reaches the whole process group: the parent handles it (and says what was saved); workers just stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["CHUNKY_EMBED_THREADS"] = "1"  # onnxruntime's intra-op threads
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    _WORKER_EMBEDDER = get_embedder(spec, max_tokens=max_tokens, batch_size=batch_size)


def _embed_in_worker(texts: list[str]) -> np.ndarray:
    assert _WORKER_EMBEDDER is not None
    return _WORKER_EMBEDDER.embed(texts)


def process_pool_stream(spec: str, max_tokens: int, batch_size: int, workers: int, chunk: int = 1024) -> EmbedStream:
    """An EmbedStream that spreads chunks over `workers` processes (results come back in order)."""

    def stream(texts: list[str]) -> Iterator[np.ndarray]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        chunks = [texts[s : s + chunk] for s in range(0, len(texts), chunk)]
        ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_embed_worker, initargs=(spec, max_tokens, batch_size))
        try:
            yield from pool.map(_embed_in_worker, chunks)
        finally:
            # On an interrupt, queued chunks are dropped; the running ones (one per worker) finish.
            pool.shutdown(wait=True, cancel_futures=True)

    return stream


def default_embed_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


# ---- the builder -------------------------------------------------------------------------------------------


@dataclass
class BuildSummary:
    out: Path
    stages_run: list[str] = field(default_factory=list)
    stages_skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # this process's CPU time (all its threads)
    meta: ix.IndexMeta | None = None
    nothing_to_do: bool = False
    resumed_from: str = ""  # where a resumed build continued ("" for a fresh build)
    warnings: list[str] = field(default_factory=list)


class IndexBuilder:
    """Runs the stages; `ray_build.RayIndexBuilder` overrides the data-parallel parts."""

    def __init__(self, opts: BuildOptions, reporter: Reporter | None = None):
        opts.validate()
        self.check_extract_model(opts.resolved_extract_model())
        # Record files by absolute path: the index is read (and its data re-read by ablate) from anywhere.
        if not str(opts.data).startswith("hf:") and Path(opts.data).exists():
            opts.data = str(Path(opts.data).resolve())
        self.opts = opts
        self.out = Path(opts.out)
        self.work = self.out / WORK
        self.reporter = reporter or Reporter()
        self.progress = StageProgress()
        self.warnings: list[str] = []
        self.meta: ix.IndexMeta | None = None
        self._embedders: dict[int, Embedder] = {}

    def check_extract_model(self, spec: str | None) -> None:
        """Models this builder cannot run are refused before any stage (`vllm:` engines run on Ray only)."""
        if spec is not None and spec.startswith("vllm:"):
            raise ConfigError(f"--extract-model {spec}: vLLM engines run inside Ray; add --ray auto (or a cluster address)")

    # -- directory and metadata -------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out}: exists and is not a directory")
        has_index = (out / "index.json").exists()
        if out.exists() and any(out.iterdir()) and not has_index and not (out / WORK).exists():
            raise ConfigError(f"{out}: exists, is not empty and is not a chunky index; choose another --out")
        if self.opts.force and out.exists():
            for name in INDEX_FILES:
                (out / name).unlink(missing_ok=True)
            shutil.rmtree(out / WORK, ignore_errors=True)
            with contextlib.suppress(OSError):
                (out / "emb").rmdir()
        (out / "emb").mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)

    def _load_or_new_meta(self) -> ix.IndexMeta:
        from chunky import __version__

        f = self.out / "index.json"
        params = self.opts.fingerprint()
        if f.exists() and self._has_finished_work():
            meta = ix.read_meta(self.out)
            if meta.params != params:
                diff = sorted(k for k in set(params) | set(meta.params) if params.get(k) != meta.params.get(k))
                raise ConfigError(
                    f"{self.out}: was built with different parameters ({', '.join(diff)}); "
                    "rerun with the same options to resume, or add --force to rebuild"
                )
            if meta.data.path and meta.data.path != str(self.opts.data):
                raise ConfigError(
                    f"{self.out}: was built from {meta.data.path}, not {self.opts.data}; add --force to rebuild"
                )
            return meta
        return ix.IndexMeta(
            chunky_version=__version__,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            data=ix.DataInfo(path=str(self.opts.data)),
            params=params,
            extractor={
                "channels": self.opts.channels(),
                "model": self.opts.resolved_extract_model(),
                "attributes_per_side": self.opts.attributes_per_side,
            },
            stages={s: ("pending" if s in self.planned() else "skipped") for s in STAGES},
        )

    def _has_finished_work(self) -> bool:
        """Whether the directory holds a finished stage (else its index.json is a stub a rerun replaces)."""
        f = self.out / "index.json"
        if not f.exists():
            return False
        try:
            stages = ix.read_meta(self.out).stages
        except ConfigError:
            return True  # not ours to replace: let the caller's checks speak
        return any(v in ("done", "partial") for v in stages.values())

    def _save_meta(self) -> None:
        assert self.meta is not None
        ix.write_meta(self.out, self.meta)

    def _mark(self, stage: str, state: str = "done") -> None:
        assert self.meta is not None
        self.meta.stages[stage] = state
        self._save_meta()

    def _invalidate_after(self, stage: str) -> None:
        """A stage being (re)run makes every later stage stale."""
        assert self.meta is not None
        later = STAGES[STAGES.index(stage) + 1 :]
        for s in later:
            if self.meta.stages.get(s) == "done":
                self.meta.stages[s] = "pending"

    # -- embedders ---------------------------------------------------------------------------------------
    def embedder(self, max_tokens: int) -> Embedder:
        if max_tokens not in self._embedders:
            self._embedders[max_tokens] = get_embedder(
                self.opts.embedder, max_tokens=max_tokens, batch_size=self.opts.embed_batch
            )
        return self._embedders[max_tokens]

    def embed_texts(self, texts: list[str], max_tokens: int, out_path: Path, name: str, label: str) -> str:
        emb = self.embedder(max_tokens)
        uniq = len(set(texts))
        advance = self.reporter.stage(label, uniq)
        workers = self.opts.embed_workers or default_embed_workers()
        # Worker processes pay a few seconds of start-up each: only for a local model and enough texts.
        if workers > 1 and emb.heavy_local and uniq >= self.opts.parallel_embed_min:
            stream = process_pool_stream(self.opts.embedder, max_tokens, self.opts.embed_batch, workers)
        else:
            stream = chunked_stream(emb.embed)
        return embed_resumable(texts, stream, emb.dim, out_path, self.work / "emb", name, self.opts.dtype, advance,
                               info=self.reporter.info)

    # -- stages --------------------------------------------------------------------------------------------
    def iter_loaded_examples(self, report: LoadReport) -> Iterator[Example]:
        o = self.opts
        if o.sample is not None:
            yield from load_examples(
                o.data, source_field=o.source_field, turns=o.turns, limit=o.limit, sample=o.sample, seed=o.seed, report=report
            )
            return
        if o.limit is not None and o.limit < 1:
            return
        n = 0
        for ex in iter_examples(o.data, source_field=o.source_field, turns=o.turns, report=report):
            n += 1
            yield ex
            if o.limit is not None and n >= o.limit:
                return

    def stage_load(self) -> None:
        assert self.meta is not None
        o = self.opts
        report = LoadReport(str(o.data))
        advance = self.reporter.stage("load", o.limit or o.sample)
        writer = ix.ParquetStreamWriter(self.out / "examples.parquet", ix.EXAMPLES_SCHEMA)
        n = 0
        buf: list[Example] = []
        sources: set[str] = set()

        def flush() -> None:
            nonlocal n, buf
            if not buf:
                return
            sources.update(e.source for e in buf)
            writer.write(
                pa.table(
                    {
                        "example_id": pa.array(range(n, n + len(buf)), type=pa.int64()),
                        "id": [e.id for e in buf],
                        "source": [e.source for e in buf],
                        "turn": pa.array([e.turn for e in buf], type=pa.int32()),
                        "query": [e.query for e in buf],
                        "response": [e.response for e in buf],
                    }
                )
            )
            advance(len(buf))
            n += len(buf)
            buf = []

        try:
            for ex in self.iter_loaded_examples(report):
                buf.append(ex)
                if len(buf) >= 2048:
                    flush()
            flush()
        except BaseException:
            writer.abort()
            raise
        if n == 0:
            writer.abort()
            why = report.describe_skips() or "the file has no rows"
            raise ConfigError(f"{o.data}: no (query, response) pair found in {report.rows_read} rows: {why}")
        writer.close()
        self.meta.data = ix.DataInfo(
            path=str(o.data),
            sha256=_data_sha(o.data),
            rows_read=report.rows_read,
            rows_skipped=report.rows_skipped,
            skipped_reasons=dict(report.skipped_reasons),
        )
        self.meta.counts.examples = n
        if len(sources) == 1 and (o.limit is not None or o.sample is not None):
            self._warn_one_source(next(iter(sources)))
        note = f"{n} examples from {report.rows_read} rows"
        if report.rows_skipped:
            note += f"; skipped {report.describe_skips()}"
        self.reporter.done("load", note)

    def _warn_one_source(self, source: str) -> None:
        from chunky.turf.load import another_source

        other = another_source(self.opts.data, source, source_field=self.opts.source_field)
        if other is None:
            return
        how = (f"--limit {self.opts.limit} keeps the first rows, and this file's rows come grouped by source"
               if self.opts.sample is None else f"--sample {self.opts.sample} drew from one source only")
        msg = (f"warning: the index holds one source ({source}) while {self.opts.data} names several (e.g. {other}), so "
               f"every source attribution will name {source}: {how}; use --sample N for a uniform sample of the mix")
        self.warnings.append(msg)
        self.reporter.info(msg)

    def example_batches(self, columns: list[str], start: int = 0) -> Iterator[pa.RecordBatch]:
        pf = pq.ParquetFile(self.out / "examples.parquet")
        for b in pf.iter_batches(batch_size=self.opts.batch_size, columns=["example_id", *columns]):
            if start:
                ids = b.column(0)
                mask = pc.greater_equal(ids, start)
                b = b.filter(mask)
                if b.num_rows == 0:
                    continue
            yield b

    def lexical_analysed(self, start: int) -> Iterator[tuple[np.ndarray, dict, dict]]:
        """(example_ids, tokens per side, regex features per side) per batch, from example `start` on."""
        from chunky.turf.lexical import analyse_texts

        for b in self.example_batches(["query", "response"], start):
            eids = b.column(0).to_numpy()
            tq, rq = analyse_texts(b.column(1).to_pylist(), "query")
            tr, rr = analyse_texts(b.column(2).to_pylist(), "response")
            yield eids, {"query": tq, "response": tr}, {"query": rq, "response": rr}

    def stage_lexical(self) -> None:
        from chunky.turf.lexical import LexicalBuilder, LexicalParams

        assert self.meta is not None
        n = self.meta.counts.examples
        lb = LexicalBuilder(self.work / "lexical", LexicalParams(min_df=self.opts.min_df, max_df=self.opts.max_df))
        advance = self.reporter.stage("lexical", n)
        if lb.done_examples:
            self.reporter.info(f"lexical: resuming after {lb.done_examples:,} of {n:,} examples")
        advance(lb.done_examples)
        for eids, toks, regex in self.lexical_analysed(lb.done_examples):
            lb.add_batch(eids, toks, regex)
            advance(len(eids))
        lb.finish(n, self.out)
        min_df = lb.params.resolved_min_df(n)
        self.meta.extractor["lexical"] = {"min_df": min_df, "max_df_examples": max(min_df, int(lb.params.max_df * n))}
        self.meta.counts.features = pq.ParquetFile(self.out / "feature_stats.parquet").metadata.num_rows
        shutil.rmtree(self.work / "lexical", ignore_errors=True)
        self.reporter.done("lexical", f"{self.meta.counts.features} distinct features")

    def _same_embedder(self) -> None:
        """The first embedding stage records the embedder; a later one (a resumed build) must use the same model."""
        assert self.meta is not None
        emb = self.embedder(self.opts.text_tokens)
        if self.meta.embedder.probe:
            self.meta.embedder.check(emb, str(self.out))
        else:
            self.meta.embedder = ix.EmbedderInfo.of(emb, self.opts.dtype)
            self._save_meta()

    def stage_embed_text(self) -> None:
        self._same_embedder()
        texts = pq.read_table(self.out / "examples.parquet", columns=["response"])["response"].to_pylist()
        self.embed_texts(texts, self.opts.text_tokens, self.out / "emb" / "response_text.npy", "response_text", "embed_text")
        self.reporter.done("embed_text")

    def _examples_for_extraction(self) -> list[tuple[int, str, str]]:
        t = pq.read_table(self.out / "examples.parquet", columns=["example_id", "query", "response"])
        return list(zip(t["example_id"].to_pylist(), t["query"].to_pylist(), t["response"].to_pylist()))

    def extraction_model(self):
        from chunky.models import GenerateConfig, get_model

        spec = self.opts.resolved_extract_model()
        assert spec is not None
        return get_model(
            spec,
            role="extractor",
            config=GenerateConfig(temperature=0.0),
            max_concurrency=self.opts.extract_concurrency,
            use_cache=self.opts.use_cache,
        )

    def run_extraction(self, examples: list[tuple[int, str, str]], store: Any, advance: Callable[[int], None]) -> tuple[int, int]:
        from chunky.turf.extract import extract_examples

        model = self.extraction_model()
        return asyncio.run(extract_examples(model, examples, store, n=self.opts.attributes_per_side, on_done=advance))

    def stage_extract(self) -> bool:
        """Returns False when some examples failed (the stage stays pending, to be retried)."""
        from chunky.turf.extract import ExtractionStore

        assert self.meta is not None
        examples = self._examples_for_extraction()
        store = ExtractionStore(self.work / "extract.sqlite")
        try:
            done_before = len(store.done_ids())
            advance = self.reporter.stage("extract", len(examples))
            advance(done_before)
            _, failed = self.run_extraction(examples, store, advance)
            errors = store.errors()
            done = store.all_done()
        finally:
            store.close()
        rows_q: list[tuple[int, str, str]] = []
        rows_r: list[tuple[int, str, str]] = []
        for r in done:
            rows_q.extend((r.example_id, "query", t) for t in r.query)
            rows_r.extend((r.example_id, "response", t) for t in r.response)
        rows = rows_q + rows_r
        table = pa.table(
            {
                "attr_id": pa.array(range(len(rows)), type=pa.int64()),
                "example_id": pa.array([r[0] for r in rows], type=pa.int64()),
                "side": pa.array([r[1] for r in rows], type=pa.string()),
                "text": pa.array([r[2] for r in rows], type=pa.string()),
                "cluster": pa.array([-1] * len(rows), type=pa.int32()),
            }
        )
        ix.write_table(self.out / "attributes.parquet", table, ix.ATTRIBUTES_SCHEMA)
        self.meta.counts.query_attributes = len(rows_q)
        self.meta.counts.response_attributes = len(rows_r)
        self.meta.extractor["failed_examples"] = len(errors)
        note = f"{len(done)} examples, {len(rows_q)} query + {len(rows_r)} response attributes"
        if errors:
            first = next(iter(errors.items()))
            note += f"; {len(errors)} failed (rerun to retry; example {first[0]}: {first[1][:160]})"
        self.reporter.done("extract", note)
        return not errors

    def stage_embed_attrs(self) -> None:
        self._same_embedder()
        t = pq.read_table(self.out / "attributes.parquet", columns=["side", "text"])
        sides = t["side"].to_pylist()
        texts = t["text"].to_pylist()
        q = [x for s, x in zip(sides, texts) if s == "query"]
        r = [x for s, x in zip(sides, texts) if s == "response"]
        self.embed_texts(q, self.opts.attr_tokens, self.out / "emb" / "query_attr.npy", "query_attr", "embed_query")
        self.embed_texts(r, self.opts.attr_tokens, self.out / "emb" / "response_attr.npy", "response_attr", "embed_resp")
        self.reporter.done("embed_attrs")

    def stage_cluster(self) -> None:
        from chunky.turf.cluster import default_k, kmeans, llm_summaries, summarise

        assert self.meta is not None
        attrs = pq.read_table(self.out / "attributes.parquet")
        is_q = pc.equal(attrs["side"], "query")
        q_attrs = attrs.filter(is_q)
        x = np.load(self.out / "emb" / "query_attr.npy").astype(np.float32)
        k_req = self.opts.clusters or default_k(self.meta.counts.examples)
        advance = self.reporter.stage("cluster", 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = kmeans(x, k_req, seed=self.opts.seed)
        for w in caught:
            self.reporter.info(f"warning: {w.message}")
        texts = q_attrs["text"].to_pylist()
        summaries = summarise(texts, q_attrs["attr_id"].to_numpy(), res)
        if self.opts.summary_model and summaries:
            from chunky.models import GenerateConfig, get_model

            model = get_model(self.opts.summary_model, role="summarizer", config=GenerateConfig(temperature=0.0), use_cache=self.opts.use_cache)
            sadv = self.reporter.stage("summaries", sum(1 for s in summaries if s.size))
            failed = asyncio.run(llm_summaries(model, summaries, on_done=sadv))
            if failed:
                self.reporter.info(f"{failed} cluster summaries failed; those keep their most central attribute")
        cluster_col = np.full(attrs.num_rows, -1, dtype=np.int32)
        q_rows = np.flatnonzero(is_q.to_numpy(zero_copy_only=False))
        cluster_col[q_rows] = res.assignment
        attrs = attrs.set_column(attrs.schema.get_field_index("cluster"), "cluster", pa.array(cluster_col, type=pa.int32()))
        ix.write_npy(self.out / "emb" / "centroids.npy", res.centroids.astype(self.opts.dtype))
        ix.write_table(self.out / "attributes.parquet", attrs, ix.ATTRIBUTES_SCHEMA)
        ctable = pa.table(
            {
                "cluster": pa.array([s.cluster for s in summaries], type=pa.int32()),
                "size": pa.array([s.size for s in summaries], type=pa.int64()),
                "summary": pa.array([s.summary for s in summaries], type=pa.string()),
                "keywords": pa.array([s.keywords for s in summaries], type=pa.list_(pa.string())),
                "central_attr_id": pa.array([s.central_attr_id for s in summaries], type=pa.int64()),
            }
        )
        ix.write_table(self.out / "clusters.parquet", ctable, ix.CLUSTERS_SCHEMA)
        self.meta.counts.clusters = res.k
        advance(1)
        self.reporter.done("cluster", f"K = {res.k} (requested {k_req}) over {len(texts)} query attributes")

    def _write_empty(self, names: list[str], dim: int) -> None:
        for name in names:
            if name.endswith(".parquet"):
                t = name[: -len(".parquet")]
                ix.write_table(self.out / name, ix.TABLES[t].empty_table(), ix.TABLES[t])
            else:
                ix.write_npy(self.out / name, np.zeros((0, dim), dtype=self.opts.dtype))

    def stage_finalize(self) -> None:
        assert self.meta is not None
        dim = self.embedder(self.opts.text_tokens).dim
        # Channels not built still get their (empty) files, so readers never special-case.
        missing = [n for n in INDEX_FILES if n != "index.json" and not (self.out / n).exists()]
        self._write_empty(missing, dim)
        if not self.meta.embedder.probe:  # no embedding stage ran (an index without vectors)
            self.meta.embedder = ix.EmbedderInfo.of(self.embedder(self.opts.text_tokens), self.opts.dtype)
        import duckdb

        path_sql = str(self.out / "examples.parquet").replace("'", "''")
        con = duckdb.connect()
        rows = con.sql(f"SELECT source, count(*) FROM read_parquet('{path_sql}') GROUP BY source ORDER BY 2 DESC, 1").fetchall()
        self.meta.sources = {str(s): int(n) for s, n in rows}
        self.meta.files = {n: ix.sha256_file(self.out / n) for n in INDEX_FILES if n != "index.json"}
        self.meta.stages["finalize"] = "done"
        self._save_meta()
        if self.meta.stages.get("extract") == "partial":
            # Keep the extraction record so a rerun retries only the failed examples.
            for f in self.work.iterdir():
                if not f.name.startswith("extract.sqlite"):
                    shutil.rmtree(f, ignore_errors=True) if f.is_dir() else f.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- the run ---------------------------------------------------------------------------------------------
    def planned(self) -> list[str]:
        ch = self.opts.channels()
        stages = ["load"]
        if "lexical" in ch:
            stages += ["lexical", "embed_text"]
        if "llm" in ch:
            stages += ["extract", "embed_attrs", "cluster"]
        return stages + ["finalize"]

    def dry_run(self) -> str:
        """Calls, tokens and cost of the LLM extraction this build would make (loads the data, nothing else)."""
        from chunky.turf.extract import estimate

        o = self.opts
        report = LoadReport(str(o.data))
        exs = [(i, e.query, e.response) for i, e in enumerate(self.iter_loaded_examples(report))]
        lines = [f"{len(exs)} examples from {report.rows_read} rows of {o.data}"]
        if report.rows_skipped:
            lines.append(f"skipped: {report.describe_skips()}")
        spec = o.resolved_extract_model()
        if spec is None:
            lines.append("extractor 'lexical': no LLM calls")
        else:
            est = estimate(spec, exs, o.attributes_per_side)
            lines.append(est.describe())
            if o.summary_model:
                k = o.clusters or max(1, round(len(exs) * 10 / 376))
                lines.append(f"cluster summaries with {o.summary_model}: up to {k} calls")
        return "\n".join(lines)

    def run(self) -> BuildSummary:
        fresh = not self._has_finished_work()
        created = not self.out.exists() or (self.out.is_dir() and not any(self.out.iterdir()))
        # Every check before anything is written: the data (unless its load is done), the embedder (loaded:
        # a model that cannot load or a server that does not answer fails here, not after the lexical stage).
        if fresh:
            self.opts.check_data()
        self.embedder(self.opts.text_tokens)
        if not isinstance(self.reporter, _Tracked):
            self.reporter = _Tracked(self.reporter, self.progress)  # type: ignore[assignment]
        self._prepare_dir()
        try:
            return self._run_stages(fresh)
        except BaseException:
            if fresh and not self._has_finished_work():
                self._remove_unstarted(created)
            raise

    def _remove_unstarted(self, created: bool) -> None:
        """A build that finished no stage leaves nothing behind (no stub for `index info` to advise resuming)."""
        if created:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        for name in INDEX_FILES:
            (self.out / name).unlink(missing_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.out / "emb").rmdir()

    def saved_note(self) -> str:
        """What an interrupted build has kept, for its last line."""
        meta = self.meta
        done = [s for s in self.planned() if meta is not None and meta.stages.get(s) == "done"]
        p = self.progress
        parts = [f"finished stages: {', '.join(done)}" if done else "no finished stage"]
        if p.stage is not None and p.stage not in done and p.done:
            if p.stage == "load":
                parts.append("the load stage restarts from the first row")
            else:
                total = f" of {p.total:,}" if p.total else ""
                parts.append(f"{p.stage}: {p.done:,}{total} done")
        return "; ".join(parts)

    def _run_stages(self, fresh: bool) -> BuildSummary:
        self.meta = self._load_or_new_meta()
        summary = BuildSummary(out=self.out)
        if all(self.meta.stages.get(s) == "done" for s in self.planned()):
            summary.nothing_to_do = True
            summary.meta = self.meta
            return summary
        if not fresh:
            done = [s for s in self.planned() if self.meta.stages.get(s) == "done"]
            nxt = next(s for s in self.planned() if self.meta.stages.get(s) != "done")
            summary.resumed_from = nxt
            self.reporter.info(
                f"resuming {self.out}: " + (f"finished stages {', '.join(done)}; " if done else "")
                + f"continuing with {nxt}"
            )
        self._save_meta()
        for stage in self.planned():
            if self.meta.stages.get(stage) == "done":
                summary.stages_skipped.append(stage)
                continue
            self._invalidate_after(stage)
            t0, c0 = time.perf_counter(), time.process_time()
            ok = getattr(self, f"stage_{stage}")()
            summary.seconds[stage] = time.perf_counter() - t0
            summary.cpu_seconds[stage] = time.process_time() - c0
            summary.stages_run.append(stage)
            # A partial stage (some examples failed) still feeds the later stages, so the index is usable;
            # a rerun retries the failures and rebuilds what depends on them.
            self._mark(stage, "partial" if ok is False else "done")
        summary.meta = self.meta
        summary.warnings = list(self.warnings)
        return summary


def _data_sha(data: str) -> str:
    p = Path(data)
    if p.is_file():
        return ix.sha256_file(p)
    return ""


def build_index(opts: BuildOptions, reporter: Reporter | None = None) -> BuildSummary:
    """Build (or resume) an index; chooses the Ray builder when `ray` is set by the caller."""
    return IndexBuilder(opts, reporter).run()
