"""`chunky experiment SPEC.yaml --out EXP`: the paper's causal grids (§4.4.1 Fig. 10, App. A.4.2 Fig. 21) as one
resumable command. For each cell of the grid it writes the mix, trains on it (chunky.train.trainer) and measures
the behaviour on trigger prompts and matched controls (chunky.measure.steer's runner and metrics).

SPEC.yaml (paths relative to the spec's folder):
```yaml
mix: base.jsonl                 # the base mix (any format chunky index reads)
chunk:                          # the chunk, as ablate names one: a regex, a source, or an index selection
  match: "I hope it is correct" #   --drop-match (Python regex), with side: query|response|any
  side: response
  # source: NAME                #   --drop-source
  # index: IDX                  #   with cluster: N or feature: "response=closing:i hope it is correct"
counter: counter.jsonl          # counter-examples (chunky balance), for the counter_added axis
axes:                           # any of these; the grid is their product
  chunk_kept: [0, 8, 16]        # how many chunk examples stay in the mix (a seeded choice)
  counter_added: [0, 8]         # how many counter-examples are added
  with_source: {source: coconot, values: [true, false]}   # Fig. 10b: with or without a whole source
train: {base: local, epochs: 2, lr: 2e-3, batch_size: 8, max_length: 128, seed: 0}
measure:
  eval: eval.jsonl              # rows with a prompt and kind: trigger | control
  metric: "phrase:I hope it is correct"   # any detector, length, or rubric:NAME
  samples: 1
  temperature: 0
  max_tokens: 64
  baseline: true                # also measure the base model
```

EXP/ holds spec.yaml (a copy), cells/<cell>/{mix.jsonl, mix.manifest.json, ckpt/, measure.json, cell.json},
results.json, table.md, heatmap.png/svg, dose.png/svg and summary.txt. A cell is finished when its cell.json
says so; a rerun skips finished cells and resumes an unfinished cell's training from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.errors import ChunkyError, ConfigError
from chunky.measure.ablate import Conversation, _unit
from chunky.measure.evalset import EvalExample

FORMAT = "chunky-experiment"
AXES = ("chunk_kept", "counter_added", "with_source")
TRAIN_KEYS = {"base", "full", "lora_r", "epochs", "max_steps", "lr", "batch_size", "grad_accum", "max_length", "seed",
              "warmup_steps", "scheduler", "save_steps", "threads", "export", "gradient_checkpointing"}


@dataclass
class ChunkSpec:
    match: str | None = None
    side: str = "any"
    source: str | None = None
    index: str | None = None
    cluster: int | None = None
    feature: str | None = None

    def describe(self) -> str:
        if self.match:
            return f"match {self.match!r}"
        if self.source:
            return f"source {self.source}"
        if self.cluster is not None:
            return f"cluster {self.cluster}"
        return f"feature {self.feature}"


@dataclass
class MeasureSpec:
    eval: str
    metric: str
    samples: int = 1
    temperature: float | None = None
    max_tokens: int = 64
    kind_field: str = "kind"
    baseline: bool = True
    judge: str = "local"
    seed: int = 0


@dataclass
class ExperimentSpec:
    path: str
    mix: str
    chunk: ChunkSpec
    axes: dict[str, list[Any]]
    train: dict[str, Any]
    measure: MeasureSpec
    counter: str | None = None
    source_axis: str | None = None  # the source the with_source axis toggles
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



@dataclass(frozen=True)
class Cell:
    chunk_kept: int | None = None
    counter_added: int | None = None
    with_source: bool | None = None

    @property
    def id(self) -> str:
        parts = []
        if self.chunk_kept is not None:
            parts.append(f"chunk{self.chunk_kept}")
        if self.counter_added is not None:
            parts.append(f"counter{self.counter_added}")
        if self.with_source is not None:
            parts.append("with" if self.with_source else "without")
        return "_".join(parts) or "all"

    def label(self, spec: ExperimentSpec) -> str:
        parts = []
        if self.chunk_kept is not None:
            parts.append(f"{self.chunk_kept} chunk")
        if self.counter_added is not None:
            parts.append(f"{self.counter_added} counter")
        if self.with_source is not None:
            parts.append(f"{'with' if self.with_source else 'without'} {spec.source_axis}")
        return ", ".join(parts)


@dataclass
class Rate:
    """Hits over samples with a Wilson 95% interval (rates of a 0/1 detector), or a bootstrap mean otherwise."""

    value: float | None
    low: float | None
    high: float | None
    n: int
    hits: int | None = None

    def fmt(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{100 * self.value:.0f}% [{100 * (self.low or 0):.0f}, {100 * (self.high or 0):.0f}]"


@dataclass
class CellResult:
    cell: Cell
    trigger: Rate
    control: Rate
    rows: int
    chunk_rows: int
    counter_rows: int
    train_steps: int
    final_loss: float | None
    train_s: float
    measure_s: float
    model: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = self.cell.id  # derived from the cell, so reading ignores it
        return d


def read_cell(path: Path) -> CellResult:
    """A finished cell's result (EXP/cells/<cell>/cell.json)."""
    return serde.from_dict(CellResult, json.loads(path.read_text(encoding="utf-8")), where=str(path))


# --- the spec ------------------------------------------------------------------------------------


def _rel(base: Path, p: Any, field_name: str, spec_path: Path) -> str:
    if not isinstance(p, str) or not p:
        raise ConfigError(f"{spec_path}: field '{field_name}' must be a path")
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q))


def load_spec(path: Path) -> ExperimentSpec:
    from chunky.config import read_mapping

    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment spec")
    d = read_mapping(path, "an experiment spec (mix, chunk, axes, train, measure)")
    unknown = set(d) - {"mix", "chunk", "counter", "axes", "train", "measure", "seed"}
    if unknown:
        raise ConfigError(f"{path}: unknown field '{sorted(unknown)[0]}'")
    for k in ("mix", "chunk", "axes", "measure"):
        if k not in d:
            raise ConfigError(f"{path}: missing field '{k}'")
    base = path.parent
    mix = _rel(base, d["mix"], "mix", path)
    if not Path(mix).exists():
        raise ConfigError(f"{path}: field 'mix': no such file {mix}")
    c = d["chunk"]
    if not isinstance(c, dict):
        raise ConfigError(f"{path}: field 'chunk' must be a mapping (match/side, source, or index with cluster/feature)")
    bad = set(c) - {"match", "side", "source", "index", "cluster", "feature"}
    if bad:
        raise ConfigError(f"{path}: chunk: unknown field '{sorted(bad)[0]}'")
    chunk = ChunkSpec(match=c.get("match"), side=c.get("side", "any"), source=c.get("source"),
                      index=_rel(base, c["index"], "chunk.index", path) if c.get("index") else None,
                      cluster=c.get("cluster"), feature=c.get("feature"))
    if sum(x is not None for x in (chunk.match, chunk.source, chunk.cluster, chunk.feature)) != 1:
        raise ConfigError(f"{path}: chunk: give exactly one of match, source, cluster, feature")
    if (chunk.cluster is not None or chunk.feature is not None) and not chunk.index:
        raise ConfigError(f"{path}: chunk: cluster and feature need chunk.index (a TURF index of the mix)")
    if chunk.side not in ("query", "response", "any"):
        raise ConfigError(f"{path}: chunk.side '{chunk.side}': use query, response or any")
    if chunk.match:
        try:
            re.compile(chunk.match)
        except re.error as e:
            raise ConfigError(f"{path}: chunk.match: bad regular expression: {e}") from None
    axes_raw = d["axes"]
    if not isinstance(axes_raw, dict) or not axes_raw:
        raise ConfigError(f"{path}: field 'axes' must name at least one of {', '.join(AXES)}")
    axes: dict[str, list[Any]] = {}
    source_axis = None
    for k, v in axes_raw.items():
        if k not in AXES:
            raise ConfigError(f"{path}: axes: unknown axis '{k}' (axes: {', '.join(AXES)})")
        if k == "with_source":
            if not isinstance(v, dict) or "source" not in v:
                raise ConfigError(f"{path}: axes.with_source: write {{source: NAME, values: [true, false]}}")
            source_axis = str(v["source"])
            vals = v.get("values", [True, False])
            if not all(isinstance(x, bool) for x in vals):
                raise ConfigError(f"{path}: axes.with_source.values: true/false only")
            axes[k] = list(vals)
            continue
        if not isinstance(v, list) or not v or not all(isinstance(x, int) and x >= 0 for x in v):
            raise ConfigError(f"{path}: axes.{k}: a list of whole numbers ≥ 0")
        axes[k] = sorted(set(v))
    counter = _rel(base, d["counter"], "counter", path) if d.get("counter") else None
    if "counter_added" in axes and not counter:
        raise ConfigError(f"{path}: axes.counter_added needs field 'counter' (a JSONL of counter-examples)")
    if counter and not Path(counter).is_file():
        raise ConfigError(f"{path}: field 'counter': no such file {counter}")
    train = d.get("train") or {}
    if not isinstance(train, dict):
        raise ConfigError(f"{path}: field 'train' must be a mapping")
    bad = set(train) - TRAIN_KEYS
    if bad:
        raise ConfigError(f"{path}: train: unknown setting '{sorted(bad)[0]}' (settings: {', '.join(sorted(TRAIN_KEYS))})")
    if isinstance(train.get("base"), str) and train["base"] != "local" and not train["base"].startswith("/"):
        cand = base / train["base"]
        if cand.exists():
            train = {**train, "base": str(cand)}
    m = d["measure"]
    if not isinstance(m, dict) or "eval" not in m or "metric" not in m:
        raise ConfigError(f"{path}: field 'measure' needs eval and metric")
    bad = set(m) - set(MeasureSpec.__dataclass_fields__)
    if bad:
        raise ConfigError(f"{path}: measure: unknown field '{sorted(bad)[0]}'")
    measure = MeasureSpec(**{**m, "eval": _rel(base, m["eval"], "measure.eval", path)})
    return ExperimentSpec(path=str(path), mix=mix, chunk=chunk, axes=axes, train=train, measure=measure,
                          counter=counter, source_axis=source_axis, seed=int(d.get("seed", 0)))


def grid(spec: ExperimentSpec) -> list[Cell]:
    names = [a for a in AXES if a in spec.axes]
    return [Cell(**dict(zip(names, combo))) for combo in itertools.product(*(spec.axes[a] for a in names))]


# --- eval -----------------------------------------------------------------------------------------


def load_eval_sets(spec: ExperimentSpec) -> tuple[list[EvalExample], list[EvalExample]]:
    from chunky.measure.evalset import load_eval

    examples, name = load_eval(spec.measure.eval)
    kf = spec.measure.kind_field
    trig, ctrl = [], []
    for i, ex in enumerate(examples, start=1):
        kind = str(ex.meta.get(kf, "")).lower()
        if kind == "trigger":
            trig.append(ex)
        elif kind == "control":
            ctrl.append(ex)
        else:
            raise ConfigError(f"{name}: row {i}: field '{kf}' must be trigger or control (got {ex.meta.get(kf)!r})")
    if not trig:
        raise ConfigError(f"{name}: no trigger prompts (rows with {kf}: trigger)")
    if not ctrl:
        raise ConfigError(f"{name}: no control prompts (rows with {kf}: control)")
    return trig, ctrl


# --- mixes ----------------------------------------------------------------------------------------


@dataclass
class MixParts:
    rest: list[Conversation]  # neither chunk nor the toggled source
    chunk: list[Conversation]  # in seeded order: a cell keeping k takes the first k
    toggled: list[Conversation]  # the with_source axis's source
    counter: list[Conversation] = field(default_factory=list)  # seeded order


def split_mix(spec: ExperimentSpec) -> MixParts:
    from chunky.measure.ablate import load_additions
    from chunky.train.data import load_mix

    convs = load_mix(spec.mix)
    ids: set[str] | None = None
    if spec.chunk.index:
        from chunky.measure.ablate import ids_for_clusters, ids_for_features
        from chunky.turf.index import TurfIndex

        idx = TurfIndex.open(spec.chunk.index)
        if spec.chunk.cluster is not None:
            ids, _ = ids_for_clusters(idx, [int(spec.chunk.cluster)])
        else:
            ids, _ = ids_for_features(idx, [str(spec.chunk.feature)])
    rx = re.compile(spec.chunk.match) if spec.chunk.match else None
    if spec.source_axis and not any(c.source == spec.source_axis for c in convs):
        raise ConfigError(f"{spec.path}: axes.with_source: source '{spec.source_axis}' is not in {spec.mix}")
    if spec.chunk.source and not any(c.source == spec.chunk.source for c in convs):
        raise ConfigError(f"{spec.path}: chunk.source '{spec.chunk.source}' is not in {spec.mix}")
    rest, chunk, toggled = [], [], []
    for c in convs:
        if ids is not None:
            is_chunk = c.id in ids
        elif rx is not None:
            is_chunk = any(rx.search(t) for t in c.texts(spec.chunk.side))  # type: ignore[arg-type]
        else:
            is_chunk = c.source == spec.chunk.source
        if is_chunk:
            chunk.append(c)
        elif spec.source_axis and c.source == spec.source_axis:
            toggled.append(c)
        else:
            rest.append(c)

    def order(convs: list[Conversation]) -> list[Conversation]:  # a seeded order, the same in every process
        return sorted(convs, key=lambda c: _unit(spec.seed, c.id))

    counter = order(load_additions(Path(spec.counter))) if spec.counter else []
    parts = MixParts(rest, order(chunk), toggled, counter)
    want = max(spec.axes.get("chunk_kept", [0]))
    if want > len(parts.chunk):
        raise ConfigError(f"{spec.path}: axes.chunk_kept asks for {want} chunk examples but {spec.mix} has "
                          f"{len(parts.chunk)} ({spec.chunk.describe()})")
    want = max(spec.axes.get("counter_added", [0]))
    if want > len(parts.counter):
        raise ConfigError(f"{spec.path}: axes.counter_added asks for {want} counter-examples but {spec.counter} has "
                          f"{len(parts.counter)}")
    return parts


def cell_mix(parts: MixParts, cell: Cell, seed: int) -> tuple[list[Conversation], dict[str, int]]:
    """The cell's mix: the rest, k chunk examples, m counter-examples, with or without the toggled source,
    shuffled by a seeded key so chunk rows are spread through the epoch."""
    k = len(parts.chunk) if cell.chunk_kept is None else cell.chunk_kept
    m = 0 if cell.counter_added is None else cell.counter_added
    rows = list(parts.rest) + parts.chunk[:k] + parts.counter[:m]
    if cell.with_source is None or cell.with_source:
        rows += parts.toggled
    rows.sort(key=lambda c: _unit(seed + 1, c.id))
    counts = {"rows": len(rows), "chunk": k, "counter": m,
              "toggled": len(parts.toggled) if cell.with_source in (None, True) else 0}
    return rows, counts


def write_cell_mix(path: Path, rows: list[Conversation], manifest: dict[str, Any]) -> str:
    from chunky.measure.ablate import manifest_path

    tmp = path.with_name(path.name + ".tmp")
    h = hashlib.sha256()
    with tmp.open("w", encoding="utf-8") as f:
        for c in rows:
            line = json.dumps(c.to_row(), ensure_ascii=False) + "\n"
            f.write(line)
            h.update(line.encode())
    tmp.replace(path)
    manifest_path(path).write_text(json.dumps({**manifest, "output_sha256": h.hexdigest()}, indent=1), encoding="utf-8")
    return h.hexdigest()


# --- measurement ----------------------------------------------------------------------------------


def rate_of(values: list[float | None], binary: bool, seed: int) -> Rate:
    from chunky.measure.stats import bootstrap_mean, wilson_interval

    vals = [v for v in values if v is not None]
    if not vals:
        return Rate(None, None, None, 0)
    if binary:
        hits = int(sum(1 for v in vals if v >= 0.5))
        lo_hi = wilson_interval(hits, len(vals))
        assert lo_hi is not None
        return Rate(hits / len(vals), lo_hi[0], lo_hi[1], len(vals), hits)
    e = bootstrap_mean(vals, seed=seed)
    return Rate(e.value, e.low, e.high, e.n)


def measure_model(model_spec: str, trig: list[EvalExample], ctrl: list[EvalExample], m: MeasureSpec,
                  out: Path) -> tuple[Rate, Rate]:
    """Trigger and control rates of one model, with steer's runner: every sample's value is kept in out."""
    from chunky.measure.metrics import DetectorMetric, parse_metric
    from chunky.measure.plots import save_with_figures
    from chunky.measure.steer import SteerConfig, run_steer

    cfg = SteerConfig(models=[model_spec], metric=m.metric, samples=m.samples, seed=m.seed,
                      temperature=m.temperature, max_tokens=m.max_tokens, judge_model=m.judge, use_cache=True)
    metric = parse_metric(m.metric, judge_model=m.judge)
    res = asyncio.run(run_steer(trig + ctrl, cfg, data_name=m.eval, metric=metric, name=out.name))
    save_with_figures(res, out)
    binary = isinstance(metric, DetectorMetric) or m.metric.startswith("rubric:")
    trig_ids = {e.id for e in trig}
    per_sample: dict[bool, list[float | None]] = {True: [], False: []}
    for p in res.pairs_of(model_spec):
        per_sample[p.example.id in trig_ids] += [s.value for s in p.original.samples]
    if m.metric.startswith("rubric:"):  # rubric scores are 0-100: a sample shows the behaviour at >= threshold
        per_sample = {k: [None if v is None else float(v >= 50) for v in vs] for k, vs in per_sample.items()}
    return rate_of(per_sample[True], binary, m.seed), rate_of(per_sample[False], binary, m.seed)


# --- cells ----------------------------------------------------------------------------------------


def cell_train_config(spec: ExperimentSpec, mix: Path, ckpt: Path) -> Any:
    from chunky.train.trainer import TrainConfig

    t = dict(spec.train)
    if "lora_r" in t:
        t["lora_alpha"] = 2 * int(t["lora_r"])
    return TrainConfig(mix=str(mix), out=str(ckpt), **t)


def run_cell(spec_d: dict[str, Any], cell_d: dict[str, Any], exp: str) -> dict[str, Any]:
    """One cell end to end (a plain function so Ray can run it): mix, train, measure. Idempotent: a finished
    cell is read back; an unfinished one resumes."""
    spec = serde.from_dict(ExperimentSpec, spec_d, where=f"{exp}: experiment spec")
    cell = Cell(**cell_d)
    d = Path(exp) / "cells" / cell.id
    done = d / "cell.json"
    if done.is_file():
        return json.loads(done.read_text())
    d.mkdir(parents=True, exist_ok=True)
    parts = split_mix(spec)
    trig, ctrl = load_eval_sets(spec)
    rows, counts = cell_mix(parts, cell, spec.seed)
    mix = d / "mix.jsonl"
    write_cell_mix(mix, rows, {"format": "chunky-experiment-cell-mix", "cell": asdict(cell), "base_mix": spec.mix,
                               "chunk": asdict(spec.chunk), "counts": counts, "seed": spec.seed})
    from chunky.train.trainer import read_record, train

    cfg = cell_train_config(spec, mix, d / "ckpt")
    rec = read_record(d / "ckpt")
    if rec is not None and rec.get("status") == "done":
        r_steps, r_loss, r_s = rec["steps"], (rec["loss_curve"][-1]["loss"] if rec["loss_curve"] else None), 0.0
        gguf = rec.get("gguf")
    else:
        r = train(cfg)
        r_steps, r_loss, r_s, gguf = r.steps, r.last_loss, r.train_s, r.gguf
    model = f"local:{gguf}" if gguf else None
    if model is None:
        raise ChunkyError(f"{spec.path}: train.export is none; experiments measure the exported GGUF")
    t0 = time.perf_counter()
    trigger, control = measure_model(model, trig, ctrl, spec.measure, d / "measure")
    result = CellResult(cell, trigger, control, counts["rows"], counts["chunk"], counts["counter"], r_steps, r_loss,
                        round(r_s, 2), round(time.perf_counter() - t0, 2), model)
    out = result.to_dict()
    tmp = done.with_name("cell.json.tmp")
    tmp.write_text(json.dumps(out, indent=1), encoding="utf-8")
    tmp.replace(done)
    return out


def run_baseline(spec: ExperimentSpec, exp: Path) -> dict[str, Any] | None:
    if not spec.measure.baseline:
        return None
    f = exp / "baseline.json"
    if f.is_file():
        return json.loads(f.read_text())
    from chunky.train.base import resolve_base

    base = resolve_base(str(spec.train.get("base", "local")))
    gguf = base.gguf
    marker = Path(base.path) / "chunky-base.json"
    if gguf is None and marker.is_file():  # a checkpoint chunky dequantised: measure the GGUF it came from
        gguf = json.loads(marker.read_text()).get("gguf")
    if not gguf or not Path(gguf).is_file():
        return None  # a transformers base has no llama.cpp model to measure; cells still compare with each other
    trig, ctrl = load_eval_sets(spec)
    t, c = measure_model(f"local:{gguf}", trig, ctrl, spec.measure, exp / "baseline")
    out = {"model": base.spec, "trigger": asdict(t), "control": asdict(c)}
    f.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


# --- the whole experiment -----------------------------------------------------------------------


@dataclass
class ExperimentResult:
    spec: ExperimentSpec
    cells: list[CellResult]
    baseline: dict[str, Any] | None
    summary: str
    elapsed_s: float
    ran: list[str]  # cells computed in this call (the others were finished already)


def prepare_exp(spec: ExperimentSpec, exp: Path) -> None:
    exp.mkdir(parents=True, exist_ok=True)
    (exp / "cells").mkdir(exist_ok=True)
    key = exp / "experiment.json"
    ident = {"format": FORMAT, "version": 1, "spec": spec.to_dict()}
    if key.is_file():
        old = json.loads(key.read_text())
        if old.get("spec") != ident["spec"]:
            raise ChunkyError(f"{exp}: holds an experiment with another spec; choose another --out or add --overwrite")
    else:
        key.write_text(json.dumps(ident, indent=1), encoding="utf-8")
        shutil.copyfile(spec.path, exp / "spec.yaml")


RAY_ENV = ("CHUNKY_BASES_DIR", "CHUNKY_TRAIN_THREADS", "CHUNKY_LOCAL_THREADS", "CHUNKY_CONVERTER_DIR", "CHUNKY_WHEEL_CACHE")


def _init_ray(address: str) -> Any:
    """Ray, connected the way `chunky index --ray` connects, with the training variables passed to workers."""
    from chunky.turf.ray_build import init_ray

    init_ray(address, extra_env=RAY_ENV)
    import ray

    return ray


def run_experiment(spec_path: Path, exp: Path, *, overwrite: bool = False, ray_address: str | None = None,
                   progress: Callable[[str], None] | None = None) -> ExperimentResult:
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    spec = load_spec(spec_path)
    # Everything a cell needs is checked before the first cell trains.
    load_eval_sets(spec)
    split_mix(spec)
    cell_train_config(spec, Path(spec.mix), exp / "x").check()
    if overwrite and exp.exists():
        shutil.rmtree(exp)
    prepare_exp(spec, exp)
    cells = grid(spec)
    todo = [c for c in cells if not (exp / "cells" / c.id / "cell.json").is_file()]
    say(f"{len(cells)} cells, {len(cells) - len(todo)} finished already")
    if todo and ray_address:
        import torch

        ray = _init_ray(ray_address)
        gpus = 1 if torch.cuda.is_available() else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(run_cell)
        refs = {remote.remote(spec.to_dict(), asdict(c), str(exp)): c for c in todo}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for r in ready:
                try:
                    ray.get(r)
                except Exception as e:  # noqa: BLE001 - a worker's ChunkyError comes back wrapped
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, ChunkyError):
                        raise cause from None
                    raise ChunkyError(f"cell {refs[r].id} failed on Ray: {str(e).splitlines()[0]}") from None
                say(f"cell {refs[r].id} done")
    else:
        for c in todo:
            say(f"cell {c.id}: training and measuring")
            run_cell(spec.to_dict(), asdict(c), str(exp))
    base = run_baseline(spec, exp)
    results = [read_cell(exp / "cells" / c.id / "cell.json") for c in cells]
    summary = summary_line(spec, results, base)
    res = ExperimentResult(spec, results, base, summary, time.perf_counter() - t0, [c.id for c in todo])
    from chunky.train.report import write_outputs

    write_outputs(res, exp)
    return res


@dataclass
class ExperimentProgress:
    """What an experiment folder holds right now, read from disk (for the last line of an interrupted run)."""

    cells: int
    done: int
    current: int | None  # 1-based position in the grid of the cell being worked on (local runs), else None
    current_id: str = ""
    training: str = ""  # the current cell's training, e.g. "after step 12 of 40, checkpoint step 10"
    on_ray: bool = False

    def where(self) -> str:
        if self.done == self.cells:
            return "after the last cell (while measuring the base model or drawing the figures)"
        if self.on_ray:
            return f"with {self.cells - self.done} of {self.cells} cells running or queued on Ray"
        if self.current is None:
            return "before the first cell"
        detail = f"{self.current_id}: {self.training}" if self.training else self.current_id
        return f"in cell {self.current} of {self.cells} ({detail})"

    def saved(self, exp: Path) -> str:
        return f"{self.done} of {self.cells} cells done in {exp}"


def experiment_progress(spec: ExperimentSpec, exp: Path, *, on_ray: bool = False) -> ExperimentProgress:
    """Finished cells have cell.json; a local run works through the grid in order, so the first unfinished cell
    is the one that was running. Its training progress comes from its checkpoint folder."""
    from chunky.train.trainer import saved_progress

    cells = grid(spec)
    done = [(exp / "cells" / c.id / "cell.json").is_file() for c in cells]
    n_done = sum(done)
    if on_ray or n_done == len(cells):
        return ExperimentProgress(len(cells), n_done, None, on_ray=on_ray)
    i = done.index(False)
    cell_dir = exp / "cells" / cells[i].id
    if not cell_dir.is_dir():
        return ExperimentProgress(len(cells), n_done, i + 1 if n_done else None, cells[i].id)
    p = saved_progress(cell_dir / "ckpt")
    if p.finished:
        training = "trained; measuring"
    elif p.step is None:
        training = "loading the model"
    else:
        training = p.where() + (f", checkpoint step {p.checkpoint}" if p.checkpoint is not None else "")
    return ExperimentProgress(len(cells), n_done, i + 1, cells[i].id, training)


def summary_line(spec: ExperimentSpec, cells: list[CellResult], base: dict[str, Any] | None) -> str:
    """One honest sentence: the most-chunk cell against the least-chunk cell (no counter-examples in either when
    that axis exists), with intervals and the controls; and whether the effect is selective."""
    def pick(kept: int | None, counter: int | None) -> CellResult | None:
        for r in cells:
            if (kept is None or r.cell.chunk_kept == kept) and (counter is None or r.cell.counter_added == counter) \
                    and r.cell.with_source in (None, True):
                return r
        return None

    kept = spec.axes.get("chunk_kept")
    cnt = spec.axes.get("counter_added")
    if kept and len(kept) > 1:
        c0 = min(cnt) if cnt else None
        hi, lo = pick(max(kept), c0), pick(min(kept), c0)
        verb = f"Removing {max(kept) - min(kept)} of the {max(kept)} chunk examples"
    elif cnt and len(cnt) > 1:
        hi, lo = pick(None, min(cnt)), pick(None, max(cnt))
        verb = f"Adding {max(cnt) - min(cnt)} counter-examples"
    else:
        ws = [r for r in cells if r.cell.with_source is not None]
        hi = next((r for r in ws if r.cell.with_source), None)
        lo = next((r for r in ws if not r.cell.with_source), None)
        verb = f"Removing source {spec.source_axis}"
    if hi is None or lo is None:
        return "The grid has one cell: nothing to compare."
    t_hi, t_lo = hi.trigger, lo.trigger
    change = "lowers" if (t_lo.value or 0) < (t_hi.value or 0) else "does not lower"
    if t_hi.high is not None and t_lo.high is not None and t_lo.low is not None and t_hi.low is not None \
            and not (t_lo.high < t_hi.low or t_hi.high < t_lo.low):
        change += " (intervals overlap)" if change == "lowers" else ""
    sel = ""
    if hi.trigger.low is not None and hi.control.high is not None:
        sel = "; selective" if hi.trigger.low > hi.control.high else "; not selective (trigger and control intervals overlap)"
    b = ""
    if base:
        b = f"; base model {Rate(**base['trigger']).fmt()}"
    return (f"{verb} {change} the trigger rate from {t_hi.fmt()} to {t_lo.fmt()}; controls "
            f"{hi.control.fmt()} → {lo.control.fmt()}{sel}{b}.")
