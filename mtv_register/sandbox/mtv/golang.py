"""What Go's standard library answers where Forklift's behaviour depends on it: `strconv.ParseBool`,
`strconv.Quote`, and the errors of `net/url.Parse`, worded as Go words them (Go 1.24/1.25)."""

from __future__ import annotations

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_HEX = "0123456789abcdefABCDEF"
# What `net/url` leaves unescaped in a host (its shouldEscape in encodeHost mode).
_HOST_SAFE = frozenset("-_.~!$&'()*+,;=:[]<>\"")
_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def parse_bool(text: str) -> bool | None:
    """strconv.ParseBool: None where Go returns an error."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def parse_bool_error(text: str) -> str:
    return f"strconv.ParseBool: parsing {quote(text)}: invalid syntax"


def quote(text: str) -> str:
    """strconv.Quote, for the ASCII and printable text URLs and flags hold."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def url_parse_error(raw: str) -> str | None:
    """The error `url.Parse(raw)` returns, as `err.Error()` prints it, or None when it parses."""
    cause = _parse(raw)
    return f"parse {quote(raw)}: {cause}" if cause else None


def _parse(raw: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "net/url: invalid control character in URL"
    without_fragment, _, fragment = raw.partition("#")
    if raw == "*":
        return None
    scheme, rest = "", without_fragment
    for index, char in enumerate(without_fragment):
        if char.isascii() and char.isalpha():
            continue
        if char.isdigit() or char in "+-.":
            if index == 0:
                break
            continue
        if char == ":":
            if index == 0:
                return "missing protocol scheme"
            scheme, rest = without_fragment[:index], without_fragment[index + 1 :]
        break
    rest = rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return _escapes(fragment)  # opaque
        if ":" in rest.partition("/")[0]:
            return "first path segment in URL cannot contain colon"
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, path = rest[2:].partition("/")
        problem = _authority(authority)
        if problem:
            return problem
        rest = slash + path
    return _escapes(rest) or _escapes(fragment)


def _authority(authority: str) -> str | None:
    userinfo, at, host = authority.rpartition("@")
    if at and any(c in "/?#" for c in userinfo):
        return "net/url: invalid userinfo"
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            return "missing ']' in host"
        port = host[close + 1 :]
        if port and not _valid_port(port):
            return f"invalid port {quote(port)} after host"
        return None
    colon = host.rfind(":")
    if colon >= 0 and not _valid_port(host[colon:]):
        return f"invalid port {quote(host[colon:])} after host"
    index = 0
    while index < len(host):
        char = host[index]
        if char == "%":
            escape = host[index : index + 3]
            if len(escape) < 3 or any(c not in _HEX for c in escape[1:]):
                return f"invalid URL escape {quote(escape)}"
            if int(escape[1], 16) < 8 and escape != "%25":
                return f"invalid URL escape {quote(escape)}"
            index += 3
            continue
        if ord(char) < 0x80 and not char.isalnum() and char not in _HOST_SAFE:
            return f"invalid character {quote(char)} in host name"
        index += 1
    return None


def _valid_port(port: str) -> bool:
    return port.startswith(":") and all(c.isdigit() for c in port[1:])


def _escapes(text: str) -> str | None:
    index = 0
    while index < len(text):
        if text[index] == "%":
            escape = text[index : index + 3]
            if len(escape) < 3 or any(c not in _HEX for c in escape[1:]):
                return f"invalid URL escape {quote(escape)}"
            index += 3
        else:
            index += 1
    return None
