"""The demo's moderator act runs end to end and prints the transcript."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.demo import run_demo


def test_demo_moderator_act(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "replies to the new-case email of TS-1 with commands" in out
    assert "in:  command    -> case TS-1 (moderator reply by token; Applied: 5 command(s).)" in out
    assert "Applied: 5 command(s)." in out
    assert "ok: reported person is karan.mentor@example.com" in out
    assert "to priya.student@example.com          [TS-1] A message about your case" in out
