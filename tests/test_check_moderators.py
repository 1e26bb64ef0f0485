"""`safetydesk check` says when no moderator command could ever be obeyed."""

from __future__ import annotations

from scheduler.check_moderators import check_moderators
from tests.conftest import SettingsFactory


def test_moderator_settings_are_checked(make_settings: SettingsFactory, sqlite_url: str) -> None:
    lax = check_moderators(make_settings(sqlite_url))
    assert lax.ok and "WITHOUT sender authentication" in lax.detail
    blind = check_moderators(make_settings(sqlite_url, moderators={"require_authenticated": True}))
    assert not blind.ok and "trusted_authserv_ids is empty" in blind.detail
    good = check_moderators(
        make_settings(
            sqlite_url,
            moderators={"require_authenticated": True, "trusted_authserv_ids": ["mx.example"]},
        )
    )
    assert good.ok and good.detail == "2 moderator(s), authenticated by mx.example"
    nobody = check_moderators(make_settings(sqlite_url, moderators={"addresses": []}))
    assert nobody.ok and "nobody can command" in nobody.detail
