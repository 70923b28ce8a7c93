"""SuperOffice's multi-language texts: ``US:"Customer group";NO:"Kundegruppe"`` (pure, no Flask).

Connectors may give a UserExplanation, a field's DisplayName / DisplayDescription and list item names in this form
(superoffice-erp-spec.md §3: ``US:"English"NO:"Norsk"`` and ``NO:"…";US:"…"``). The portal stores them as given
and picks the reader's language when it shows them. What SuperOffice does not document is decided in
docs/decisions.md ("Multi-language texts"); in short:

* a segment is a culture code of two capital letters A–Z, a colon and a double-quoted text, nothing in between
  (``US:"…"``); a ``"`` inside the text is written twice (``""``), everything else (``;``, ``\\``, newlines, another
  ``XX:"``) is literal inside the quotes;
* segments follow each other directly, or separated by ``;``, with optional white space around the ``;``; white
  space before the first and after the last segment and one trailing ``;`` are allowed;
* a text is in the form only when *all* of it is, and at least one code is a known culture code (``KNOWN``), so
  ``ID:"42"`` or ``Name: "x"`` stay ordinary texts;
* a code given twice: the first one counts; an empty text counts as missing (the next fallback is used).

:func:`pick` falls back from the reader's language to US, then to the first language given (and shows a text that
is not in the form as it is). :func:`localize` also picks inside a longer message that embeds such a text, e.g. a
service's "Test failed: <UserExplanation>" — only runs of two or more segments, standing apart from the words around
them, so an ordinary sentence is never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

DEFAULT = "US"

# The culture codes the portal offers its users (Account page), with their names in their own language.
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("US", "English (US)"),
    ("GB", "English (UK)"),
    ("NO", "Norsk"),
    ("SE", "Svenska"),
    ("DK", "Dansk"),
    ("DE", "Deutsch"),
    ("NL", "Nederlands"),
    ("FR", "Français"),
)
SUPPORTED = frozenset(code for code, _ in LANGUAGES)

# Codes that make a text count as multi-language (at least one must be present): SuperOffice's culture codes
# plus the language codes some connectors write instead (GE is SuperOffice's old code for German).
KNOWN = SUPPORTED | {"EN", "NB", "NN", "SV", "DA", "GE", "FI", "ES", "IT", "PL", "PT", "CS", "CZ", "RU", "JA", "ZH"}

# Other codes that stand for the same language, tried right after the language itself.
ALIASES: dict[str, tuple[str, ...]] = {
    "US": ("EN",),
    "GB": ("EN",),
    "NO": ("NB", "NN"),
    "SE": ("SV",),
    "DK": ("DA",),
    "DE": ("GE",),
}

# Accept-Language primary subtags (lower case) -> culture code. "se" is Northern Sami, not Swedish.
_BROWSER: dict[str, str] = {"en": "US", "nb": "NO", "nn": "NO", "no": "NO", "sv": "SE", "da": "DK", "de": "DE",
                            "nl": "NL", "fr": "FR"}
_BRITISH_REGIONS = frozenset({"gb", "uk"})

_CODE = re.compile(r'[A-Z]{2}:"')
_SPACE = " \t\r\n"


def _segment(text: str, pos: int) -> tuple[str, str, int] | None:
    """(code, text, position after the closing quote) of the segment starting at ``pos``, or None."""
    if _CODE.match(text, pos) is None:
        return None
    code, i, n = text[pos:pos + 2], pos + 4, len(text)
    parts: list[str] = []
    while True:
        j = text.find('"', i)
        if j < 0:
            return None
        parts.append(text[i:j])
        if j + 1 < n and text[j + 1] == '"':
            parts.append('"')
            i = j + 2
            continue
        return code, "".join(parts), j + 1


def _skip_space(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _SPACE:
        pos += 1
    return pos


def _run(text: str, pos: int) -> tuple[list[tuple[str, str]], int]:
    """The segments that follow each other from ``pos`` (as many as parse) and the position after the last one."""
    segments: list[tuple[str, str]] = []
    end = pos
    while True:
        found = _segment(text, pos)
        if found is None:
            return segments, end
        code, value, end = found
        segments.append((code, value))
        pos = _skip_space(text, end)
        if pos < len(text) and text[pos] == ";":
            pos = _skip_space(text, pos + 1)


def _as_dict(segments: Iterable[tuple[str, str]]) -> dict[str, str] | None:
    texts: dict[str, str] = {}
    for code, value in segments:
        texts.setdefault(code, value)
    return texts if texts and not KNOWN.isdisjoint(texts) else None


def parse(text) -> dict[str, str] | None:
    """{culture code: text} in the order given, or None when ``text`` is not (all of it) a multi-language text."""
    if not isinstance(text, str) or ':"' not in text:
        return None
    segments, end = _run(text, _skip_space(text, 0))
    if not segments:
        return None
    rest = _skip_space(text, end)
    if rest < len(text) and text[rest] == ";":
        rest = _skip_space(text, rest + 1)
    if rest != len(text):
        return None
    return _as_dict(segments)


def normalize(language) -> str:
    """A culture code (``no`` -> ``NO``); anything unusable -> US."""
    if isinstance(language, str):
        code = language.strip().upper()
        if len(code) == 2 and code.isascii() and code.isalpha():
            return code
    return DEFAULT


def choose(texts: Mapping[str, str], language) -> str:
    """The text for ``language`` from parsed texts: the language (or an alias), US, then the first one given;
    empty texts count as missing."""
    code = normalize(language)
    for candidate in (code, *ALIASES.get(code, ()), DEFAULT, *ALIASES[DEFAULT]):
        if texts.get(candidate):
            return texts[candidate]
    return next((value for value in texts.values() if value), "")


def pick(text, language) -> str:
    """``text`` in ``language`` when it is a multi-language text (see :func:`choose`), else ``text`` as it is."""
    texts = parse(text)
    if texts is None:
        return text
    return choose(texts, language)


def _word(char: str) -> bool:
    return char.isalnum() or char == "_"


def localize(text, language):
    """:func:`pick` for a whole text; for a longer message, every embedded run of two or more segments (not glued
    to a word or a quote on either side) is replaced by its pick. Anything else comes back as it is."""
    if not isinstance(text, str) or ':"' not in text:
        return text
    texts = parse(text)
    if texts is not None:
        return choose(texts, language)
    out: list[str] = []
    done = seen = 0  # copied up to `done`; runs read up to `seen` (a code inside a run's quotes is its text)
    for match in _CODE.finditer(text):
        start = match.start()
        if start < seen or (start > 0 and (_word(text[start - 1]) or text[start - 1] == '"')):
            continue
        segments, end = _run(text, start)
        seen = max(seen, end)
        if len(segments) < 2 or (end < len(text) and (_word(text[end]) or text[end] == '"')):
            continue
        found = _as_dict(segments)
        if found is None:
            continue
        out += [text[done:start], choose(found, language)]
        done = end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def build(texts: Mapping[str, str]) -> str:
    """The multi-language text of {code: text} (``US:"…";NO:"…"``, quotes doubled) — what :func:`parse` reads."""
    return ";".join(f'{code}:"{value.replace(chr(34), chr(34) * 2)}"' for code, value in texts.items())


def from_browser(tags: Iterable[str]) -> str | None:
    """The first supported culture of Accept-Language tags (best first): ``nb-NO``/``no``/``nn`` -> NO,
    ``en-GB`` -> GB, other ``en`` -> US, ``sv`` -> SE, ``da`` -> DK …; None when none is supported."""
    for tag in tags:
        if not isinstance(tag, str):
            continue
        parts = tag.strip().lower().replace("_", "-").split("-")
        culture = _BROWSER.get(parts[0])
        if culture is None:
            continue
        if culture == "US" and len(parts) > 1 and parts[1] in _BRITISH_REGIONS:
            return "GB"
        return culture
    return None


__all__ = ["ALIASES", "DEFAULT", "KNOWN", "LANGUAGES", "SUPPORTED", "build", "choose", "from_browser", "localize",
           "normalize", "parse", "pick"]
