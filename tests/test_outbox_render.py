"""A case's email to every moderator is rendered once, and never from another notice's facts."""

from __future__ import annotations

import email.policy
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from casework.clock import FixedClock
from casework.db import transaction
from casework.models import OutboxMessage, Party
from casework.notices import Notice
from intake.pipeline import Pipeline, SourceRef
from outbound.outbox import Outbox
from outbound.render import RenderedEmail, Renderer
from scheduler.app import App, build_app
from tests.conftest import MODERATORS, SettingsFactory
from tests.mail import make_mail

MORE_MODERATORS = [*MODERATORS, "mei.moderator@ecareermentor.in"]


class CountingRenderer(Renderer):
    """The real renderer, counting its renderings by template."""

    def __init__(self) -> None:
        super().__init__()
        self.renders: list[str] = []

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        self.renders.append(name)
        return super().render(name, context)


@pytest.fixture
def desk_app(make_settings: SettingsFactory, sqlite_url: str) -> Iterator[App]:
    """An app whose desk has three moderators."""
    settings = make_settings(sqlite_url, moderators={"addresses": MORE_MODERATORS})
    app = build_app(settings, migrate=True)
    yield app
    app.engine.dispose()


def bodies(app: App, template: str) -> dict[str, str]:
    with app.sessions() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == template)
        ).all()
    found = {}
    for row in rows:
        message = email.message_from_bytes(row.raw, policy=email.policy.default)
        part = message.get_body(("plain",))
        assert part is not None
        found[row.recipient] = part.get_content()
    return found


def test_the_same_facts_for_several_recipients_are_rendered_once(
    desk_app: App, clock: FixedClock
) -> None:
    app = desk_app
    renderer = CountingRenderer()
    outbox = Outbox(app.settings.desk, renderer)
    moderators = MORE_MODERATORS
    context = {"ref": "TS-1", "kind": "report"}
    with transaction(app.sessions) as session:
        for recipient in moderators:
            outbox.queue(
                session,
                Notice("reporter/acknowledgement", recipient, Party.MODERATOR, None, context),
                clock.now(),
            )
    assert renderer.renders == ["reporter/acknowledgement"]
    texts = bodies(app, "reporter/acknowledgement")
    assert sorted(texts) == sorted(moderators)
    assert len(set(texts.values())) == 1 and "TS-1" in texts[moderators[0]]


def test_other_facts_or_another_time_are_rendered_afresh(desk_app: App, clock: FixedClock) -> None:
    app = desk_app
    renderer = CountingRenderer()
    outbox = Outbox(app.settings.desk, renderer)
    first = {"ref": "TS-1", "kind": "report"}
    equal_but_other = {"ref": "TS-1", "kind": "report"}
    second = {"ref": "TS-2", "kind": "question"}
    later = clock.now() + timedelta(minutes=1)
    sequence = [
        ("reporter/acknowledgement", "a@example.com", first, clock.now()),
        ("reporter/acknowledgement", "b@example.com", second, clock.now()),
        ("reporter/acknowledgement", "c@example.com", equal_but_other, clock.now()),
        ("reporter/acknowledgement", "d@example.com", equal_but_other, later),
    ]
    with transaction(app.sessions) as session:
        for template, recipient, context, now in sequence:
            outbox.queue(session, Notice(template, recipient, Party.REPORTER, None, context), now)
    assert len(renderer.renders) == 4
    texts = bodies(app, "reporter/acknowledgement")
    assert "TS-1" in texts["a@example.com"] and "TS-2" not in texts["a@example.com"]
    assert "TS-2" in texts["b@example.com"] and "TS-1" not in texts["b@example.com"]
    assert "TS-1" in texts["c@example.com"]


def test_a_case_with_three_moderators_renders_its_notice_once(
    desk_app: App, clock: FixedClock
) -> None:
    """Through the pipeline: one acknowledgement and one moderators' notice rendering."""
    app = desk_app
    renderer = CountingRenderer()
    desk = replace(app.desk, notices=Outbox(app.settings.desk, renderer))
    pipeline = Pipeline(app.sessions, desk, max_message_bytes=app.settings.intake.max_message_bytes)
    pipeline.process(make_mail(), SourceRef(label="test"), clock.now())
    assert sorted(renderer.renders) == ["moderator/new-case", "reporter/acknowledgement"]
    assert sorted(bodies(app, "moderator/new-case")) == sorted(MORE_MODERATORS)
