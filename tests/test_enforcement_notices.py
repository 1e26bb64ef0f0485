"""A sanction notice missing any required element is refused before it reaches the outbox."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from casework.clock import FixedClock
from casework.db import transaction
from casework.enforcement import EnforcementError, apply_sanction
from casework.models import Action, Case, OutboxMessage, Party
from casework.notices import Notice, NoticeRefused
from casework.wording import Element
from outbound.outbox import Outbox
from outbound.render import DEFAULT_TEMPLATES, Renderer
from scheduler.app import App
from tests.enforcement_kit import ASHA, command, open_report

KARAN = "karan.mentor@example.com"


def count(app: App, model: type[Action] | type[OutboxMessage]) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize("element", list(Element))
def test_a_template_that_omits_an_element_is_refused(
    sqlite_app: App, tmp_path: Path, clock: FixedClock, element: Element
) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, folder)
    shared = folder / "subject" / "_elements.txt.j2"
    line = "{{ elements." + element.value + " }}"
    shared.write_text(shared.read_text().replace(line, ""))
    desk = replace(sqlite_app.desk, notices=Outbox(sqlite_app.settings.desk, Renderer(folder)))
    case_id = open_report(sqlite_app, clock.now(), subject=KARAN)
    with pytest.raises(EnforcementError, match=f"does not state the {element.value}"):
        command(
            sqlite_app,
            case_id,
            lambda s, c: apply_sanction(desk, s, c, ASHA, None, "Facts.", clock.now()),
        )
    assert count(sqlite_app, OutboxMessage) == 0
    assert count(sqlite_app, Action) == 0


def test_a_notice_with_an_empty_element_is_refused(sqlite_app: App, clock: FixedClock) -> None:
    elements = {element.value: f"{element.value} sentence" for element in Element}
    elements[Element.FACTS] = " "
    notice = Notice(
        template="subject/warning",
        recipient=KARAN,
        party=Party.SUBJECT,
        case_id=None,
        context={"ref": "TS-0", "name": "", "elements": elements},
        elements=elements,
    )
    with (
        pytest.raises(NoticeRefused, match="no facts given"),
        transaction(sqlite_app.sessions) as session,
    ):
        sqlite_app.desk.notices.queue(session, notice, clock.now())
    assert count(sqlite_app, OutboxMessage) == 0


def test_a_case_without_a_subject_cannot_be_sanctioned(sqlite_app: App, clock: FixedClock) -> None:
    case_id = open_report(sqlite_app, clock.now(), subject=KARAN)
    with transaction(sqlite_app.sessions) as session:
        session.get_one(Case, case_id).subject_id = None
    with pytest.raises(EnforcementError, match="no reported person"):
        command(
            sqlite_app,
            case_id,
            lambda s, c: apply_sanction(sqlite_app.desk, s, c, ASHA, None, "F.", clock.now()),
        )


def test_proactive_detection_is_stated_and_no_reporter_is_told(
    sqlite_app: App, clock: FixedClock
) -> None:
    from casework.models import Detection
    from tests.enforcement_kit import outbox

    case_id = open_report(
        sqlite_app, clock.now(), subject=KARAN, reporter=None, detection=Detection.PROACTIVE
    )
    command(
        sqlite_app,
        case_id,
        lambda s, c: apply_sanction(sqlite_app.desk, s, c, ASHA, None, "F.", clock.now()),
    )
    sent = outbox(sqlite_app)
    assert [(m.recipient, m.template) for m in sent] == [(KARAN, "subject/warning")]
    assert "our proactive monitoring of on-site behaviour" in sent[0].text
