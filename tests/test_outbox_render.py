"""A case's email to every moderator is rendered once, then addressed to each of them."""

from __future__ import annotations

import email.policy
import email.utils
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError
from sqlalchemy import select

from casework.clock import FixedClock
from casework.db import transaction
from casework.models import OutboxMessage, Party
from casework.notices import Notice, NoticeRefused
from casework.rules import RULES
from intake.pipeline import SourceRef
from outbound.outbox import Outbox
from outbound.render import RenderedEmail, Renderer
from scheduler.app import App, build_app
from tests.conftest import MODERATORS, SettingsFactory
from tests.desk_helpers import AppPipeline
from tests.mail import make_mail

MORE_MODERATORS = [*MODERATORS, "mei.moderator@ecareermentor.in"]
ACK = {"ref": "TS-1", "kind": "report"}


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


def open_one_case(app: App, clock: FixedClock) -> None:
    """TS-1, with the mail its opening queued taken away again."""
    app.pipeline.process(make_mail(), SourceRef(label="report"), clock.now())
    with app.sessions.begin() as session:
        session.query(OutboxMessage).delete()


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
    open_one_case(desk_app, clock)
    renderer = CountingRenderer()
    outbox = Outbox(desk_app.settings.desk, renderer)
    notice = Notice("reporter/acknowledgement", MORE_MODERATORS[0], Party.MODERATOR, 1, ACK)
    with transaction(desk_app.sessions) as session:
        outbox.queue_to_each(session, notice, MORE_MODERATORS, clock.now())
    assert renderer.renders == ["reporter/acknowledgement"]
    texts = bodies(desk_app, "reporter/acknowledgement")
    assert sorted(texts) == sorted(MORE_MODERATORS)
    assert len(set(texts.values())) == 1 and "TS-1" in texts[MORE_MODERATORS[0]]
    # Each copy is addressed to its own recipient, with its own reply token and Message-ID.
    with desk_app.sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    sent = [email.message_from_bytes(r.raw, policy=email.policy.default) for r in rows]
    assert [str(m["To"]) for m in sent] == MORE_MODERATORS
    assert len({str(m["Reply-To"]) for m in sent}) == 3
    assert len({r.message_id for r in rows}) == 3


def test_a_notice_refused_for_one_recipient_is_queued_for_none(
    desk_app: App, clock: FixedClock
) -> None:
    open_one_case(desk_app, clock)
    notice = Notice(
        "reporter/acknowledgement", MORE_MODERATORS[0], Party.MODERATOR, 1, ACK,
        elements={"reason": "The reason is a sentence this template never writes."},
    )  # fmt: skip
    with pytest.raises(NoticeRefused), transaction(desk_app.sessions) as session:
        desk_app.desk.notices.queue_to_each(session, notice, MORE_MODERATORS, clock.now())
    assert bodies(desk_app, "reporter/acknowledgement") == {}


def test_a_case_with_three_moderators_renders_its_notice_once(
    desk_app: App, clock: FixedClock
) -> None:
    """Through the pipeline: one acknowledgement and one moderators' notice rendering."""
    app = desk_app
    renderer = CountingRenderer()
    desk = replace(app.desk, notices=Outbox(app.settings.desk, renderer))
    pipeline = AppPipeline(app, desk)
    pipeline.process(make_mail(), SourceRef(label="test"), clock.now())
    assert sorted(renderer.renders) == ["moderator/new-case", "reporter/acknowledgement"]
    assert sorted(bodies(app, "moderator/new-case")) == sorted(MORE_MODERATORS)


def test_each_message_is_dated_at_its_own_moment(desk_app: App, clock: FixedClock) -> None:
    # Messages written at one moment share one Date field; a later one gets its own.
    outbox = Outbox(desk_app.settings.desk, Renderer())
    notice = Notice("reporter/acknowledgement", MORE_MODERATORS[0], Party.MODERATOR, 1, ACK)
    first, later = clock.now(), clock.now() + timedelta(minutes=90)
    moments = [first, first, later, first]
    dated = [
        email.message_from_bytes(outbox.compose(notice, f"<m{n}@x.example>", moment))
        for n, moment in enumerate(moments)
    ]
    assert [email.utils.parsedate_to_datetime(str(m["Date"])) for m in dated] == moments
    assert (
        dated[0]["From"]
        == dated[2]["From"]
        == "eCareerMentor Trust & Safety <mentor4u@ecareermentor.in>"
    )


def renderer_of(folder: Path, **templates: str) -> Renderer:
    """A renderer of `templates`, by file name, written into `folder`."""
    for name, text in templates.items():
        (folder / name).write_text(text)
    return Renderer(folder)


def test_the_parts_share_the_context_and_globals_but_not_what_one_sets(tmp_path: Path) -> None:
    renderer = renderer_of(
        tmp_path,
        **{
            "n.subject.j2": '{% set ref = "changed" %}About {{ ref }}',
            "n.txt.j2": "{{ ref }}: {% for i in range(3) %}{{ i }}{% endfor %}",
            "n.html.j2": "<p>{{ ref }} & {{ note }}</p>",
        },
    )
    rendered = renderer.render("n", {"ref": "TS-7", "note": "<b>"})
    assert rendered.subject == "About changed"
    assert rendered.text == "TS-7: 012"
    assert rendered.html == "<p>TS-7 & &lt;b&gt;</p>"  # the value escaped, the template not


def test_a_missing_value_is_an_error_that_names_the_template(tmp_path: Path) -> None:
    renderer = renderer_of(tmp_path, **{"n.subject.j2": "Hi", "n.txt.j2": "{{ ref }}\n{{ gone }}"})
    with pytest.raises(UndefinedError, match="'gone' is undefined") as raised:
        renderer.render("n", {"ref": "TS-7"})
    frames = [frame.filename for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert str(tmp_path / "n.txt.j2") in frames


def test_a_dict_key_is_read_before_the_dict_method_of_that_name(tmp_path: Path) -> None:
    """`facts.items` is the key's value when there is such a key, as a template author means;
    a dict method is still reached by a name that is no key, and an object's attribute too."""
    renderer = renderer_of(
        tmp_path,
        **{
            "n.subject.j2": "{{ facts.kind }}",
            "n.txt.j2": "{{ facts.items }}; {{ facts.keys() | list | length }}; {{ person.real }}",
        },
    )
    rendered = renderer.render("n", {"facts": {"kind": "report", "items": "two"}, "person": 2.5})
    assert rendered.subject == "report"
    assert rendered.text == "two; 2; 2.5"


def test_a_missing_dict_key_is_still_an_error(tmp_path: Path) -> None:
    renderer = renderer_of(tmp_path, **{"n.subject.j2": "Hi", "n.txt.j2": "{{ facts.gone }}"})
    with pytest.raises(UndefinedError, match="has no attribute 'gone'"):
        renderer.render("n", {"facts": {"kind": "report"}})


def test_the_new_case_email_ends_with_every_rule_code_once(
    desk_app: App, clock: FixedClock
) -> None:
    """The cheat sheet's last line lists the rule codes, comma-separated, in both parts, with
    one line break after it, as the loop that wrote it before gave."""
    desk_app.pipeline.process(make_mail(), SourceRef(label="report"), clock.now())
    with desk_app.sessions() as session:
        raw = session.scalars(
            select(OutboxMessage.raw).where(OutboxMessage.template == "moderator/new-case")
        ).first()
    assert raw is not None
    message = email.message_from_bytes(raw, policy=email.policy.default)
    line = "Rule codes: " + ", ".join(rule.code for rule in RULES)
    for kind, after in (("plain", ""), ("html", "</pre>")):
        part = message.get_body((kind,))
        assert part is not None
        content = part.get_content().replace("\r\n", "\n")
        assert f"\n{line}\n{after}" in content, kind
        assert content.count("Rule codes:") == 1
    assert content.rstrip().endswith("</body></html>")
