"""Behaviour metrics for steering: what is measured on each response.

Specs:
  a detector spec       code, sympy, tool_call, refusal, rebuttal, latex, math, phrase:TEXT, regex:P,
                        short[:N], stance:no|yes  -> a rate (share of responses where it fires)
  length                response length in tokens -> a mean
  accuracy              the response's answer matches the example's reference -> a rate
                        (numbers: the final answer is extracted and compared numerically;
                         yes/no references: the response's verdict; otherwise the reference as a phrase)
  rubric:NAME[:T]       an LLM judge with a SURF rubric; a violation is a score above T (default 50) -> a rate
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

from chunky.errors import ConfigError
from chunky.measure.detectors import DETECTORS, get_detector, stance
from chunky.measure.evalset import EvalExample
from chunky.measure.transforms import Prompt
from chunky.models.types import ChatResult


@dataclass(frozen=True)
class MetricValue:
    """One response's measurement; `value` None means it could not be measured (an error, not a 0)."""

    value: float | None
    evidence: str = ""
    error: str | None = None


class Metric(ABC):
    spec: str
    kind: Literal["rate", "mean"] = "rate"
    unit: str = "%"
    needs_reference: bool = False

    @abstractmethod
    async def measure(self, example: EvalExample, prompt: Prompt, result: ChatResult) -> MetricValue: ...


@dataclass
class DetectorMetric(Metric):
    spec: str

    def __post_init__(self) -> None:
        self.fn = get_detector(self.spec)

    async def measure(self, example: EvalExample, prompt: Prompt, result: ChatResult) -> MetricValue:
        d = self.fn(result.text)
        return MetricValue(1.0 if d.hit else 0.0, d.evidence)


class LengthMetric(Metric):
    spec = "length"
    kind = "mean"
    unit = "tokens"

    async def measure(self, example: EvalExample, prompt: Prompt, result: ChatResult) -> MetricValue:
        # The provider's own token count; a whitespace count only when it reported none.
        n = result.usage.output_tokens if result.usage.output_tokens > 0 else len(result.text.split())
        return MetricValue(float(n), f"{n} tokens")


# --- numeric answer extraction -----------------------------------------------------------------

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\.\d+"
_FINAL_PATTERNS = [
    re.compile(r"\\boxed\{\s*([^{}]*)\}"),
    re.compile(r"####\s*([^\n]+)"),
    re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*([^\n]+)", re.I),
]


def _parse_number(s: str) -> float | None:
    s = s.replace(",", "").replace("$", "").replace("%", "").strip()
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", s)
    try:
        if m:
            den = float(m.group(2))
            return float(m.group(1)) / den if den else None
        return float(s)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The final numeric answer of a text: \\boxed{}, '#### X', 'the answer is X', else the last number."""
    clean = text.replace("\\!", "").replace("{,}", ",")
    frac = re.sub(r"\\[dt]?frac\{(-?[\d.]+)\}\{([\d.]+)\}", r"\1/\2", clean)
    for pat in _FINAL_PATTERNS:
        matches = pat.findall(frac)
        if matches:
            nums = re.findall(_NUMBER, matches[-1])
            if nums:
                v = _parse_number(nums[0])
                if v is not None:
                    return v
    nums = re.findall(_NUMBER, frac)
    for n in reversed(nums):
        v = _parse_number(n)
        if v is not None:
            return v
    return None


def answer_matches(response: str, reference: str) -> tuple[bool, str]:
    """Whether `response` gives the `reference` answer, and what was compared."""
    ref = reference.strip()
    low = ref.lower().rstrip(".!")
    if low in ("yes", "no", "true", "false"):
        want = "yes" if low in ("yes", "true") else "no"
        d = stance(response, want)
        return d.hit, f"verdict {d.evidence!r}, expected {want}"
    # A numeric reference is a bare number, or a worked solution ending in "#### N" / \boxed{N}.
    tail = ref
    if "####" in ref:
        tail = ref.rsplit("####", 1)[1]
    elif "\\boxed{" in ref:
        tail = ref.rsplit("\\boxed{", 1)[1].split("}", 1)[0]
    ref_num = _parse_number(tail)
    if ref_num is not None:
        got = extract_number(response)
        if got is None:
            return False, "no number in the response"
        ok = abs(got - ref_num) <= 1e-6 * max(1.0, abs(ref_num))
        return ok, f"answer {got:g}, expected {ref_num:g}"
    pat = re.compile(r"(?<!\w)" + re.escape(ref) + r"(?!\w)", re.I)
    ok = bool(pat.search(response))
    return ok, f"reference {'found' if ok else 'not found'}: {ref[:60]!r}"


class AccuracyMetric(Metric):
    spec = "accuracy"
    needs_reference = True

    async def measure(self, example: EvalExample, prompt: Prompt, result: ChatResult) -> MetricValue:
        if example.reference is None or not str(example.reference).strip():
            return MetricValue(None, error=f"example '{example.id}' has no reference answer")
        ok, why = answer_matches(result.text, example.reference)
        return MetricValue(1.0 if ok else 0.0, why)


@dataclass
class RubricMetric(Metric):
    """A SURF rubric judged by an LLM; the rate of responses scored above the threshold.
    `judge_model` "none" makes the rubric's own detector the whole judge (no model calls)."""

    spec: str
    rubric_name: str
    judge_model: str
    threshold: float = 50.0
    judge_samples: int = 1
    rubric: Any = None  # a chunky.surf.rubric.Rubric; loaded from rubric_name when None
    judge_max_tokens: int = 400
    # The judging configuration: gate None = the rubric's detector, "none" = no gate (as `chunky surf --gate`);
    # `steer --from-run` passes the run's own, so a finding is re-measured the way it was found.
    gate: str | None = None
    style: str = "full"

    def __post_init__(self) -> None:
        from chunky.models import GenerateConfig, get_model
        from chunky.surf.judge import RubricJudge
        from chunky.surf.rubric import load_rubric

        if self.rubric is None:
            self.rubric = load_rubric(self.rubric_name)
        model = None
        gate = self.gate
        if self.judge_model.startswith("detector:"):  # a run judged by a detector alone
            gate = self.judge_model[len("detector:") :]
        elif self.judge_model.strip().lower() != "none":
            model = get_model(
                self.judge_model, role="judge", config=GenerateConfig(temperature=0.0, max_tokens=self.judge_max_tokens)
            )
        self.judge = RubricJudge(model, self.rubric, samples=self.judge_samples, gate=gate, style=self.style)  # type: ignore[arg-type]

    async def measure(self, example: EvalExample, prompt: Prompt, result: ChatResult) -> MetricValue:
        # The judge sees the question as the target saw it (a system prompt is context, not the query).
        j = await self.judge.judge(prompt.user, result.text)
        if j.score is None:
            return MetricValue(None, error=f"judge error: {j.error or 'no score'}")
        hit = j.score > self.threshold
        return MetricValue(1.0 if hit else 0.0, f"score {j.score:g}: {(j.reasoning or '')[:300]}")


METRICS: dict[str, str] = {
    **{k: v for k, v in DETECTORS.items()},
    "length": "response length in tokens (a mean, not a rate)",
    "accuracy": "the answer matches the example's reference (numeric extraction, yes/no verdict, or phrase)",
    "rubric": "rubric:NAME[:THRESHOLD], an LLM judge with a SURF rubric; violation when score > 50",
}


def parse_metric(
    spec: str, *, judge_model: str = "local", judge_samples: int = 1, judge_max_tokens: int = 400
) -> Metric:
    name, _, arg = spec.partition(":")
    key = name.strip().lower()
    if key in ("length", "tokens"):
        if arg:
            raise ConfigError(f"metric '{spec}': 'length' takes no argument")
        return LengthMetric()
    if key == "accuracy":
        if arg:
            raise ConfigError(f"metric '{spec}': 'accuracy' takes no argument")
        return AccuracyMetric()
    if key == "rubric":
        rname, _, thr = arg.rpartition(":") if re.search(r":\d+(\.\d+)?$", arg) else (arg, "", "")
        if not rname:
            raise ConfigError(f"metric '{spec}': write rubric:NAME or rubric:NAME:THRESHOLD")
        threshold = float(thr) if thr else 50.0
        if not 0 <= threshold <= 100:
            raise ConfigError(f"metric '{spec}': the threshold must be within 0-100")
        return RubricMetric(spec, rname, judge_model, threshold, judge_samples, judge_max_tokens=judge_max_tokens)
    if key in DETECTORS or key.replace("-", "_") in ("code_block", "rebut", "tool", "short_answer"):
        return DetectorMetric(spec)
    raise ConfigError(f"unknown metric '{spec}' (known: {', '.join(METRICS)})")


def metric_label(metric: Metric) -> str:
    return f"{metric.spec} ({'mean ' + metric.unit if metric.kind == 'mean' else 'rate'})"


def describe_value(metric: Metric, v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.1f}" if metric.kind == "mean" else f"{100 * v:.1f}%"


def metric_kind_info(metric: Metric) -> dict[str, Any]:
    return {"spec": metric.spec, "kind": metric.kind, "unit": metric.unit}
