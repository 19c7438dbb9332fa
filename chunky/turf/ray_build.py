"""`chunky index --ray auto|ADDRESS`: the same build on Ray, writing the same index format.

What runs where:
- load: Ray Data reads JSONL (`read_text`, one row per line, `.gz` included), Parquet (`read_parquet`) and CSV
  (`read_csv`); `map_batches` turns raw rows into pairs with the local loader's own row logic. A JSON list file,
  a Hugging Face dataset or a saved dataset folder is read by the driver (a single JSON document cannot be split).
- lexical: `map_batches` tokenises and extracts the regex features of each side in parallel; the driver counts
  document frequencies (the same `LexicalBuilder`, so the result is identical to a local build).
- embeddings: `map_batches` over an actor pool; each actor loads the embedder once.
- LLM extraction: `map_batches` actors call any chunky model spec through `Model.generate` (HTTP endpoints such as
  vLLM / SGLang / llama.cpp servers, OpenAI, Anthropic; the call cache and retries apply). With
  `--extract-model vllm:<model id or path>`, extraction instead runs vLLM engines inside Ray through
  `ray.data.llm` (needs `pip install 'ray[llm]' vllm` and GPUs); when that is not installed the build stops with
  a clear error naming what is missing.
- clustering, summaries and the index files: on the driver, exactly as locally.

Ray Data keeps row order (`preserve_order`), so example ids, batches and resume points match the local build.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from chunky.errors import ConfigError, MissingExtraError
from chunky.models.registry import PROVIDER_ENV_VARS
from chunky.turf.build import BuildOptions, IndexBuilder, Reporter, embed_resumable
from chunky.turf.load import Example, LoadReport, RowSkipped, file_stem, row_examples

ENV_PASSED_TO_WORKERS = ("CHUNKY_HOME", "CHUNKY_MODELS_DIR", "CHUNKY_CACHE_DB", *PROVIDER_ENV_VARS)


def init_ray(address: str, extra_env: tuple[str, ...] = ()) -> None:
    """Connect to (or start) Ray: 'auto' uses RAY_ADDRESS or a running local cluster, else starts one. Workers get
    ENV_PASSED_TO_WORKERS and `extra_env` from this process's environment."""
    if importlib.util.find_spec("ray") is None:
        raise MissingExtraError("--ray", "ray", "ray")
    import ray

    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in (*ENV_PASSED_TO_WORKERS, *extra_env) if k in os.environ}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
    try:
        if address == "auto":
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster ({e})") from None


def _data_context() -> None:
    import logging

    import ray.data

    # chunky shows its own progress per stage; Ray Data's per-dataset INFO lines would drown it.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False


# ---- functions shipped to Ray workers (module level, so they pickle by reference) ---------------------------


def _rows_to_pairs(rows: list[Any], stem: str, source_field: str | None, turns: str) -> pa.Table:
    """One output row per input row: its pairs as JSON ([id or null, source, turn, query, response]) or a skip reason."""
    out_ex, out_skip = [], []
    for row in rows:
        if isinstance(row, str):  # a JSONL line
            try:
                row = json.loads(row)
            except json.JSONDecodeError:
                out_ex.append("[]")
                out_skip.append("invalid_json")
                continue
        try:
            exs = row_examples(row, 0, stem, source_field, turns)  # type: ignore[arg-type]
        except RowSkipped as e:
            out_ex.append("[]")
            out_skip.append(e.reason)
            continue
        has_id = row.get("id") not in (None, "")
        out_ex.append(json.dumps([[e.id if has_id else None, e.source, e.turn, e.query, e.response] for e in exs]))
        out_skip.append("")
    return pa.table({"examples": pa.array(out_ex, pa.string()), "skip": pa.array(out_skip, pa.string())})


def _jsonl_batch(batch: pa.Table, stem: str, source_field: str | None, turns: str) -> pa.Table:
    return _rows_to_pairs(batch.column("text").to_pylist(), stem, source_field, turns)


def _table_batch(batch: pa.Table, stem: str, source_field: str | None, turns: str) -> pa.Table:
    return _rows_to_pairs(batch.to_pylist(), stem, source_field, turns)


def _analyse_batch(batch: pa.Table) -> pa.Table:
    from chunky.turf.lexical import analyse_texts

    tq, rq = analyse_texts(batch.column("query").to_pylist(), "query")
    tr, rr = analyse_texts(batch.column("response").to_pylist(), "response")
    lst = pa.list_(pa.string())
    return pa.table(
        {
            "example_id": batch.column("example_id"),
            "q_tokens": pa.array(tq, lst),
            "q_regex": pa.array(rq, lst),
            "r_tokens": pa.array(tr, lst),
            "r_regex": pa.array(rr, lst),
        }
    )


class _EmbedActor:
    def __init__(self, spec: str, max_tokens: int, batch_size: int, threads: int):
        # Several actors share a machine's cores: each runs `threads` threads, no more (onnxruntime reads this).
        os.environ["CHUNKY_EMBED_THREADS"] = str(max(1, threads))
        import sys

        from chunky.models.embeddings import get_embedder

        self.embedder = get_embedder(spec, max_tokens=max_tokens, batch_size=batch_size)
        if "torch" in sys.modules:  # only a torch model pays for importing torch (seconds per actor)
            import torch

            torch.set_num_threads(max(1, threads))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"i": batch["i"], "emb": self.embedder.embed([str(t) for t in batch["text"]])}


class _ExtractActor:
    def __init__(self, spec: str, n: int, concurrency: int | None, use_cache: bool):
        from chunky.models import GenerateConfig, get_model

        self.model = get_model(
            spec, role="extractor", config=GenerateConfig(temperature=0.0), max_concurrency=concurrency, use_cache=use_cache
        )
        self.n = n

    def __call__(self, batch: pa.Table) -> pa.Table:
        from chunky.errors import ModelError
        from chunky.turf.extract import extract_side

        async def one(q: str, r: str) -> tuple[str, str, str]:
            try:
                qa, ra = await asyncio.gather(extract_side(self.model, "query", q, self.n), extract_side(self.model, "response", r, self.n))
                return json.dumps(qa), json.dumps(ra), ""
            except ModelError as e:
                return "[]", "[]", str(e) or "model error"

        async def all_rows() -> list[tuple[str, str, str]]:
            return await asyncio.gather(
                *(one(q, r) for q, r in zip(batch.column("query").to_pylist(), batch.column("response").to_pylist()))
            )

        res = asyncio.run(all_rows())
        return pa.table(
            {
                "example_id": batch.column("example_id"),
                "query_attrs": pa.array([x[0] for x in res], pa.string()),
                "response_attrs": pa.array([x[1] for x in res], pa.string()),
                "error": pa.array([x[2] for x in res], pa.string()),
            }
        )


# ---- the builder ----------------------------------------------------------------------------------------------


class RayIndexBuilder(IndexBuilder):
    def __init__(self, opts: BuildOptions, ray_address: str = "auto", reporter: Reporter | None = None):
        super().__init__(opts, reporter)
        self.ray_address = ray_address
        self._ray_ready = False

    def _ray(self):
        if not self._ray_ready:
            init_ray(self.ray_address)
            _data_context()
            self._ray_ready = True
        import ray

        return ray

    def _cpus(self) -> int:
        ray = self._ray()
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    # -- load ------------------------------------------------------------------------------------------
    def iter_loaded_examples(self, report: LoadReport) -> Iterator[Example]:
        o = self.opts
        path = str(o.data)
        name = Path(path).name.lower()
        if path.startswith("hf:") or Path(path).is_dir() or not name.endswith(
            (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".parquet", ".csv")
        ):
            # Not splittable by Ray Data: the driver reads it (with the same row logic).
            yield from super().iter_loaded_examples(report)
            return
        if not Path(path).exists():
            raise ConfigError(f"{path}: no such file or directory")
        ray = self._ray()
        stem = file_stem(path)
        args = (stem, o.source_field, o.turns)
        if name.endswith(".parquet"):
            ds = ray.data.read_parquet(path).map_batches(_table_batch, fn_args=args, batch_format="pyarrow")
        elif name.endswith(".csv"):
            ds = ray.data.read_csv(path).map_batches(_table_batch, fn_args=args, batch_format="pyarrow")
        else:
            ds = ray.data.read_text(path).map_batches(_jsonl_batch, fn_args=args, batch_format="pyarrow")
        items = self._ordered_examples(ds, report, stem)
        if o.sample is not None:
            from chunky.turf.load import reservoir

            out = reservoir(items, o.sample, o.seed, limit=o.limit)
            report.examples = len(out)
            yield from out
            return
        n = 0
        for ex in items:
            n += 1
            yield ex
            if o.limit is not None and n >= o.limit:
                return

    def _ordered_examples(self, ds: Any, report: LoadReport, stem: str) -> Iterator[Example]:
        rowno = 0
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for ex_json, skip in zip(batch.column("examples").to_pylist(), batch.column("skip").to_pylist()):
                rowno += 1
                report.rows_read += 1
                if skip:
                    report.skip(skip, rowno)
                    continue
                for rid, source, turn, q, r in json.loads(ex_json):
                    report.examples += 1
                    yield Example(rid if rid is not None else f"{stem}:{rowno}", source, turn, q, r)

    # -- lexical ---------------------------------------------------------------------------------------
    def lexical_analysed(self, start: int) -> Iterator[tuple[np.ndarray, dict, dict]]:
        ray = self._ray()
        ds = ray.data.read_parquet(str(self.out / "examples.parquet")).select_columns(["example_id", "query", "response"])
        if start:
            ds = ds.filter(lambda row, s=start: row["example_id"] >= s)
        ds = ds.map_batches(_analyse_batch, batch_format="pyarrow", batch_size=max(256, self.opts.batch_size // 4))
        for b in ds.iter_batches(batch_size=self.opts.batch_size, batch_format="pyarrow"):
            yield (
                b.column("example_id").to_numpy(),
                {"query": b.column("q_tokens").to_pylist(), "response": b.column("r_tokens").to_pylist()},
                {"query": b.column("q_regex").to_pylist(), "response": b.column("r_regex").to_pylist()},
            )

    # -- embeddings ------------------------------------------------------------------------------------
    def embed_texts(self, texts: list[str], max_tokens: int, out_path: Path, name: str, label: str) -> str:
        dim = self.embedder(max_tokens).dim  # the driver's copy only answers the dimension
        ray = self._ray()
        spec, batch = self.opts.embedder, self.opts.embed_batch
        cpus = self._cpus()

        def stream(remaining: list[str]) -> Iterator[np.ndarray]:
            if not remaining:
                return
            # One actor per block of work, at most one per CPU (each loads the model once).
            actors = max(1, min(cpus, 8, -(-len(remaining) // (batch * 8))))
            threads = max(1, cpus // actors)
            ds = ray.data.from_arrow(pa.table({"i": np.arange(len(remaining)), "text": pa.array(remaining, pa.string())}))
            ds = ds.repartition(actors) if actors > 1 else ds
            ds = ds.map_batches(
                _EmbedActor,
                fn_constructor_args=(spec, max_tokens, batch, threads),
                batch_size=batch * 8,
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
                batch_format="numpy",
            )
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield np.asarray(b["emb"], dtype=np.float32)

        advance = self.reporter.stage(label, len(set(texts)))
        return embed_resumable(texts, stream, dim, out_path, self.work / "emb", name, self.opts.dtype, advance,
                               info=self.reporter.info)

    # -- LLM extraction ----------------------------------------------------------------------------------
    def run_extraction(self, examples: list[tuple[int, str, str]], store: Any, advance: Callable[[int], None]) -> tuple[int, int]:
        from chunky.turf.extract import ExtractedExample

        spec = self.opts.resolved_extract_model()
        assert spec is not None
        done_ids = store.done_ids()
        todo = [e for e in examples if e[0] not in done_ids]
        if not todo:
            return 0, 0
        if spec.startswith("vllm:"):
            return self._extract_vllm(spec[len("vllm:") :], todo, store, advance)
        ray = self._ray()
        ds = ray.data.from_arrow(
            pa.table(
                {
                    "example_id": pa.array([e[0] for e in todo], pa.int64()),
                    "query": pa.array([e[1] for e in todo], pa.string()),
                    "response": pa.array([e[2] for e in todo], pa.string()),
                }
            )
        )
        actors = max(1, min(self._cpus(), 8, -(-len(todo) // 16)))
        ds = ds.repartition(actors) if actors > 1 else ds
        ds = ds.map_batches(
            _ExtractActor,
            fn_constructor_args=(spec, self.opts.attributes_per_side, self.opts.extract_concurrency, self.opts.use_cache),
            batch_size=16,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            batch_format="pyarrow",
        )
        done = failed = 0
        for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            results, errors = [], {}
            for eid, qa, ra, err in zip(
                b.column("example_id").to_pylist(),
                b.column("query_attrs").to_pylist(),
                b.column("response_attrs").to_pylist(),
                b.column("error").to_pylist(),
            ):
                if err:
                    errors[eid] = err
                else:
                    results.append(ExtractedExample(eid, json.loads(qa), json.loads(ra)))
            store.save(results, errors)  # committed per batch: a kill loses at most one batch
            done += len(results)
            failed += len(errors)
            advance(len(results) + len(errors))
        return done, failed

    def check_extract_model(self, spec: str | None) -> None:
        if spec is None or not spec.startswith("vllm:"):
            return
        missing = [m for m in ("vllm", "aiohttp") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"--extract-model {spec} runs vLLM engines through ray.data.llm, which is not available "
                f"here (missing: {', '.join(missing)}; pip install 'ray[llm]' vllm, on GPU machines). "
                "Use an OpenAI-compatible server instead: --extract-model http://host:port/v1:<model>"
            )

    def _extract_vllm(self, model_source: str, todo: list[tuple[int, str, str]], store: Any, advance: Callable[[int], None]) -> tuple[int, int]:
        """Attribute extraction with vLLM engines inside Ray (ray.data.llm)."""
        self.check_extract_model(f"vllm:{model_source}")
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        from chunky.models.structured import parse_structured
        from chunky.turf.extract import (
            SYSTEM,
            TOKENS_PER_ATTRIBUTE,
            ExtractedExample,
            attribute_schema,
            build_prompt,
            clean_attributes,
        )

        ray = self._ray()
        n = self.opts.attributes_per_side
        schema = attribute_schema(n)
        rows = [{"example_id": eid, "side": side, "text": text} for eid, q, r in todo for side, text in (("query", q), ("response", r))]
        config = vLLMEngineProcessorConfig(model_source=model_source, concurrency=1, batch_size=64)
        processor = build_processor(
            config,
            preprocess=lambda row: dict(
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": build_prompt(row["side"], row["text"], n)},
                ],
                sampling_params=dict(temperature=0.0, max_tokens=n * TOKENS_PER_ATTRIBUTE + 40, guided_decoding=dict(json=schema)),
                example_id=row["example_id"],
                side=row["side"],
            ),
            postprocess=lambda row: dict(example_id=row["example_id"], side=row["side"], generated_text=row["generated_text"]),
        )
        got: dict[int, dict[str, list[str]]] = {}
        for row in processor(ray.data.from_items(rows)).iter_rows():
            value, problem = parse_structured(row["generated_text"], schema)
            attrs = clean_attributes((value or {}).get("attributes", []), n) if problem is None else []
            got.setdefault(int(row["example_id"]), {})[row["side"]] = attrs
        results, errors = [], {}
        for eid, _, _ in todo:
            sides = got.get(eid, {})
            if sides.get("query") and sides.get("response"):
                results.append(ExtractedExample(eid, sides["query"], sides["response"]))
            else:
                errors[eid] = "vLLM returned no valid attribute JSON"
        store.save(results, errors)
        advance(len(todo))
        return len(results), len(errors)
