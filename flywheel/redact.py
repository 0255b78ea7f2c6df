"""Secrets out of text: the one function every printer, message and stored vendor text uses.

`redact` masks, in any text:

- credentials in URLs: the userinfo (``https://user:pass@host`` -> ``https://***@host``) and
  the values of query parameters that carry one (``?token=…``, ``api_key=``, ``key=``,
  ``secret=``, ``password=``, ``signature=`` …);
- ``Authorization`` (and ``Proxy-Authorization``, ``X-Api-Key``, the webhook secret header)
  values, and the token after ``Bearer``, ``Token`` or ``Basic`` wherever a vendor echoes one;
- JSON Web Tokens (``eyJ….….…``) and ``"password": …``-style fields;
- the literal values of the secret environment variables in `SECRET_ENV`, wherever they
  appear (read when `redact` runs, so a key set after import is masked too).

It runs on every line `flywheel.console` prints, in every `FlywheelError` message, and on
vendor text before it is stored; a caller that prints or stores vendor text without it is
the bug.

>>> redact("GET https://ann:hunter2@ls.example/api?token=abc&page=2 failed")
'GET https://***@ls.example/api?token=***&page=2 failed'
>>> redact('{"detail": "bad header Authorization: Token 9f3c0e1d2b"}')
'{"detail": "bad header Authorization: Token ***"}'
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MASK = "***"

# environment variables whose values are secrets: masked wherever they appear
SECRET_ENV = (
    "LABEL_STUDIO_API_KEY",
    "FLYWHEEL_WEBHOOK_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "FLYWHEEL_SERVE_TOKEN",
)
# shorter values are not masked literally: "a" would mask every "a" (the patterns still apply)
MIN_LITERAL = 4

# fields (JSON, YAML, `name=value`) whose value is a credential
_SECRET_FIELDS = (
    r"(?:api[_-]?key|apikey|access[_-]?key|secret[_-]?(?:access[_-]?)?key|secret|"
    r"client[_-]?secret|password|passwd|pwd|token|access[_-]?token|refresh[_-]?token|"
    r"id[_-]?token|session[_-]?token)"
)
# query parameters: the fields, and the short names URLs use (`?key=`, `&sig=`)
_SECRET_PARAMS = (
    rf"(?:{_SECRET_FIELDS}|key|auth|sig|signature|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token)"
)
# userinfo: up to the last "@" before the host (an unescaped "@" in a password happens);
# never across a quote, so JSON around a URL stays JSON
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s?#@\"'<>\\]*(?:@[^/\s?#@\"'<>\\]*)*@")
_PARAM = re.compile(rf"(?i)((?:[?&;]{_SECRET_PARAMS}|(?:^|(?<=\s)){_SECRET_FIELDS})=)[^&#\s\"'<>]+")
_FIELD = re.compile(
    rf"(?i)([\"']{_SECRET_FIELDS}[\"']\s*:\s*)(?!null\b)(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,}}\]]+)"
)
# a header: its name, a separator, an optional scheme, then the value
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|x-auth-token|x-flywheel-webhook-secret|cookie)"
    r"([\"']?\s*[:=]\s*[\"']?)(?:(bearer|token|basic|jwt|digest)\s+)?[^\s\"',;}\]]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|jwt)\s+[A-Za-z0-9._~+/=-]{8,}")
# `Token <value>`: a word in English too, so the value must look like a key (has a digit)
_TOKEN = re.compile(r"(?i)\b(token)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{8,}")
_BASIC = re.compile(r"(?i)\b(basic)\s+([A-Za-z0-9+/]{4,}={0,2})")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


def _basic(match: re.Match) -> str:
    """`Basic <base64 of user:password>` is masked; `Basic authentication` is left alone."""
    try:
        decoded = base64.b64decode(match.group(2), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return match.group(0)
    return f"{match.group(1)} {MASK}" if ":" in decoded else match.group(0)


def _header(match: re.Match) -> str:
    scheme = f"{match.group(3)} " if match.group(3) else ""
    return f"{match.group(1)}{match.group(2)}{scheme}{MASK}"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the secret environment variables that are set, longest first."""
    env = os.environ if environ is None else environ
    values = {value.strip() for name in SECRET_ENV if (value := env.get(name))}
    return sorted((v for v in values if len(v) >= MIN_LITERAL), key=len, reverse=True)


def _literals(environ: Mapping[str, str] | None, also: Iterable[str | None]) -> list[str]:
    extra = {v for v in also if v and len(v) >= MIN_LITERAL}
    return sorted(extra.union(secret_values(environ)), key=len, reverse=True)


def redact(
    text: object, environ: Mapping[str, str] | None = None, also: Iterable[str | None] = ()
) -> str:
    """`text` (made a str) with every credential replaced by ``***``; see the module docstring.
    `also`: more secret values to mask literally (a key a caller holds, not from the env).

    >>> redact("Label Studio at http://127.0.0.1:8080 refused the credentials (401)")
    'Label Studio at http://127.0.0.1:8080 refused the credentials (401)'
    >>> redact("key s3cr3t-value was refused", also=["s3cr3t-value"])
    'key *** was refused'
    """
    return _redact(text if isinstance(text, str) else str(text), _literals(environ, also))


def _redact(text: str, literals: list[str]) -> str:
    for value in literals:
        if value in text:
            text = text.replace(value, MASK)
    if not _might_hold_a_secret(text):
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    text = _HEADER.sub(_header, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _TOKEN.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _BASIC.sub(_basic, text)
    text = _JWT.sub(MASK, text)
    text = _FIELD.sub(lambda m: f"{m.group(1)}{_quoted_mask(m.group(2))}", text)
    return _PARAM.sub(lambda m: f"{m.group(1)}{MASK}", text)


def _quoted_mask(value: str) -> str:
    # a bare value (a number, true) becomes a quoted mask: JSON stays JSON
    return f"{value[0]}{MASK}{value[0]}" if value[:1] in ("'", '"') else f'"{MASK}"'


# every pattern needs one of these; most text has none, and skips the regular expressions
_HINTS = ("://", "=", "bearer", "token", "basic", "jwt", "eyj", "auth", "key", "secret", "passw",
          "pwd", "cookie")  # fmt: skip


def _might_hold_a_secret(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in _HINTS)


def redactor(
    environ: Mapping[str, str] | None = None, also: Iterable[str | None] = ()
) -> Callable[[Any], Any]:
    """`redact_data` for many values (rows about to be stored): the secret values are read
    once, and each distinct string is redacted once.

    >>> scrub = redactor()
    >>> [scrub(v) for v in ("ok", {"u": "https://u:p@h"}, 3)]
    ['ok', {'u': 'https://***@h'}, 3]
    """
    literals = _literals(environ, also)
    memo: dict[str, str] = {}

    def apply(value: Any) -> Any:
        if isinstance(value, str):
            if value not in memo:
                memo[value] = _redact(value, literals)
            return memo[value]
        if isinstance(value, Mapping):
            return {apply(k): apply(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(apply(v) for v in value)
        return value

    return apply


def redact_data(
    value: Any, environ: Mapping[str, str] | None = None, also: Iterable[str | None] = ()
) -> Any:
    """`value` with `redact` applied to every string in it (dicts, lists, tuples; keys too).

    >>> redact_data({"url": "https://u:p@h/x", "n": [1, "token=abc"]})
    {'url': 'https://***@h/x', 'n': [1, 'token=***']}
    """
    return redactor(environ, also)(value)


__all__ = ["MASK", "SECRET_ENV", "redact", "redact_data", "redactor", "secret_values"]
