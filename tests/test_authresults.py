"""Reading RFC 8601 Authentication-Results: only our own server's topmost verdict counts."""

from __future__ import annotations

from intake.authresults import is_aligned, judge_sender, parse_auth_results

TRUSTED = ["mx.ecareermentor.in"]
FROM = "asha.moderator@ecareermentor.in"


def test_parse_with_comments_version_and_quoted_values() -> None:
    parsed = parse_auth_results(
        "mx.ecareermentor.in 1; (checked by us) dkim=pass (2048-bit key; secure) "
        'header.d=ecareermentor.in header.b="AbC;d"; spf=pass smtp.mailfrom=ecareermentor.in; '
        "dmarc=pass (p=REJECT) header.from=ecareermentor.in"
    )
    assert parsed is not None
    assert parsed.authserv_id == "mx.ecareermentor.in"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert parsed.results[0].prop("header.d") == "ecareermentor.in"


def test_dmarc_pass_and_aligned_dkim_pass_are_enough() -> None:
    dmarc = [
        ("Authentication-Results", "mx.ecareermentor.in; dmarc=pass header.from=ecareermentor.in")
    ]
    dkim = [
        ("Authentication-Results", "mx.ecareermentor.in; dkim=pass header.i=@mail.ecareermentor.in")
    ]
    assert judge_sender(dmarc, TRUSTED, FROM).authenticated
    assert not judge_sender(dkim, TRUSTED, FROM).authenticated  # a subdomain signer is not a parent
    parent = [
        ("Authentication-Results", "mx.ecareermentor.in; dkim=pass header.d=ecareermentor.in")
    ]
    assert judge_sender(parent, TRUSTED, "a@team.ecareermentor.in").authenticated


def test_spf_alone_and_mismatched_dmarc_are_not_enough() -> None:
    spf = [("Authentication-Results", "mx.ecareermentor.in; spf=pass smtp.mailfrom=x")]
    other = [("Authentication-Results", "mx.ecareermentor.in; dmarc=pass header.from=evil.example")]
    assert not judge_sender(spf, TRUSTED, FROM).authenticated
    assert not judge_sender(other, TRUSTED, FROM).authenticated


def test_only_the_topmost_trusted_block_counts() -> None:
    headers = [
        ("Authentication-Results", "mx.ecareermentor.in; dmarc=fail header.from=ecareermentor.in"),
        ("Received", "from attacker.example by mx.ecareermentor.in"),
        ("Authentication-Results", "mx.ecareermentor.in; dmarc=pass header.from=ecareermentor.in"),
    ]
    verdict = judge_sender(headers, TRUSTED, FROM)
    assert not verdict.authenticated
    assert "dmarc=fail" in verdict.reason


def test_two_milters_of_our_server_both_count() -> None:
    headers = [
        ("Authentication-Results", "mx.ecareermentor.in; dmarc=pass header.from=ecareermentor.in"),
        ("Authentication-Results", "mx.ecareermentor.in; dkim=fail header.d=ecareermentor.in"),
        ("Received", "from mail.ecareermentor.in by mx.ecareermentor.in"),
    ]
    assert judge_sender(headers, TRUSTED, FROM).authenticated


def test_untrusted_servers_are_ignored_and_nothing_trusted_fails() -> None:
    headers = [("Authentication-Results", "gmail.com; dmarc=pass header.from=ecareermentor.in")]
    assert not judge_sender(headers, TRUSTED, FROM).authenticated
    assert not judge_sender(headers, [], FROM).authenticated


def test_alignment() -> None:
    assert is_aligned("ecareermentor.in", "ecareermentor.in")
    assert is_aligned("ecareermentor.in", "mail.ecareermentor.in")
    assert not is_aligned("in", "ecareermentor.in")
    assert not is_aligned("attacker.example", "ecareermentor.in")
