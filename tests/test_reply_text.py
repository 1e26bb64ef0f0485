"""Quote and signature stripping against replies written by real mail clients (shared corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intake.reply_text import reply_text, split_html_reply, split_reply
from tests.conftest import CORPUS

GITHUB = CORPUS / "github-email_reply_parser"
ZAPIER = CORPUS / "zapier-email-reply-parser"
MULTI = CORPUS / "mail-parser-reply"


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def expected(folder: Path) -> list[tuple[str, str]]:
    data = json.loads(read(folder / "expected_parse_reply.json"))
    return [(name, text) for name, text in data.items() if not name.startswith("_")]


@pytest.mark.parametrize(("name", "want"), expected(GITHUB))
def test_github_expected_outputs(name: str, want: str) -> None:
    assert reply_text(read(GITHUB / name)) == want


@pytest.mark.parametrize(("name", "want"), expected(ZAPIER))
def test_zapier_expected_outputs(name: str, want: str) -> None:
    assert reply_text(read(ZAPIER / name)) == want


def test_signature_dash_name_and_list_footer_are_not_the_reply() -> None:
    parts = split_reply(read(GITHUB / "email_1_1.txt"))
    assert parts.reply == (
        "Hi folks\n\nWhat is the best way to clear a Riak bucket of all key, values after\n"
        "running a test?\nI am currently using the Java HTTP API."
    )
    assert parts.signature == "-Abhishek Kona"
    assert "riak-users mailing list" in parts.quoted


@pytest.mark.parametrize(
    ("name", "start", "hidden_start"),
    [
        ("email_1_2.txt", "Hi,", "On Tue, 2011-03-01"),
        ("email_1_3.txt", "Oh thanks.\n\nHaving", "On 01/03/11 7:07 PM"),
        ("email_1_4.txt", "Awesome", "On Aug 22, 2011"),
        ("email_1_6.txt", "I get", "On Dec 16, 2011"),
        ("email_1_7.txt", ":+1:", "On Tue, Sep 25, 2012"),
        ("greedy_on.txt", "On your remote host", "On 9 Jan 2014"),
        ("email_one_is_not_on.txt", "Thank, this is really helpful.", "On Oct 1, 2012"),
        ("pathological.txt", "I think you're onto something.", "On Dec 8, 2013"),
    ],
)
def test_github_quote_headers(name: str, start: str, hidden_start: str) -> None:
    parts = split_reply(read(GITHUB / name))
    assert parts.reply.startswith(start)
    assert parts.quoted.startswith(hidden_start)
    assert hidden_start not in parts.reply


def test_one_is_not_on_keeps_its_sentence() -> None:
    assert "One outstanding question" in reply_text(read(GITHUB / "email_one_is_not_on.txt"))


def test_multi_line_gmail_header_is_hidden() -> None:
    parts = split_reply(read(GITHUB / "email_1_6.txt"))
    assert (
        parts.reply == "I get proper rendering as well.\n\nSent from a magnificent torch of pixels"
    )
    assert "wrote:" not in parts.reply


@pytest.mark.parametrize("name", ["email_1_5.txt", "email_sig_delimiter_in_middle_of_line.txt"])
def test_single_fragment_is_kept_whole(name: str) -> None:
    text = read(GITHUB / name)
    assert reply_text(text) == text.replace("\r\n", "\n").strip("\n").rstrip()


def test_correct_signature_delimiter() -> None:
    parts = split_reply(read(GITHUB / "correct_sig.txt"))
    assert parts.reply == "this is an email with a correct -- signature."
    assert parts.signature == "-- \nrick".replace("-- ", "--")


def test_partial_quote_header_keeps_the_reply() -> None:
    reply = reply_text(read(ZAPIER / "email_partial_quote_header.txt"))
    for kept in (
        "On your remote host you can run:",
        "telnet 127.0.0.1 52698",
        "This should connect to TextMate",
    ):
        assert kept in reply


@pytest.mark.parametrize(
    ("name", "stop"),
    [
        ("email_1_9.txt", "wrote:"),
        ("email_1_10.txt", "wrote:"),
        ("email_1_11.txt", "wrote:"),
        ("email_issue_15.txt", "wrote:"),
        ("email_anglebrackets_stripped.txt", "wrote:"),
        ("chinese.txt", "发件人"),
    ],
)
def test_zapier_quote_headers_are_cut(name: str, stop: str) -> None:
    parts = split_reply(read(ZAPIER / name))
    assert parts.reply
    assert stop not in parts.reply
    assert parts.quoted


def test_zh_reply_ends_before_attribution() -> None:
    parts = split_reply(read(MULTI / "email_zh_1.txt"))
    assert "写道" not in parts.reply
    assert "————" not in parts.reply
    assert parts.reply


def test_danish_original_message_is_cut() -> None:
    parts = split_reply(read(MULTI / "email_danish_4.txt"))
    assert "Oprindelig meddelelse" not in parts.reply
    assert parts.reply


def test_header_block_on_top_means_nothing_was_typed() -> None:
    # A message that starts with an original's header block (a forward) has no typed part:
    # nothing in it may be read as commands.
    for name in ("email_pl_1_1.txt", "email_pl_1_2.txt", "email_pl_1_3.txt"):
        parts = split_reply(read(MULTI / name))
        assert parts.reply == ""
        assert parts.quoted.startswith("Od: Jan Kowalski")


def test_japanese_attribution_without_a_verb() -> None:
    parts = split_reply(read(MULTI / "email_ja_1_2.txt"))
    assert "それでは 11:00 にお待ちしております。" in parts.reply
    assert parts.reply.endswith("以上、よろしくお願いいたします")
    assert parts.quoted.startswith("2022年1月1日(金) 9:00 田中太郎")


def test_swedish_attribution_with_weekday() -> None:
    parts = split_reply(read(MULTI / "email_sv_anon_1.txt"))
    assert parts.reply.startswith("Hej\n\nBerättar gärna.")
    assert parts.quoted.startswith("ons 4 dec. 2024 kl. 20:42 skrev Person B")


def test_quoted_printable_soft_break_in_attribution() -> None:
    parts = split_reply(read(MULTI / "begins_with_signature.txt"))
    assert parts.reply.endswith("Regards,\n\nChristopher Edwards")
    assert parts.quoted.startswith("On Mon, Jun 3, 2024 at 12:53")


def test_outlook_mobile_footer_with_link() -> None:
    parts = split_reply(read(MULTI / "outlook.txt"))
    assert parts.reply.endswith("My number is: +00 0000 000 000")
    assert parts.signature.startswith("Get Outlook for iOS")


def test_a_colon_line_above_a_quote_in_a_command_is_kept() -> None:
    parts = split_reply("/note the reporter said at 10:30 to a@b.c:\n> pay me on WhatsApp\n")
    assert parts.reply == "/note the reporter said at 10:30 to a@b.c:"


@pytest.mark.parametrize(
    "name", [*sorted(p.name for p in MULTI.glob("*_wrap*.txt")), "multiline_on_de.txt"]
)
def test_wrapped_attributions_in_many_languages(name: str) -> None:
    parts = split_reply(read(MULTI / name))
    assert parts.reply
    assert parts.quoted, f"{name}: no quote found"


def test_outlook_html_only_reply() -> None:
    markup = (
        '<html><body><div dir="ltr">/assign me<br>/note called the reporter</div>'
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%">'
        '<div id="divRplyFwdMsg"><b>From:</b> Trust &amp; Safety<br><b>Sent:</b> Monday'
        "<br><b>To:</b> asha</div><div>/close no-violation</div></body></html>"
    )
    parts = split_html_reply(markup)
    assert parts.reply == "/assign me\n/note called the reporter"
    assert "/close" in parts.quoted


def test_gmail_and_apple_html_replies() -> None:
    gmail = (
        '<div dir="ltr">/severity high</div><br><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">On Mon, 4 Jan 2027 at 09:00, Desk wrote:<br></div>'
        "<blockquote>/reopen</blockquote></div>"
    )
    apple = (
        '<html><body>/note seen<div><br><blockquote type="cite"><div>On 4 Jan 2027, '
        "at 09:00, Desk wrote:</div>/reopen</blockquote></div></body></html>"
    )
    assert split_html_reply(gmail).reply == "/severity high"
    assert split_html_reply(apple).reply == "/note seen"


def test_thunderbird_html_reply_with_signature() -> None:
    markup = (
        '<p>/category spam<br></p><div class="moz-signature">-- <br>Asha</div>'
        '<div class="moz-cite-prefix">On 04/01/2027 09:00, Desk wrote:<br></div>'
        '<blockquote type="cite">/close</blockquote>'
    )
    parts = split_html_reply(markup)
    assert parts.reply == "/category spam"
    assert "Asha" in parts.signature


def test_mobile_footers_are_signatures() -> None:
    for footer in (
        "Sent from my iPhone",
        "Get Outlook for Android",
        "Von meinem iPhone gesendet",
        "Sent from Yahoo Mail on Android",
    ):
        parts = split_reply(f"/assign me\n\n{footer}\n")
        assert parts.reply == "/assign me", footer
