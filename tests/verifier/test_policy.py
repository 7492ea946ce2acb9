"""``verifier.policy``: each service's defaults, and what a counter's policy file may change."""

from __future__ import annotations

from typing import Any

import pytest

from credential.errors import UsageError
from verifier.policy import Policy, policy_overrides


def test_defaults_per_service() -> None:
    library, transit = Policy.for_service("library"), Policy.for_service("transit")
    assert (library.paper, transit.paper) == ("accept", "accept_with_id")
    assert library.freshness_s == 120 and library.stale_status == "warn"


def test_a_policy_file_sets_what_a_city_may_change() -> None:
    doc = {"paper": "reject", "freshness_seconds": 60, "clock_skew_seconds": 30,
           "status_max_age_days": 2, "stale_status": "reject"}
    policy = Policy.for_service("clinic", **policy_overrides(doc))
    assert (policy.paper, policy.freshness_s, policy.clock_skew_s) == ("reject", 60, 30)
    assert policy.status_max_age_s == 2 * 86400 and policy.stale_status == "reject"
    assert Policy.for_service("clinic", **policy_overrides({})) == Policy.for_service("clinic")


@pytest.mark.parametrize(("doc", "why"), [
    ([], "JSON object"),
    ({"freshnes_seconds": 60}, "unknown key 'freshnes_seconds'"),  # a typo is not a default
    ({"freshness_seconds": "60"}, "freshness_seconds"),
    ({"freshness_seconds": True}, "freshness_seconds"),
    ({"freshness_seconds": 1.5}, "freshness_seconds"),
    ({"status_max_age_days": 10_000}, "status_max_age_days"),
    ({"clock_skew_seconds": -1}, "clock_skew_seconds"),
    # it widens each passport's days too: a year's let one expired a year before pass
    ({"clock_skew_seconds": 3601}, "clock_skew_seconds: a whole number of seconds, from 0 to 3600"),
    ({"paper": "maybe"}, "accept, accept_with_id, reject"),
    ({"stale_status": None}, "warn, reject"),
])
def test_a_policy_file_mistake_is_named(doc: Any, why: str) -> None:
    with pytest.raises(UsageError) as err:
        policy_overrides(doc)
    assert err.value.code == "policy_invalid" and why in err.value.message["en"]
    assert err.value.message["es"] != err.value.message["en"]


def test_a_zero_freshness_window_is_refused_as_policy_times_must_be_positive() -> None:
    # The policy file refuses 0 itself, by its own range...
    with pytest.raises(UsageError) as err:
        policy_overrides({"freshness_seconds": 0})
    assert err.value.code == "policy_invalid"
    # ...and a Policy built in code (not from a file) refuses times that are not positive.
    for overrides in ({"freshness_s": 0}, {"clock_skew_s": -1}, {"status_max_age_s": 0}):
        with pytest.raises(UsageError) as err:
            Policy.for_service("library", **overrides)
        assert err.value.code == "usage_error"
        assert "policy times must be positive" in err.value.message["en"]
        assert "los tiempos de la política deben ser positivos" in err.value.message["es"]
    assert Policy.for_service("library", clock_skew_s=0).clock_skew_s == 0  # zero skew is fine


def test_an_unknown_service_is_named() -> None:
    with pytest.raises(UsageError) as err:
        Policy.for_service("casino")
    assert err.value.code == "service_unknown"
    en = err.value.message["en"]
    assert "casino" in en and "library (Library), transit (Transit), clinic (Clinic)" in en
    assert "Clínica (clinic)" in err.value.message["es"]  # a Spanish clerk reads Spanish names
