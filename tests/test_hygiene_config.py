"""The [hygiene] section: defaults, values read from the file, and clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from casework.durations import Duration
from scheduler.config import ConfigError, HygieneSettings
from scheduler.hygiene import cap_policy, hygiene_limits, suppression_policy
from tests.conftest import MODERATORS, SettingsFactory


def test_defaults_apply_without_a_section(make_settings: SettingsFactory, sqlite_url: str) -> None:
    settings = make_settings(sqlite_url)
    assert settings.hygiene == HygieneSettings()
    assert hygiene_limits(settings).parse_timeout == 10.0
    assert suppression_policy(settings).after_bounces == 3


def test_values_are_read_and_wired(make_settings: SettingsFactory, sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url,
        hygiene={
            "suppress_after_bounces": 2,
            "suppress_for": "P7D",
            "per_address_cap": 9,
            "per_address_window": "PT30M",
            "global_cap_per_hour": 50,
            "moderator_cap": 40,
            "max_header_bytes": 1000,
            "max_mime_depth": 4,
            "max_attachment_bytes": 10,
            "parse_timeout": "PT0S",
            "parse_memory_bytes": 123,
        },
    )
    assert settings.hygiene.suppress_for == Duration(days=7)
    policy = cap_policy(settings)
    assert (policy.per_address_cap, policy.per_address_window) == (9, timedelta(minutes=30))
    assert (policy.global_cap_per_hour, policy.moderator_cap) == (50, 40)
    assert policy.exempt == frozenset(MODERATORS)
    limits = hygiene_limits(settings)
    assert (limits.max_header_bytes, limits.max_mime_depth, limits.parse_timeout) == (1000, 4, 0)
    assert suppression_policy(settings).period == Duration(days=7)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("per_address_cap", -1, "must not be negative"),
        ("suppress_for", "30 days", "suppress_for"),
        ("max_mime_depth", "deep", "expected an integer"),
        ("per_adress_cap", 3, "unknown key"),
    ],
)
def test_bad_values_name_the_key(
    make_settings: SettingsFactory, sqlite_url: str, key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_settings(sqlite_url, hygiene={key: value})
