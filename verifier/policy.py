"""What each service accepts: the counter's configuration, as plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from credential.errors import UsageError
from schemas import schema

__all__ = ["Policy"]

PaperRule = Literal["accept", "accept_with_id", "reject"]

# Which boolean claim says the holder may use the service (None: everyone may).
_ELIGIBILITY: dict[str, tuple[str, str] | None] = {
    "library": ("library", "eligible"),
    "transit": None,
    "clinic": ("clinic", "eligible"),
}
_PAPER: dict[str, PaperRule] = {"library": "accept", "transit": "accept_with_id",
                                "clinic": "accept_with_id"}


@dataclass(frozen=True)
class Policy:
    service: str
    requires: tuple[str, ...]
    eligibility: tuple[str, str] | None
    paper: PaperRule = "accept_with_id"
    freshness_s: int = 120
    clock_skew_s: int = 300
    status_max_age_s: int = 7 * 86400
    stale_status: Literal["reject", "warn"] = "warn"
    counter_id: str | None = None

    def __post_init__(self) -> None:
        if self.freshness_s <= 0 or self.clock_skew_s < 0 or self.status_max_age_s <= 0:
            raise UsageError("usage_error",
                             reason_es="los tiempos de la política deben ser positivos",
                             reason_en="policy times must be positive")

    @classmethod
    def for_service(cls, service: str, **overrides: object) -> Policy:
        """The default policy of a service named in ``schemas/claims.json``."""
        spec = schema().services.get(service)
        if spec is None:
            raise UsageError("service_unknown", service=service,
                             services=", ".join(sorted(schema().services)))
        base = cls(service=service, requires=spec.discloses,
                   eligibility=_ELIGIBILITY.get(service), paper=_PAPER.get(service, "reject"))
        return replace(base, **overrides)  # type: ignore[arg-type]
