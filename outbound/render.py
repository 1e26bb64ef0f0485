"""Rendering a notice's subject, text and optional HTML part from the Jinja2 templates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str | None


class _Environment(Environment):
    """Jinja's environment, reading `name.key` of a plain dict as its item first.

    Jinja tries an attribute before an item, and for the dicts the desk renders from (a case's
    summary, a person's history) the failed attribute lookup raised and caught an exception
    every time: about an eighth of the instructions that render the moderators' new-case email.
    A dict's own methods are still reached by any name that is not one of its keys.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


class Renderer:
    """Renders `NAME.subject.j2`, `NAME.txt.j2` and, when present, `NAME.html.j2`."""

    def __init__(self, folder: Path = DEFAULT_TEMPLATES) -> None:
        self._env = _Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Templates are read once per process: a change to them takes a restart, and no
            # rendering pays for a look at the file system.
            auto_reload=False,
        )
        self._has_html: dict[str, bool] = {}
        self._env.filters["when"] = _format_when
        self._env.filters["size"] = _format_size

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        # The globals and the context are merged once for the three parts: a template's own
        # merge of them (Template.render) costs more than rendering a subject line does.
        shared = {**self._env.globals, **context}
        subject = self._render(f"{name}.subject.j2", shared)
        text = self._render(f"{name}.txt.j2", shared)
        html = None
        if self._has_html.get(name, True):
            try:
                html = self._render(f"{name}.html.j2", shared)
                self._has_html[name] = True
            except TemplateNotFound:
                self._has_html[name] = False
        return RenderedEmail(subject=" ".join(subject.split()), text=text, html=html)

    def _render(self, name: str, shared: dict[str, Any]) -> str:
        """What `Template.render` does, with a context made of `shared` as it is."""
        template = self._env.get_template(name)
        try:
            return self._env.concat(
                template.root_render_func(template.new_context(shared, shared=True))
            )
        except Exception:
            self._env.handle_exception()

    def has(self, name: str) -> bool:
        try:
            self._env.get_template(f"{name}.txt.j2")
        except TemplateNotFound:
            return False
        return True


def _format_when(value: datetime | None) -> str:
    if value is None:
        return "unknown"
    return value.strftime("%d %B %Y, %H:%M UTC")


def _format_size(value: int) -> str:
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"
