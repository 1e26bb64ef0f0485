"""The desk's services bundled with the settings they need, passed explicitly (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from casework.notices import NoticeSink
from casework.settings import DeskSettings, ModeratorSettings, PolicySettings


@dataclass(frozen=True)
class Desk:
    desk: DeskSettings
    moderators: ModeratorSettings
    policy: PolicySettings
    notices: NoticeSink
