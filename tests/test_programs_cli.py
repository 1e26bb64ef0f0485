"""`programs import CSV` keeps rosters; `people show` tells a person's history."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from casework.clock import FixedClock
from casework.enforcement import apply_sanction
from casework.models import Program, ProgramMember, ProgramRole
from scheduler.app import App
from tests.enforcement_kit import ASHA, ROSTER, cli, command, open_report, write_config


def roster(app: App) -> dict[str, list[tuple[str, str]]]:
    with app.sessions() as session:
        result: dict[str, list[tuple[str, str]]] = {}
        for program in session.scalars(select(Program).order_by(Program.code)):
            result[program.code] = sorted(
                (m.person.email, m.role.value)
                for m in session.scalars(
                    select(ProgramMember).where(ProgramMember.program_id == program.id)
                )
            )
        return result


def test_import_then_update_the_roster(app: App, tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    first = tmp_path / "roster.csv"
    first.write_text(ROSTER)
    code, out, err = cli(config, "programs", "import", str(first))
    assert code == 0, err
    assert "2 program(s): 4 member(s) added, 0 changed, 0 removed" in out
    assert roster(app)["PY101"] == [
        ("karan.mentor@example.com", "mentor"),
        ("meera.mentor@example.com", "mentor"),
        ("sunil.support@example.com", "support"),
    ]
    # Sunil leaves PY101, Meera becomes support staff; DS200 is not in the file and stays.
    second = tmp_path / "roster2.csv"
    second.write_text(
        "program,title,email,name,role\n"
        "PY101,Python for Beginners,karan.mentor@example.com,Karan,mentor\n"
        "PY101,Python for Beginners,MEERA.mentor@example.com,Meera,support\n"
    )
    code, out, err = cli(config, "programs", "import", str(second))
    assert code == 0, err
    assert "1 program(s): 0 member(s) added, 1 changed, 1 removed" in out
    assert roster(app) == {
        "DS200": [("meera.mentor@example.com", "mentor")],
        "PY101": [
            ("karan.mentor@example.com", "mentor"),
            ("meera.mentor@example.com", "support"),
        ],
    }
    with app.sessions() as session:
        assert session.scalars(select(ProgramMember.role)).all().count(ProgramRole.SUPPORT) == 1


def test_a_bad_row_names_its_line_and_nothing_is_imported(
    app: App, tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url)
    cases = {
        "role": ROSTER + "PY101,Python,new.person@example.com,New,teacher\n",
        "address": ROSTER + "PY101,Python,not-an-address,New,mentor\n",
        "twice": ROSTER + "PY101,Python,karan.mentor@example.com,Karan,mentor\n",
        "fields": ROSTER + "PY101,Python,x@example.com\n",
    }
    expected = {
        "role": "line 6: role 'teacher' must be mentor or support",
        "address": "line 6: 'not-an-address' is not an email address",
        "twice": "line 6: karan.mentor@example.com is listed twice for PY101 (line 2)",
        "fields": "line 6: expected 5 fields, got 3",
    }
    for name, text in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        code, _, err = cli(config, "programs", "import", str(path))
        assert code == 1
        assert expected[name] in err and "nothing was imported" in err
    header = tmp_path / "header.csv"
    header.write_text("code,email\nPY101,x@example.com\n")
    code, _, err = cli(config, "programs", "import", str(header))
    assert code == 1 and "line 1: the header must be program,title,email,name,role" in err
    assert roster(app) == {}


def test_people_show_tells_the_history(
    app: App, tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    config = write_config(tmp_path, db_url)
    case_id = open_report(app, clock.now(), subject="karan.mentor@example.com")
    command(
        app,
        case_id,
        lambda s, c: apply_sanction(app.desk, s, c, ASHA, None, "Facts.", clock.now()),
    )
    code, out, err = cli(
        config, "people", "show", "Karan.Mentor@example.com", "--json", "--now", "2027-01-05"
    )
    assert code == 0, err
    history = json.loads(out)
    assert history["cases"] == [
        {
            "ref": f"TS-{case_id}",
            "as": "subject",
            "kind": "report",
            "status": "open",
            "category": "off-platform",
            "created_at": "2027-01-04T09:00:00+00:00",
        }
    ]
    assert [(a["action"], a["kind"], a["status"]) for a in history["actions"]] == [
        ("A-1", "warning", "active")
    ]
    assert history["enforcement"]["standing"]["next_step"] == "strike"
    code, out, _ = cli(config, "people", "show", "priya.student@example.com")
    assert code == 0 and f"TS-{case_id} as reporter" in out
    code, _, err = cli(config, "people", "show", "nobody@example.com")
    assert code == 1 and "nobody" in err
    code, out, _ = cli(config, "enforcement", "karan.mentor@example.com", "--now", "2027-01-05")
    assert code == 0 and "not restricted" in out and "next step: strike" in out
