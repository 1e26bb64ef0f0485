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


def test_demo_enforcement_acts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Warning, strike with program restrictions, and features restored a month later."""
    import email
    import email.policy

    assert run_demo(tmp_path / "demo") == 0
    out = capsys.readouterr().out
    warn, strike, month = (
        out[out.index("\n4. ") : out.index("\n5. ")],
        out[out.index("\n5. ") : out.index("\n6. ")],
        out[out.index("\n6. ") : out.index("\nCases now:")],
    )
    assert "in:  command    -> case TS-1 (moderator reply by token; Applied: 2 command(s).)" in warn
    assert "to karan.mentor@example.com           [TS-1] A warning about" in warn
    assert "to priya.student@example.com          [TS-1] The outcome of your report" in warn
    assert "> Outcome: action taken." in warn
    assert "in:  command    -> case TS-4 (moderator reply by token; Applied: 5 command(s).)" in (
        strike
    )
    assert "[TS-4] A strike on your account: suspension" in strike
    for member in ("divya.mentor@example.com ", "neha.support@example.com  "):
        assert f"to {member}" in strike
    assert strike.count("Program DATA-101: features disabled (not a strike)") == 2
    assert "> This is a program restriction, not a strike" in strike
    assert "[TS-4] Your features are restored" in month
    assert month.count("Program DATA-101: your features are restored") == 2
    # What was printed is what was delivered.
    delivered = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in (tmp_path / "demo" / "maildir" / "out" / "new").iterdir()
    ]
    by_subject = {(str(m["To"]), str(m["Subject"])) for m in delivered}
    assert ("karan.mentor@example.com", "[TS-1] A warning about our Trust and Safety policy") in (
        by_subject
    )
    assert ("karan.mentor@example.com", "[TS-4] Your features are restored") in by_subject
    assert not any(
        "priya" in str(m).lower() for m in delivered if m["To"] == "karan.mentor@example.com"
    )
