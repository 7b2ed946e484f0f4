"""Who made a change: the one definition of an anonymous editor, shared by the daily figures and feeds.

A logged-out editor is named by their IP address; since 2025 by a temporary account `~YYYY-…`. The
pattern is a regular expression without look-arounds, so Polars, Python's `re` and Spark (Java) read it
alike.
"""

from __future__ import annotations

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_HEXTET = r"[0-9A-Fa-f]{1,4}"


def _ipv6_pattern() -> str:
    """Every spelling Python's `ipaddress.IPv6Address` accepts, as one regex without look-arounds.

    Eight hextets, or six and a dotted IPv4 tail; `::` stands for one or more zero hextets and may
    appear once; an optional `%zone` follows.
    """
    spellings = []
    for tail, groups in (("", 8), (_IPV4, 6)):
        full = ":".join([_HEXTET] * groups)
        spellings.append(f"{full}:{tail}" if tail else full)
        for left in range(groups):
            for right in range(groups - left):
                head = ":".join([_HEXTET] * left)
                body = ":".join([_HEXTET] * right)
                if tail:
                    body = f"{body}:{tail}" if body else tail
                spellings.append(f"{head}::{body}")
    return "(?:" + "|".join(spellings) + r")(?:%[^%]+)?"


ANONYMOUS_USER_PATTERN = rf"^(?:{_IPV4}|{_ipv6_pattern()}|~[0-9]{{4}}-.*)$"
