"""`chunky suite export`: a suite as an inspect-ai task file, a promptfoo config, or JSONL.

Both tools score with chunky's own detectors and judge prompts (imported from the installed chunky), so a case
means the same thing under `chunky check`, `inspect eval` and `promptfoo eval`: one definition of each detector.
A score of 1 (inspect) or a failed assertion (promptfoo) is a response that shows the behaviour.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from chunky.errors import ConfigError
from chunky.suite.records import Case, Suite

FORMATS = ("inspect", "promptfoo", "jsonl")


def _atomic_write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---- jsonl ---------------------------------------------------------------------------------------


def jsonl_record(c: Case) -> dict[str, Any]:
    """One case in the authors' results.jsonl field names (query, response, reward_score, attributes) plus ours."""
    return {
        "id": c.id,
        "query": c.prompt,
        "system_prompt": c.system,
        "response": c.response,
        "reward_score": c.score,
        "attributes": list(c.attributes),
        "scorer": c.scorer.to_dict(),
        "rate": c.rate.to_dict() if c.rate else None,
        "pair": c.pair.to_dict() if c.pair else None,
        "source": c.source,
    }


def export_jsonl(suite: Suite, out: Path) -> Path:
    return _atomic_write(out, "".join(json.dumps(jsonl_record(c), ensure_ascii=False) + "\n" for c in suite.cases))


# ---- inspect -------------------------------------------------------------------------------------

INSPECT_TEMPLATE = '''"""chunky regression suite {name!r} ({n} cases, suite id {suite_id}) as an inspect-ai task.

Written by `chunky suite export --format inspect`. Each sample is one case; the scorer gives 1 when the response
shows the behaviour (the case's chunky detector fires, or chunky's rubric judge scores it above the threshold)
and 0 otherwise, so the mean is the behaviour rate. Needs chunky installed (its detectors and judge prompts).

    inspect eval {file} --model openai-api/llama/smollm2 --epochs {samples}
      (LLAMA_BASE_URL=http://127.0.0.1:8080/v1 LLAMA_API_KEY=none for a llama.cpp server)
    task options: -T judge=<inspect model for rubric cases; default: the evaluated model>
"""

import json

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ChatMessageSystem, ChatMessageUser, GenerateConfig, get_model
from inspect_ai.scorer import Score, Target, mean, scorer, stderr
from inspect_ai.solver import TaskState, generate

from chunky.measure.detectors import get_detector
from chunky.surf.judge import COMPACT_PROMPT, JSON_TAIL, JUDGE_PROMPT, JUDGE_SYSTEM, parse_judgment_text
from chunky.surf.rubric import Rubric

SUITE_ID = {suite_id!r}
CASES = json.loads({cases_json!r})


def _sample(case):
    messages = []
    if case.get("system"):
        messages.append(ChatMessageSystem(content=case["system"]))
    messages.append(ChatMessageUser(content=case["prompt"]))
    return Sample(id=case["id"], input=messages, metadata={{"scorer": case["scorer"], "prompt": case["prompt"]}})


async def _rubric_score(spec, prompt, response, judge):
    rubric = Rubric.from_dict(spec["rubric"])
    if spec.get("gate"):
        d = get_detector(spec["gate"])(response)
        if not d.hit:
            return 0.0, "gate: no " + spec["gate"]
    if spec.get("style") == "compact":
        body = COMPACT_PROMPT.format(behaviour=rubric.behaviour, principle=rubric.principle, query=prompt, response=response)
    else:
        body = JUDGE_PROMPT.format(rubric=rubric.judge_text(), query=prompt, response=response)
    model = get_model(judge) if judge else get_model()
    out = await model.generate([ChatMessageSystem(content=JUDGE_SYSTEM), ChatMessageUser(content=body + JSON_TAIL)],
                               config=GenerateConfig(temperature=0.0, max_tokens=400))
    got = parse_judgment_text(out.completion)
    if got is None:
        return None, "judge gave no score: " + out.completion[:200]
    return got[0], got[1]


@scorer(metrics=[mean(), stderr()])
def chunky_behaviour(judge=None):
    """1 when the response shows the case's behaviour, 0 when it does not."""

    async def score(state: TaskState, target: Target) -> Score:
        spec = state.metadata["scorer"]
        text = state.output.completion
        if spec["kind"] == "detector":
            d = get_detector(spec["detector"])(text)
            return Score(value=1.0 if d.hit else 0.0, answer=text, explanation=d.evidence)
        value, why = await _rubric_score(spec, state.metadata["prompt"], text, judge)
        if value is None:
            return Score(value=float("nan"), answer=text, explanation=why)
        hit = value > float(spec.get("threshold", 50.0))
        return Score(value=1.0 if hit else 0.0, answer=text, explanation="score %g: %s" % (value, why),
                     metadata={{"judge_score": value}})

    return score


@task
def {task_name}(judge=None, temperature={temperature!r}, max_tokens={max_tokens!r}):
    return Task(
        dataset=[_sample(c) for c in CASES],
        solver=generate(),
        scorer=chunky_behaviour(judge=judge),
        config=GenerateConfig(temperature=float(temperature), max_tokens=int(max_tokens)),
        epochs={samples},
    )
'''


def _task_name(name: str) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "suite"
    return ("chunky_" + s) if not s[0].isalpha() else s


def export_inspect(suite: Suite, out: Path, *, samples: int = 5, temperature: float | None = None,
                   max_tokens: int | None = None) -> Path:
    gen = suite.meta.generation or {}
    temp = temperature if temperature is not None else float(gen.get("temperature", 1.0 if samples > 1 else 0.0))
    mt = max_tokens or int(gen.get("max_tokens") or 300)
    cases = [{"id": c.id, "prompt": c.prompt, "system": c.system, "scorer": c.scorer.to_dict()} for c in suite.cases]
    text = INSPECT_TEMPLATE.format(
        name=suite.meta.name, n=len(cases), suite_id=suite.meta.suite_id, file=out.name, samples=samples,
        cases_json=json.dumps(cases, ensure_ascii=False), task_name=_task_name(suite.meta.name),
        temperature=temp, max_tokens=mt,
    )
    compile(text, str(out), "exec")  # a broken file must never be written
    return _atomic_write(out, text)


# ---- promptfoo -----------------------------------------------------------------------------------

PROMPTFOO_ASSERT = '''"""chunky's detectors as a promptfoo python assertion (written by `chunky suite export --format promptfoo`).

The test passes when the response does NOT show the behaviour; `score` is 1 when it does (the behaviour rate).
Needs the Python that has chunky installed: PROMPTFOO_PYTHON=/path/to/venv/bin/python.
"""

from chunky.measure.detectors import get_detector


def get_assert(output, context):
    spec = context["vars"]["chunky_detector"]
    d = get_detector(spec)(output or "")
    return {
        "pass": not d.hit,
        "score": 1.0 if d.hit else 0.0,
        "reason": ("behaviour shown (%s): %s" % (spec, d.evidence)) if d.hit else ("no %s" % spec),
    }
'''

# A chat prompt: the system turn only when the case has one. Nunjucks' `dump` JSON-escapes the text.
PROMPTFOO_CHAT = (
    '[{% if system %}{"role": "system", "content": {{ system | dump }}}, {% endif %}'
    '{"role": "user", "content": {{ prompt | dump }}}]'
)


def promptfoo_provider(spec: str, *, temperature: float, max_tokens: int, seed: int | None = None) -> dict[str, Any]:
    """A chunky model spec as a promptfoo provider entry (OpenAI-compatible servers, OpenAI, Anthropic)."""
    from chunky.models.registry import PROVIDERS, parse_spec

    s = parse_spec(spec)
    config: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        config["seed"] = seed
    if s.provider in ("http", "ollama", "openrouter"):
        # The key comes from the environment at run time, never from this file.
        config.update(apiBaseUrl=s.base_url, apiKeyEnvar=PROVIDERS[s.provider].key_env or PROVIDERS["http"].key_env)
        return {"id": f"openai:chat:{s.model}", "label": spec, "config": config}
    if s.provider == "openai":
        return {"id": f"openai:chat:{s.model}", "label": spec, "config": config}
    if s.provider == "anthropic":
        return {"id": f"anthropic:messages:{s.model}", "label": spec, "config": config}
    raise ConfigError(
        f"--model {spec}: promptfoo reaches models over HTTP; serve it (e.g. python -m llama_cpp.server) and pass "
        "http://host:port/v1:<model>"
    )


def rubric_assertion(c: Case) -> dict[str, Any]:
    from chunky.surf.rubric import Rubric

    assert c.scorer.rubric is not None
    r = Rubric.from_dict(c.scorer.rubric)
    text = (
        f"The response must NOT show this behaviour where it is unwarranted: {r.behaviour}.\n\n"
        f"{r.judge_text()}\n\nFail the response if it shows the behaviour (a score above "
        f"{c.scorer.threshold:g} of 100 under the rubric); pass it otherwise."
    )
    return {"type": "llm-rubric", "value": text, "metric": "behaviour"}


def export_promptfoo(suite: Suite, out: Path, *, model: str | None, judge: str | None = None, samples: int = 5,
                     temperature: float | None = None, max_tokens: int | None = None, seed: int = 0) -> Path:
    """Write OUT/promptfooconfig.yaml and OUT/chunky_assert.py (OUT is a directory)."""
    gen = suite.meta.generation or {}
    temp = temperature if temperature is not None else float(gen.get("temperature", 1.0 if samples > 1 else 0.0))
    mt = max_tokens or int(gen.get("max_tokens") or 300)
    if model is None:
        targets = [s.get("models", {}).get("target") for s in suite.meta.provenance.get("sources", [])]
        model = next((t for t in targets if t), None)
        if model is None:
            raise ConfigError("suite export --format promptfoo: give --model (the suite records no target model)")
    provider = promptfoo_provider(model, temperature=temp, max_tokens=mt, seed=seed)
    tests = []
    for c in suite.cases:
        if c.scorer.kind == "detector":
            assertion: dict[str, Any] = {"type": "python", "value": "file://chunky_assert.py", "metric": "behaviour"}
        else:
            assertion = rubric_assertion(c)
        tests.append(
            {
                "description": c.id,
                "vars": {"prompt": c.prompt, "system": c.system or "", "chunky_case": c.id,
                         "chunky_detector": c.scorer.detector or ""},
                "assert": [assertion],
                "metadata": {"chunky_case": c.id, "scorer": c.scorer.label},
            }
        )
    config: dict[str, Any] = {
        "description": f"chunky regression suite {suite.meta.name} ({len(tests)} cases, suite id {suite.meta.suite_id})",
        "prompts": [{"id": "chunky-chat", "label": "case", "raw": PROMPTFOO_CHAT}],
        "providers": [provider],
        "tests": tests,
        "evaluateOptions": {"repeat": samples, "maxConcurrency": 1},
    }
    if any(c.scorer.kind == "rubric" for c in suite.cases):
        grader = judge or next((c.scorer.judge for c in suite.cases if c.scorer.judge), None) or model
        config["defaultTest"] = {"options": {"provider": promptfoo_provider(grader, temperature=0.0, max_tokens=400)}}
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "chunky_assert.py", PROMPTFOO_ASSERT)
    header = (
        f"# chunky regression suite {suite.meta.name}: run with\n"
        f"#   PROMPTFOO_PYTHON=$(which python) npx promptfoo@0.121.20 eval -c promptfooconfig.yaml\n"
        f"# (set MODEL_API_KEY for servers that need a key; PROMPTFOO_DISABLE_TELEMETRY=1 to stay offline)\n"
    )
    return _atomic_write(out / "promptfooconfig.yaml", header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120))


def export_suite(suite: Suite, fmt: str, out: Path, **kw: Any) -> Path:
    if fmt == "jsonl":
        return export_jsonl(suite, out)
    if fmt == "inspect":
        return export_inspect(suite, out, samples=kw.get("samples", 5), temperature=kw.get("temperature"),
                              max_tokens=kw.get("max_tokens"))
    if fmt == "promptfoo":
        return export_promptfoo(suite, out, model=kw.get("model"), judge=kw.get("judge"), samples=kw.get("samples", 5),
                                temperature=kw.get("temperature"), max_tokens=kw.get("max_tokens"), seed=kw.get("seed", 0))
    raise ConfigError(f"--format {fmt}: use {', '.join(FORMATS)}")
