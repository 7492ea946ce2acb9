"""What each service accepts: the counter's configuration, as plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from credential.claims import services_listed
from credential.errors import UsageError
from credential.text import escaped
from credential.times import COUNTER_CLOCK_SKEW_S, COUNTER_FRESHNESS_S
from schemas import schema

__all__ = ["Policy", "policy_overrides"]

PaperRule = Literal["accept", "accept_with_id", "reject"]

_PAPER: dict[str, PaperRule] = {"library": "accept", "transit": "accept_with_id",
                                "clinic": "accept_with_id"}


@dataclass(frozen=True)
class Policy:
    service: str
    requires: tuple[str, ...]
    eligibility: tuple[str, str] | None
    paper: PaperRule = "accept_with_id"
    freshness_s: int = COUNTER_FRESHNESS_S
    clock_skew_s: int = COUNTER_CLOCK_SKEW_S
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
            listed = services_listed()
            raise UsageError("service_unknown", service=escaped(service[:80]),
                             services_es=listed["es"], services_en=listed["en"])
        base = cls(service=service, requires=spec.discloses,
                   eligibility=spec.eligibility, paper=_PAPER.get(service, "reject"))
        return replace(base, **overrides)  # type: ignore[arg-type]


# A counter's policy file: what a city's rules may change per counter, by the names a city's
# IT lead reads (seconds and days, not internal field names).
# Each: (Policy field, unit in seconds, least value, greatest value), in the key's unit. A zero
# freshness window or list age would refuse every passport; a zero clock skew only trusts the
# clocks. The skew also widens each passport's first and last day (a counter's clock may be
# that far off), so it is kept to an hour: a year's let a passport expired for a year pass.
_MAX_SECONDS = 366 * 86400
_FILE_KEYS: dict[str, tuple[str, int, int, int]] = {
    "freshness_seconds": ("freshness_s", 1, 1, _MAX_SECONDS),
    "clock_skew_seconds": ("clock_skew_s", 1, 0, 3600),
    "status_max_age_days": ("status_max_age_s", 86400, 1, 366),
}
_UNITS = {1: ("segundos", "seconds"), 86400: ("días", "days")}
_CHOICES: dict[str, tuple[str, ...]] = {"paper": ("accept", "accept_with_id", "reject"),
                                        "stale_status": ("warn", "reject")}


def policy_overrides(doc: object) -> dict[str, object]:
    """The ``Policy`` fields a counter's policy file sets, e.g. ``{"paper": "reject",
    "freshness_seconds": 60, "status_max_age_days": 2, "stale_status": "reject"}``. Every
    key is optional; an unknown key or a value of the wrong kind is refused (a typo must not
    silently leave a default in force)."""
    if not isinstance(doc, dict):
        raise UsageError("policy_invalid", reason_es="debe ser un objeto JSON",
                         reason_en="must be a JSON object")
    out: dict[str, object] = {}
    for key, value in doc.items():
        if key in _FILE_KEYS:
            field, unit, least, most = _FILE_KEYS[key]
            if type(value) is not int or not least <= value <= most:
                es, en = _UNITS[unit]
                raise UsageError("policy_invalid",
                                 reason_es=f"{key}: un número entero de {es}, de {least} a {most}",
                                 reason_en=f"{key}: a whole number of {en}, from {least} to "
                                           f"{most}")
            out[field] = value * unit
        elif key in _CHOICES:
            if value not in _CHOICES[key]:
                raise UsageError("policy_invalid",
                                 reason_es=f"{key}: uno de {', '.join(_CHOICES[key])}",
                                 reason_en=f"{key}: one of {', '.join(_CHOICES[key])}")
            out[key] = value
        else:
            known = ", ".join([*_FILE_KEYS, *_CHOICES])
            raise UsageError("policy_invalid", reason_es=f"clave desconocida {str(key)[:40]!r} "
                             f"(claves: {known})",
                             reason_en=f"unknown key {str(key)[:40]!r} (keys: {known})")
    return out
