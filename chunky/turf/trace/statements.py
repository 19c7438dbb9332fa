"""The sentences a trace says: "When the model sees [trigger], it [behaviour], causing [violation]" for one
crux or anchor, and the headline that picks the strongest of them across both channels."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from chunky.turf.trace.records import LexicalAnchor, LexicalChannel, LLMChannel

if TYPE_CHECKING:  # pragma: no cover
    from chunky.surf.rubric import Rubric


def behaviour_phrase(crux: str) -> str:
    """'The response provides extensive code examples.' -> 'provides extensive code examples'."""
    s = crux.strip().rstrip(".")
    s = re.sub(r"^(the|this)\s+(response|answer|assistant|model)\s+", "", s, flags=re.IGNORECASE)
    return s[:1].lower() + s[1:] if s else s


def trigger_phrase(attr: str) -> str:
    s = attr.strip().rstrip(".")
    return f'"{s}"'


def statement(trigger: str, behaviour: str, violation: str | None, evidence: str) -> str:
    cause = f", causing {violation}" if violation else ""
    return f"When the model sees {trigger}, it {behaviour}{cause} ({evidence})."


def violation_phrase(rubric: Rubric | None) -> str | None:
    """What the statement says the behaviour causes: a 'NAME' violation (with the rubric's principle)."""
    if rubric is None:
        return None
    principle = " ".join((rubric.principle or "").split()).rstrip(".")
    name = rubric.name
    return f"a '{name}' violation ({principle})" if principle else f"a '{name}' violation"


NO_TRIGGER = "No trigger stands out"


def headline(llm: LLMChannel | None, lexical: LexicalChannel | None, *, crux_given: bool = False) -> str:
    """The paper's sentence for the strongest trigger that stands out (lift > 1 with a 95% interval above 1):
    a crux the user gave leads (the LLM channel's first crux with a trigger, else the lexical channel's crux
    anchor); otherwise the LLM channel's first crux with a trigger, else the strongest lexical anchor (the
    rubric's violation-carrying response features first). When no trigger stands out it says so rather
    than naming one."""
    def strongest(anchors: list[LexicalAnchor]) -> LexicalAnchor | None:
        with_trigger = [a for a in anchors if a.trigger is not None]
        if not with_trigger:
            return None
        # ties go to an exact response-feature anchor: it names the behaviour, not just "like these"
        return max(with_trigger, key=lambda a: (a.carries_violation, round(a.trigger.lower, 6) if a.trigger else 0.0,
                                                a.anchor == "response feature"))

    llm_hit = next((t for t in llm.traces if t.trigger is not None), None) if llm is not None else None
    anchors = lexical.anchors if lexical is not None else []
    if crux_given:
        if llm_hit is not None:
            return llm_hit.statement
        best = strongest([a for a in anchors if a.anchor == "crux"])
        if best is not None:
            return best.statement
        cruxes = [a.text for a in anchors if a.anchor == "crux"] or ([t.crux for t in llm.traces] if llm else [])
        return f"{NO_TRIGGER} for the crux {cruxes[0]!r}: no feature of the failing query is over-represented " \
               "among the training examples behind it (lift > 1 with a 95% interval above 1)." if cruxes else \
               f"{NO_TRIGGER}."
    if llm_hit is not None:
        return llm_hit.statement
    best = strongest(anchors)
    if best is not None:
        return best.statement
    return f"{NO_TRIGGER}: no feature or attribute of the failing query is over-represented among the training " \
           "examples behind the response (lift > 1 with a 95% interval above 1)."
