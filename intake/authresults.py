"""Reading RFC 8601 Authentication-Results to decide whether a From address was authenticated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodResult:
    """One `method=result` clause with its properties, e.g. dkim=pass header.d=example.com."""

    method: str
    result: str
    properties: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str:
        for key, value in self.properties:
            if key == name:
                return value
        return ""


@dataclass(frozen=True)
class AuthResults:
    """One Authentication-Results header: who added it and what it found."""

    authserv_id: str
    results: tuple[MethodResult, ...]


@dataclass(frozen=True)
class Verdict:
    """Whether the From domain passed, and the words for the audit log and the transcript."""

    authenticated: bool
    reason: str


def parse_auth_results(value: str) -> AuthResults | None:
    """One header value; None when it has no authserv-id at all."""
    clauses = _split_clauses(_strip_comments(value))
    if not clauses:
        return None
    head = clauses[0].split()
    if not head:
        return None
    authserv_id = head[0].lower()
    results: list[MethodResult] = []
    for clause in clauses[1:]:
        words = clause.split()
        if not words or "=" not in words[0]:
            continue  # "none" (RFC 8601 §2.2: no authentication was done)
        method, _, result = words[0].partition("=")
        props = []
        for word in words[1:]:
            key, eq, prop_value = word.partition("=")
            if eq and "." in key:
                props.append((key.lower(), prop_value.strip('"').lower()))
        results.append(MethodResult(method.split("/")[0].lower(), result.lower(), tuple(props)))
    return AuthResults(authserv_id, tuple(results))


def trusted_results(
    headers: Sequence[tuple[str, str]], trusted_ids: Sequence[str]
) -> list[AuthResults]:
    """The topmost Authentication-Results added by a trusted server, ignoring any below them.

    RFC 8601 §5: a receiving server removes or ignores look-alike headers from outside, and a
    reader trusts only headers added by its own border. Ours are the first ones with a trusted
    authserv-id; anything after the next Received header was already in the message when our
    border got it, so a sender cannot vouch for itself by writing the header into its mail.
    """
    trusted = {item.lower() for item in trusted_ids}
    found: list[AuthResults] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "received" and found:
            break
        if lowered != "authentication-results":
            continue
        parsed = parse_auth_results(value)
        if parsed is None or parsed.authserv_id not in trusted:
            if found:
                break
            continue
        if found and parsed.authserv_id != found[0].authserv_id:
            break
        found.append(parsed)
    return found


def judge_sender(
    headers: Sequence[tuple[str, str]], trusted_ids: Sequence[str], from_address: str
) -> Verdict:
    """DMARC pass, or a DKIM pass whose signing domain is aligned with the From domain."""
    if not trusted_ids:
        return Verdict(False, "no trusted authentication servers are configured")
    results = trusted_results(headers, trusted_ids)
    if not results:
        return Verdict(False, "no Authentication-Results from a trusted server")
    from_domain = from_address.rpartition("@")[2].lower()
    seen: list[str] = []
    for header in results:
        for item in header.results:
            seen.append(f"{item.method}={item.result}")
            if item.method == "dmarc" and item.result == "pass":
                policy_domain = item.prop("header.from")
                if not policy_domain or policy_domain == from_domain:
                    return Verdict(True, f"dmarc=pass from {header.authserv_id}")
            if item.method == "dkim" and item.result == "pass":
                signer = item.prop("header.d") or item.prop("header.i").rpartition("@")[2]
                if signer and is_aligned(signer, from_domain):
                    return Verdict(True, f"dkim=pass header.d={signer} from {header.authserv_id}")
    shown = ", ".join(seen) if seen else "no results"
    return Verdict(False, f"neither dmarc=pass nor aligned dkim=pass ({shown})")


def is_aligned(signer: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1.1), approximated without the public suffix list:
    the signing domain is the From domain or a parent of it with at least two labels."""
    signer = signer.lower().rstrip(".")
    from_domain = from_domain.lower().rstrip(".")
    if signer == from_domain:
        return True
    return signer.count(".") >= 1 and from_domain.endswith("." + signer)


def _strip_comments(value: str) -> str:
    """RFC 5322 comments in parentheses (nested, with quoted-pairs) are dropped."""
    out: list[str] = []
    depth = 0
    quoted = False
    escape = False
    for char in value:
        if escape:
            escape = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escape = True
            if depth == 0:
                out.append(char)
            continue
        if char == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            continue
        elif not quoted and char == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    return "".join(out)


def _split_clauses(value: str) -> list[str]:
    clauses: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value.replace("\r", " ").replace("\n", " "):
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            clauses.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    clauses.append("".join(current).strip())
    return [clause for clause in clauses if clause]
