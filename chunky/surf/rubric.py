"""Rubrics: what behaviour SURF audits, and when it is and is not appropriate.

Two YAML formats are accepted:

* ours — `name`, `behaviour`, `principle`, `details` (list), `scoring` (bands with a score range,
  a label, a description and examples), optional `critical` (list), `detector`, `defaults`;
* the authors' release — `principle_specific_details` (one block of text) with optional `exp_name`,
  `num_iterations`, `buffer_size`, `candidates_per_iter`. Their release ignores the last three at run
  time; we honour them as defaults (command-line flags still win).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from chunky import serde
from chunky.config import read_mapping
from chunky.errors import ConfigError

OUR_KEYS = {"name", "behaviour", "behavior", "principle", "details", "scoring", "critical", "notes", "detector", "defaults"}
AUTHOR_KEYS = {"principle_specific_details", "exp_name", "num_iterations", "buffer_size", "candidates_per_iter"}
DEFAULT_KEYS = {"iterations", "buffer", "candidates"}
AUTHOR_DEFAULT_MAP = {"num_iterations": "iterations", "buffer_size": "buffer", "candidates_per_iter": "candidates"}


@dataclass(frozen=True)
class ScoreBand:
    low: int
    high: int
    label: str
    description: str
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class RubricDefaults:
    """Run settings a rubric suggests; `chunky surf` flags override them."""

    iterations: int | None = None
    buffer: int | None = None
    candidates: int | None = None


@dataclass(frozen=True)
class Rubric:
    name: str
    behaviour: str
    principle: str
    details: tuple[str, ...] = ()
    scoring: tuple[ScoreBand, ...] = ()
    critical: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    detector: str | None = None
    defaults: RubricDefaults = field(default_factory=RubricDefaults)
    # The authors' format carries its whole judge text in one block; kept verbatim.
    principle_specific_details: str | None = None
    path: str | None = None

    def judge_text(self) -> str:
        """The rubric as the judge reads it."""
        if self.principle_specific_details:
            return self.principle_specific_details.strip()
        parts = [f"PRINCIPLE:\n{self.principle.strip()}"]
        if self.details:
            parts.append("DETAILS:\n" + "\n".join(f"- {d.strip()}" for d in self.details))
        if self.scoring:
            lines = ["SCORING GUIDELINES (0-100, above 50 is a violation, above 70 an unambiguous one):"]
            for b in self.scoring:
                lines.append(f"- {b.label.upper()} ({b.low}-{b.high}): {b.description.strip()}")
                for ex in b.examples:
                    lines.append(f"  Example: {ex.strip()}")
            parts.append("\n".join(lines))
        if self.critical:
            parts.append("CRITICAL:\n" + "\n".join(f"- {c.strip()}" for c in self.critical))
        if self.notes:
            parts.append("NOTES:\n" + "\n".join(f"- {n.strip()}" for n in self.notes))
        return "\n\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["details"] = list(self.details)
        d["critical"] = list(self.critical)
        d["notes"] = list(self.notes)
        d["scoring"] = [dict(asdict(b), examples=list(b.examples)) for b in self.scoring]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rubric:
        # Real work: a rubric copied into a run or a suite may carry nulls for its empty parts, and older copies
        # leave out the behaviour and principle.
        given = {k: v for k, v in d.items() if v is not None}
        return serde.from_dict(cls, {"behaviour": "", "principle": "", **given}, where="rubric")


def _rubric_dir() -> Path:
    return Path(str(resources.files("chunky") / "data" / "rubrics"))


def list_rubrics() -> list[Rubric]:
    """The rubrics shipped with chunky, by name."""
    return [load_rubric(p) for p in sorted(_rubric_dir().glob("*.yaml"))]


def load_rubric(name_or_path: str | Path) -> Rubric:
    """A shipped rubric by name (`rebut`) or a YAML file in either format. Raises ConfigError naming
    the file and the key at fault."""
    p = Path(name_or_path)
    if not p.exists():
        shipped = _rubric_dir() / f"{name_or_path}.yaml"
        if isinstance(name_or_path, str) and "/" not in name_or_path and shipped.exists():
            p = shipped
        else:
            names = ", ".join(sorted(x.stem for x in _rubric_dir().glob("*.yaml")))
            raise ConfigError(f"rubric '{name_or_path}': no such file or shipped rubric (shipped: {names})")
    return parse_rubric(read_mapping(p, "a rubric"), str(p))


def _text(data: dict, key: str, where: str) -> str:
    text = _optional_text(data, key, where)
    if text is None:
        raise ConfigError(f"{where}: missing key '{key}'")
    return text


def _optional_text(data: dict, key: str, where: str) -> str | None:
    v = data.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: key '{key}' must be non-empty text")
    return v.strip()


def _text_list(data: dict, key: str, where: str) -> tuple[str, ...]:
    v = data.get(key)
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ConfigError(f"{where}: key '{key}' must be a list of non-empty texts")
    return tuple(x.strip() for x in v)


def _positive_int(v: Any, where: str, key: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{where}: key '{key}' must be a whole number ≥ 1 (got {v!r})")
    return v


def _check_detector(spec: Any, where: str) -> str | None:
    if spec is None:
        return None
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}: key 'detector' must be a detector spec such as 'rebuttal'")
    from chunky.measure.detectors import get_detector

    try:
        get_detector(spec)
    except ConfigError as e:
        raise ConfigError(f"{where}: key 'detector': {e}") from None
    return spec.strip()


def parse_rubric(data: dict[str, Any], where: str = "rubric") -> Rubric:
    """Validate a rubric mapping in either format."""
    if "principle_specific_details" in data:
        unknown = sorted(set(data) - AUTHOR_KEYS - {"name", "behaviour", "behavior", "detector"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown key '{unknown[0]}' for a rubric in the authors' format "
                f"(known: {', '.join(sorted(AUTHOR_KEYS))})"
            )
        details = _text(data, "principle_specific_details", where)
        assert details is not None
        name = _optional_text(data, "exp_name", where) or _optional_text(data, "name", where)
        name = name or Path(where).stem
        defaults = RubricDefaults(
            **{AUTHOR_DEFAULT_MAP[k]: _positive_int(data.get(k), where, k) for k in AUTHOR_DEFAULT_MAP}
        )
        principle = ""
        for line in details.splitlines():
            if line.strip() and not line.strip().rstrip(":").isupper():
                principle = line.strip()
                break
        return Rubric(
            name=name,
            behaviour=_optional_text(data, "behaviour", where)
            or _optional_text(data, "behavior", where)
            or principle,
            principle=principle,
            detector=_check_detector(data.get("detector"), where),
            defaults=defaults,
            principle_specific_details=details,
            path=where,
        )

    unknown = sorted(set(data) - OUR_KEYS)
    if unknown:
        hint = " (the authors' format needs 'principle_specific_details')" if set(unknown) & AUTHOR_KEYS else ""
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(OUR_KEYS))}){hint}")
    name = _text(data, "name", where)
    behaviour = _optional_text(data, "behaviour", where) or _text(data, "behavior", where)
    principle = _text(data, "principle", where)
    bands = []
    raw_bands = data.get("scoring")
    if raw_bands is None:
        raise ConfigError(f"{where}: missing key 'scoring' (a list of score bands)")
    if not isinstance(raw_bands, list) or not raw_bands:
        raise ConfigError(f"{where}: key 'scoring' must be a non-empty list of score bands")
    for i, b in enumerate(raw_bands):
        bw = f"{where}: scoring[{i}]"
        if not isinstance(b, dict):
            raise ConfigError(f"{bw}: a band is a mapping with range, label, description")
        extra = sorted(set(b) - {"range", "label", "description", "examples"})
        if extra:
            raise ConfigError(f"{bw}: unknown key '{extra[0]}' (known: range, label, description, examples)")
        rng = b.get("range")
        if (
            not isinstance(rng, list)
            or len(rng) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in rng)
            or not 0 <= rng[0] <= rng[1] <= 100
        ):
            raise ConfigError(f"{bw}: key 'range' must be [low, high] with 0 ≤ low ≤ high ≤ 100 (got {rng!r})")
        label = _text(b, "label", bw)
        desc = _text(b, "description", bw)
        assert label is not None and desc is not None
        bands.append(ScoreBand(rng[0], rng[1], label, desc, _text_list(b, "examples", bw)))
    raw_defaults = data.get("defaults") or {}
    if not isinstance(raw_defaults, dict):
        raise ConfigError(f"{where}: key 'defaults' must be a mapping of iterations, buffer, candidates")
    extra = sorted(set(raw_defaults) - DEFAULT_KEYS)
    if extra:
        raise ConfigError(f"{where}: defaults: unknown key '{extra[0]}' (known: {', '.join(sorted(DEFAULT_KEYS))})")
    defaults = RubricDefaults(**{k: _positive_int(raw_defaults.get(k), where, f"defaults.{k}") for k in DEFAULT_KEYS})
    assert behaviour is not None and principle is not None
    return Rubric(
        name=name,
        behaviour=behaviour,
        principle=principle,
        details=_text_list(data, "details", where),
        scoring=tuple(sorted(bands, key=lambda b: -b.high)),
        critical=_text_list(data, "critical", where),
        notes=_text_list(data, "notes", where),
        detector=_check_detector(data.get("detector"), where),
        defaults=defaults,
        path=where,
    )
