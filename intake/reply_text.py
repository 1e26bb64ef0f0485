"""Separating what a person wrote in a reply from the quoted original and their signature."""

from __future__ import annotations

import re
from dataclasses import dataclass

from intake.parse import html_to_text

# Lines above the quoted original are what the person typed; commands are read only from there.
# The patterns are anchored to whole lines and contain no nested repetition, so the scan stays
# linear even on a 750 KB quote (github/email_reply_parser `email_long_quote.txt`).

_QUOTED = re.compile(r"^\s{0,3}>")

# "On <date>, <name> wrote:" in the languages real clients use (Gmail, Apple Mail, Thunderbird,
# Yahoo, Android); the attribution may be wrapped over up to four lines.
_ATTRIBUTION_START = re.compile(
    r"^\s*(On|Am|Le|El|Il|Op|Den|På|Em|W dniu|Dne|Dnia|"
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})\b",
    re.IGNORECASE,
)
_ATTRIBUTION_END = re.compile(
    r"(wrote|schrieb|a écrit|escribió|ha scritto|schreef|skrev|escreveu|napisał\(a\)|napisał|"
    r"napsal\(a\)|napsal|írta|kirjoitti|yazd\u0131|\u043d\u0430\u043f\u0438\u0441\u0430\u043b|寫道|写道|のメッセージ|"
    r"より)\s*[:\uff1a]?\s*$",
    re.IGNORECASE,
)
_VERB_FIRST = re.compile(
    r"\b(schrieb|wrote|skrev|napisał|napsal|írta|kirjoitti|escribió|a écrit|ha scritto)\b",
    re.IGNORECASE,
)
_TIME_OF_DAY = re.compile(r"\b\d{1,2}[:.]\d{2}\b")
_ATTRIBUTION_ANYWHERE = re.compile(r"\S.*(写道|寫道)\s*[:\uff1a]\s*$")

# Outlook and webmail header blocks that begin the original, with or without a separator line.
_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Oprindelig meddelelse|Ursprüngliche Nachricht|"
    r"Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht|"
    r"Ursprungligt meddelande|Opprinnelig melding|Wiadomość oryginalna|Původní zpráva|"
    r"Eredeti üzenet|Forwarded message|Videresendt meddelelse)\s*-{2,}|"
    r"Begin forwarded message:|_{7,}|-{7,})\s*$",
    re.IGNORECASE,
)
_HEADER_FIELD = r"From|Von|De|Van|Fra|Från|Od|Feladó|Lähettäjä|Da|发件人|發件人|差出人|送信者"
_HEADER_START = re.compile(rf"^\s*\*?({_HEADER_FIELD})\s*\*?\s*[:\uff1a]", re.IGNORECASE)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(Sent|Date|To|Subject|Gesendet|Datum|An|Betreff|Envoyé|Date|À|Objet|Enviado|Fecha|"
    r"Para|Asunto|Inviato|Data|A|Oggetto|Verzonden|Aan|Onderwerp|Sendt|Til|Emne|Skickat|Till|"
    r"Ämne|Wysłano|Do|Temat|Odesláno|Komu|Předmět|Küldve|Címzett|Tárgy|发送时间|收件人|主题|"
    r"日期|日付|件名|宛先|Cc)\s*\*?\s*[:\uff1a]",
    re.IGNORECASE,
)

# Signatures: the RFC 3676 §4.3 delimiter "-- ", a "-Name" sign-off, and mobile client footers.
_SIG_DELIMITER = re.compile(r"^(--|-- |__|\u2014{4,}|\u2500{4,})\s*$")
_SIG_DASH_NAME = re.compile(r"^-\w[\w .'-]{0,40}$")
_MOBILE_FOOTER = re.compile(
    r"^\s*(Sent from my(\s+[\w-]+){1,4}|Sent from (Mail|Outlook) for \w+|"
    r"Get Outlook for (iOS|Android)|Sent from Yahoo Mail( on \w+)?|Sent from Outlook|"
    r"Sent with Proton Mail( secure email)?\.?|Von meinem(\s+[\w-]+){1,3} gesendet|"
    r"Envoyé de mon(\s+[\w-]+){1,3}|Enviado desde mi(\s+[\w-]+){1,3}|"
    r"Inviato da(l mio)?(\s+[\w-]+){1,3}|Verstuurd vanaf mijn(\s+[\w-]+){1,3}|"
    r"Skickat från min(\s+[\w-]+){1,3}|Sendt fra min(\s+[\w-]+){1,3}|"
    r"Wysłane z(\s+[\w-]+){1,3})(\s*<[^<>\s]{1,200}>)?\s*$",
    re.IGNORECASE,
)

# HTML-only replies: where the quoted original starts in each client's markup.
_HTML_QUOTE = re.compile(
    r"<div[^>]*class=\"?[^\">]*(gmail_quote|gmail_attr|yahoo_quoted|moz-cite-prefix)"
    r"|<div[^>]*id=\"?(divRplyFwdMsg|appendonsend|mail-editor-reference-message-container)"
    r"|<hr[^>]*id=\"?stopSpelling"
    r"|<blockquote"
    r"|<div[^>]*style=\"[^\"]*border-top:\s*solid\s+#(E1E1E1|B5C4DF)",
    re.IGNORECASE,
)
_HTML_SIGNATURE = re.compile(
    r"<div[^>]*(class=\"?[^\">]*(gmail_signature|moz-signature)|id=\"?Signature)",
    re.IGNORECASE,
)

_TAIL = 40  # longer than any verb of _ATTRIBUTION_END with its colon and spaces
_ATTRIBUTION_WRAP = 4  # Gmail and Apple wrap a long "On … wrote:" over a few lines


@dataclass(frozen=True)
class ReplyParts:
    """A reply split in three: what was typed on top, the signature, and everything below."""

    reply: str
    signature: str
    quoted: str

    @property
    def quoted_lines(self) -> int:
        return len(self.quoted.splitlines()) if self.quoted else 0


def split_reply(text: str) -> ReplyParts:
    """The typed reply above the first quote or original-message header, without signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _find_quote_start(lines)
    top, below = lines[:cut], lines[cut:]
    sig = _find_signature(top)
    reply_lines, sig_lines = top[:sig], top[sig:]
    return ReplyParts(
        reply=_tidy(reply_lines),
        signature=_tidy(sig_lines),
        quoted="\n".join(below).strip("\n"),
    )


def reply_text(text: str) -> str:
    """Only what the person typed on top of the reply."""
    return split_reply(text).reply


def split_html_reply(markup: str) -> ReplyParts:
    """The same split for an HTML-only reply: cut the markup where the client put the quote."""
    quote = _HTML_QUOTE.search(markup)
    head = markup if quote is None else markup[: quote.start()]
    below = "" if quote is None else html_to_text(markup[quote.start() :])
    signature = _HTML_SIGNATURE.search(head)
    sig_text = ""
    if signature is not None:
        sig_text = html_to_text(head[signature.start() :])
        head = head[: signature.start()]
    parts = split_reply(html_to_text(head))
    return ReplyParts(
        reply=parts.reply,
        signature=_tidy([parts.signature, sig_text]),
        quoted="\n".join(x for x in (parts.quoted, below) if x),
    )


def _find_quote_start(lines: list[str]) -> int:
    """Index of the first line of the quoted original (len(lines) when there is none)."""
    seen_text = False
    for index, line in enumerate(lines):
        if _QUOTED.match(line):
            return _back_to_attribution(lines, index)
        if _SEPARATOR.match(line):
            # A bare line of underscores or dashes only counts when a header block follows it
            # (Outlook) or when it ends what was typed (mailing list footers).
            if line.strip().startswith(("_", "-")) and not _is_named_separator(line):
                if _header_block_at(lines, _next_text(lines, index + 1)) or seen_text:
                    return index
                continue
            return index
        if _header_block_at(lines, index):
            return index
        if _is_attribution(lines, index):
            return index
        if line.strip():
            seen_text = True
    return len(lines)


def _is_named_separator(line: str) -> bool:
    return any(ch.isalpha() for ch in line)


def _next_text(lines: list[str], start: int) -> int:
    index = start
    while index < len(lines) and index < start + 3 and not lines[index].strip():
        index += 1
    return index


def _header_block_at(lines: list[str], index: int) -> bool:
    """An Outlook-style "From:" line followed closely by Sent/Date/To/Subject lines."""
    if index >= len(lines) or not _HEADER_START.match(lines[index]):
        return False
    following = 0
    for line in lines[index + 1 : index + 6]:
        if _HEADER_NEXT.match(line):
            following += 1
    return following >= 2


def _is_attribution(lines: list[str], index: int) -> bool:
    """An "On … wrote:" line, possibly wrapped, with no blank line inside it."""
    line = lines[index]
    if _ATTRIBUTION_ANYWHERE.match(line):
        return True
    if not _ATTRIBUTION_START.match(line):
        return False
    joined = ""
    for offset in range(_ATTRIBUTION_WRAP):
        if index + offset >= len(lines):
            return False
        candidate = lines[index + offset]
        if offset and (not candidate.strip() or _ATTRIBUTION_START.match(candidate)):
            return False
        if len(candidate) > 300:
            return False
        # A quoted-printable soft break ("w=" / "rote:") is joined back without a space.
        if joined.endswith("="):
            joined = joined[:-1] + candidate.strip()
        else:
            joined = f"{joined} {candidate.strip()}"
        # The verb ends the attribution, so only the tail of the joined lines is searched.
        if _ATTRIBUTION_END.search(joined.rstrip()[-_TAIL:]):
            return True
        # German, Polish, Nordic: the verb comes before the name ("Am … schrieb X <x@y>:").
        if joined.rstrip().endswith((":", "\uff1a")) and _VERB_FIRST.search(joined):
            return True
    return False


def _back_to_attribution(lines: list[str], index: int) -> int:
    """A quote often follows its attribution and blank lines: start the cut at the attribution."""
    start = index
    probe = index - 1
    while probe >= 0 and not lines[probe].strip():
        probe -= 1
    for back in range(probe, max(probe - _ATTRIBUTION_WRAP, -1), -1):
        if _is_attribution(lines, back):
            return back
    # Clients that write the attribution without a verb ("2022年1月1日(金) 9:00 名前 <a@b>:") or
    # in a language not listed: a line ending in a colon, right above the quote, naming an
    # address and a time of day. A command line never counts.
    if probe >= 0 and _is_bare_attribution(lines[probe]):
        return probe
    return start


def _is_bare_attribution(line: str) -> bool:
    text = line.strip()
    return (
        len(text) <= 300
        and not text.startswith("/")
        and text.endswith((":", "\uff1a"))
        and "@" in text
        and _TIME_OF_DAY.search(text) is not None
    )


def _find_signature(lines: list[str]) -> int:
    """Index where the signature begins in the typed part (len(lines) when there is none)."""
    for index, line in enumerate(lines):
        if _SIG_DELIMITER.match(line) or _MOBILE_FOOTER.match(line):
            return index
    # "-Name" sign-off: only on the last non-blank line.
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    if last > 0 and _SIG_DASH_NAME.match(lines[last].strip()):
        return last
    return len(lines)


def _tidy(lines: list[str]) -> str:
    return "\n".join(line.rstrip() for line in lines).strip("\n").rstrip()
