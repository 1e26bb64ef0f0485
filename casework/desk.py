"""The desk's services bundled with the settings they need, passed explicitly (no globals)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from casework.models import Party
from casework.notices import Notice, NoticeSink
from casework.settings import DeskSettings, ModeratorSettings, PolicySettings


@dataclass(frozen=True)
class Desk:
    desk: DeskSettings
    moderators: ModeratorSettings
    policy: PolicySettings
    notices: NoticeSink

    def tell_moderators(
        self,
        session: Session,
        template: str,
        case_id: int | None,
        context: Mapping[str, Any],
        now: datetime,
        *,
        recipients: Iterable[str] | None = None,
    ) -> None:
        """One email per moderator (or per given recipient), each on their own thread; the
        facts are the same for all of them."""
        to = list(self.moderators.addresses if recipients is None else recipients)
        if not to:
            return
        notice = Notice(
            template=template, recipient=to[0], party=Party.MODERATOR, case_id=case_id,
            context=context,
        )  # fmt: skip
        self.notices.queue_to_each(session, notice, to, now)
