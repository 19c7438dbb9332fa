"""What a sweep watches while it calls models: the call budget and the health of each role.

Both are counted when a provider call starts or ends (chunky.models.model.CallObserver), not when a
candidate is committed: a budget checked per candidate let every slot already started spend its calls,
so `--max-calls 50` made 120. Here a call is counted when it starts and refused once the budget is
spent, so a sweep never starts more than `--max-calls` uncached calls; only `--max-cost` can be passed,
by the cost of the calls in flight when it is reached (a price is known only once a call returns).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chunky.errors import ChunkyError, ModelError
from chunky.models.model import Model

# A role whose first calls all failed for good is down, not unlucky: stop after this many in a row.
FIRST_FAILURES = 3


class BudgetExhausted(ChunkyError):
    """--max-calls / --max-cost reached: the call that raised this was not made."""


class RoleFailed(ChunkyError):
    """A role (target, generator, judge) fails for good: the sweep stops instead of recording errors."""

    def __init__(self, role: str, model: str, error: str):
        super().__init__(f"the {role} model {model} fails for good: {error}")
        self.role = role
        self.model = model
        self.error = error


@dataclass
class RoleHealth:
    ok: int = 0
    failed: int = 0
    in_a_row: int = 0
    last_error: str = ""


@dataclass
class SweepMonitor:
    """Budget and role health of one sweep; every Model of the sweep reports to it."""

    max_calls: int | None
    max_cost: float | None
    calls: int = 0  # uncached calls started, this session and earlier ones
    cost: float = 0.0
    # After a role has worked, a whole iteration's worth of calls failing in a row means it went down.
    window: int = 40
    roles: dict[str, RoleHealth] = field(default_factory=dict)
    failure: RoleFailed | None = None

    @property
    def exhausted(self) -> bool:
        return (self.max_calls is not None and self.calls >= self.max_calls) or (
            self.max_cost is not None and self.cost >= self.max_cost
        )

    @property
    def stopped(self) -> bool:
        return self.failure is not None or self.exhausted

    def add_cost(self, cost: float) -> None:
        self.cost += cost

    def check(self) -> None:
        """Raise if no new call may start."""
        if self.failure is not None:
            raise self.failure
        if self.exhausted:
            raise BudgetExhausted("the call budget is spent")

    # ---- CallObserver
    def before_call(self, model: Model) -> None:
        self.check()
        self.calls += 1

    def after_call(self, model: Model, error: ModelError | None) -> None:
        h = self.roles.setdefault(model.role, RoleHealth())
        if error is None:
            h.ok += 1
            h.in_a_row = 0
            return
        h.failed += 1
        h.in_a_row += 1
        h.last_error = str(error)
        limit = FIRST_FAILURES if h.ok == 0 else max(FIRST_FAILURES, self.window)
        if h.in_a_row >= limit and self.failure is None:
            self.failure = RoleFailed(model.role, model.spec, h.last_error)

    def fail(self, role: str, model: str, error: str) -> None:
        if self.failure is None:
            self.failure = RoleFailed(role, model, error)

    def failed_calls(self) -> dict[str, int]:
        return {role: h.failed for role, h in self.roles.items() if h.failed}
