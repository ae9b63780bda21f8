"""Grounding a quote in the decision's own text: a fixed ladder of normalisations.

A model often copies a passage with its typography changed: a line break inside the passage
becomes a space, a gershayim (U+05F4) a straight ``"``, a maqaf (U+05BE) a hyphen, the points
(niqqud) are dropped, a no-break space becomes a plain one, two passages are joined by an
ellipsis. Exact matching threw each such halacha away, and the quota that paid for it. Here a
quote is accepted when it matches the decision after the first of these tiers that makes it
match, each tier adding its normalisation to the ones before it:

1. ``exact``: the quote occurs as it is;
2. ``nfc``: both in Unicode NFC (composed characters, canonical order of the marks);
3. ``whitespace``: every run of whitespace (line breaks, no-break and other spaces) is one space;
4. ``quotes``: quotation marks, gershayim and geresh are ``"`` and ``'``;
5. ``dashes``: dashes, the minus sign and the maqaf are ``-``;
6. ``points``: Hebrew points and cantillation marks (and other combining marks) are dropped;
7. ``invisible``: zero-width and bidirectional marks and the soft hyphen are dropped;
8. ``ellipsis``: a quote that joins passages with ``…`` or ``...`` is accepted when every
   passage is grounded (by tiers 1-7), in the order given, each within ``ELLIPSIS_GAP``
   characters of the one before, and at least ``MIN_FRAGMENT`` characters long.

What is stored is never the model's copy but the decision's own text: each passage's exact slice,
with its character offsets (``Grounded.spans``), joined by `` … `` when there are several. A
paraphrase, passages out of order, or a quote from another decision match no tier and are
rejected. Each tier costs one pass over the decision (linear in its length; the normalised texts
are kept per decision, so its other quotes cost one ``str.find`` each).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

ELLIPSIS_GAP = 600  # characters of the decision between two passages joined by an ellipsis
MIN_FRAGMENT = 12  # characters a passage needs (normalised) to count: not "the" or "כי"
JOINER = " … "  # between the stored slices of a quote of several passages


class Tier(IntEnum):
    EXACT = 1
    NFC = 2
    WHITESPACE = 3
    QUOTES = 4
    DASHES = 5
    POINTS = 6
    INVISIBLE = 7
    ELLIPSIS = 8

    @property
    def label(self) -> str:
        return self.name.lower()


_QUOTES = {c: '"' for c in "\u05f4\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb\uff02"}
_QUOTES.update({c: "'" for c in "\u05f3\u2018\u2019\u201a\u201b\u2032\u0060\u00b4"})
_DASHES = dict.fromkeys("\u05be\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-")
_INVISIBLE = frozenset(
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068"
    "\u2069\ufeff\u00ad\u061c"
)
_ELLIPSIS = re.compile(r"\s*(?:…|\.\.\.)\s*")


# Combining marks (Latin, Cyrillic, Hebrew points and cantillation, Arabic, the supplements): a
# character followed by them is one cluster, normalised (NFC) as a whole.
_MARKS = ("\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
          "\u0610-\u061a\u064b-\u065f\u0670\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff"
          "\ufe20-\ufe2f")


def _is_point(char: str) -> bool:
    """A Hebrew point or cantillation mark, or any other combining mark (not the maqaf, paseq
    or sof pasuq, which are punctuation)."""
    return unicodedata.combining(char) != 0 or "\u0591" <= char <= "\u05af"


def _map(char: str, tier: Tier) -> str:
    """What one character of an NFC cluster becomes at ``tier`` ("" when it is dropped)."""
    if tier >= Tier.INVISIBLE and char in _INVISIBLE:
        return ""
    if tier >= Tier.POINTS and _is_point(char):
        return ""
    if tier >= Tier.DASHES and char in _DASHES:
        return _DASHES[char]
    if tier >= Tier.QUOTES and char in _QUOTES:
        return _QUOTES[char]
    if tier >= Tier.WHITESPACE and char.isspace():
        return " "
    return char


def _special(tier: Tier) -> re.Pattern[str]:
    """What a tier may change: everything else is copied as it is, in bulk."""
    parts = [f".[{_MARKS}]+|[{_MARKS}]+"]
    if tier >= Tier.WHITESPACE:
        parts.append(r"\s\s+|[^\S ]")  # a lone plain space is already what it becomes
    chars = ""
    if tier >= Tier.QUOTES:
        chars += "".join(_QUOTES)
    if tier >= Tier.DASHES:
        chars += "".join(_DASHES)
    if tier >= Tier.INVISIBLE:
        chars += "".join(_INVISIBLE)
    if chars:
        parts.append(f"[{re.escape(chars)}]")
    return re.compile("|".join(parts), re.S)


_SPECIAL = {tier: _special(tier) for tier in Tier if tier >= Tier.NFC}


@dataclass(frozen=True)
class _Normalised:
    """A text at one tier, and where its characters came from in the original, as pieces:
    ``(normalised start, original start, original end, plain)``. A plain piece is a run copied
    as it is (character k of it is original character start + k); any other piece is one
    character made from the original characters start..end (a cluster, a run of spaces)."""

    text: str
    pieces: list[tuple[int, int, int, bool]]
    piece_starts: list[int]  # each piece's normalised start, for the binary search
    piece_ends: list[int]  # each piece's original end, for the binary search

    def _piece(self, index: int) -> tuple[int, int, int, bool]:
        return self.pieces[bisect.bisect_right(self.piece_starts, index) - 1]

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the normalised characters ``start``..``end``."""
        first_at, first_from, first_to, first_plain = self._piece(start)
        last_at, last_from, last_to, last_plain = self._piece(end - 1)
        begin = first_from + (start - first_at) if first_plain else first_from
        finish = last_from + (end - last_at) if last_plain else last_to
        return begin, finish

    def index_at(self, original: int) -> int:
        """The first normalised character that comes from at or after ``original``."""
        first = bisect.bisect_right(self.piece_ends, original)  # pieces ending after it
        for at, begin, _finish, plain in self.pieces[first:first + 2]:
            if plain:
                return at + max(0, original - begin)
            if begin >= original:
                return at
        return len(self.text)  # (a piece straddling ``original`` is followed by one that is not)


class _Builder:
    def __init__(self, tier: Tier) -> None:
        self.out: list[str] = []
        self.pieces: list[tuple[int, int, int, bool]] = []
        self.length = 0
        self.last = ""
        self.collapse = tier >= Tier.WHITESPACE

    def plain(self, text: str, a: int, b: int) -> None:
        """Characters ``a``..``b`` of ``text`` as they are (a space that follows the space just
        written, across a mark dropped between them, joins it)."""
        if a < b and self.collapse and self.last == " " and text[a] == " ":
            self._widen_last_space(a + 1)
            a += 1
        if a < b:
            self.out.append(text[a:b])
            self.pieces.append((self.length, a, b, True))
            self.length += b - a
            self.last = text[b - 1]

    def cluster(self, cluster: str, a: int, b: int, tier: Tier) -> None:
        """A cluster of characters ``a``..``b``, normalised and mapped at ``tier``."""
        if tier >= Tier.NFC and not cluster.isascii():
            cluster = unicodedata.normalize("NFC", cluster)
        for char in cluster:
            mapped = _map(char, tier)
            if not mapped:
                continue
            if mapped == " " and self.last == " " and tier >= Tier.WHITESPACE:
                self._widen_last_space(b)  # one space for the whole run
                continue
            self.out.append(mapped)
            self.pieces.append((self.length, a, b, False))
            self.length += 1
            self.last = mapped

    def _widen_last_space(self, end: int) -> None:
        """The space just written stands for the original characters up to ``end`` too."""
        at, begin, finish, plain = self.pieces.pop()
        if plain:  # the space ends a plain run: split it off as a piece of its own
            if finish - begin > 1:
                self.pieces.append((at, begin, finish - 1, True))
            at, begin = at + (finish - 1 - begin), finish - 1
        self.pieces.append((at, begin, end, False))


def _normalise(text: str, tier: Tier) -> _Normalised:
    built = _Builder(tier)
    if tier == Tier.EXACT:
        built.plain(text, 0, len(text))
        return _finish(built)
    done = 0
    for match in _SPECIAL[tier].finditer(text):
        a, b = match.span()
        _copy(built, text, done, a, tier)
        if match.group().isspace() and tier >= Tier.WHITESPACE:
            built.cluster(" ", a, b, tier)
        else:
            built.cluster(match.group(), a, b, tier)
        done = b
    _copy(built, text, done, len(text), tier)
    return _finish(built)


def _finish(built: _Builder) -> _Normalised:
    return _Normalised("".join(built.out), built.pieces, [piece[0] for piece in built.pieces],
                       [piece[2] for piece in built.pieces])


def _copy(built: _Builder, text: str, a: int, b: int, tier: Tier) -> None:
    """The characters between two special ones: as they are, unless NFC changes one of them
    (a singleton such as the Angstrom sign), which then goes one by one."""
    if unicodedata.is_normalized("NFC", text[a:b]):
        built.plain(text, a, b)
        return
    for i in range(a, b):
        built.cluster(text[i], i, i + 1, tier)


def _quote_at(quote: str, tier: Tier) -> str:
    normalised = _normalise(quote, tier).text
    return normalised.strip() if tier >= Tier.WHITESPACE else normalised


@dataclass(frozen=True)
class Grounded:
    """A quote found in the decision: the tier that found it, the decision's own slices and
    their offsets ``[(start, end), ...]`` (one per passage)."""

    tier: Tier
    spans: tuple[tuple[int, int], ...]
    text: str  # the decision's own text of the spans, joined by JOINER


class Decision:
    """One decision's text, with its normalised forms made once for all of its quotes."""

    def __init__(self, text: str):
        self.text = text
        self._tiers: dict[Tier, _Normalised] = {}

    def _at(self, tier: Tier) -> _Normalised:
        if tier not in self._tiers:
            self._tiers[tier] = _normalise(self.text, tier)
        return self._tiers[tier]

    def ground(self, quote: str) -> Grounded | None:
        """The quote grounded by the first tier that finds it, or None (rejected)."""
        quote = quote.strip()
        if not quote:
            return None
        found = self._find(quote)
        if found is not None:
            tier, start, end = found
            return Grounded(tier, ((start, end),), self.text[start:end])
        return self._ground_passages(quote)

    def _find(self, quote: str) -> tuple[Tier, int, int] | None:
        """The first tier (1-7) at which ``quote`` occurs, and its original span."""
        exact = self.text.find(quote)
        if exact >= 0:
            return Tier.EXACT, exact, exact + len(quote)
        for tier in (Tier.NFC, Tier.WHITESPACE, Tier.QUOTES, Tier.DASHES, Tier.POINTS,
                     Tier.INVISIBLE):
            needle = _quote_at(quote, tier)
            if not needle:
                return None
            normalised = self._at(tier)
            at = normalised.text.find(needle)
            if at >= 0:
                start, end = normalised.original(at, at + len(needle))
                return tier, start, end
        return None

    def _ground_passages(self, quote: str) -> Grounded | None:
        """A quote of passages joined by ellipses: each grounded, in order, close together.
        Every occurrence of the first passage is tried as the start, and each later passage is
        the first occurrence after the one before within ``ELLIPSIS_GAP``, so a copy of a
        passage elsewhere in the decision never hides the one beside its neighbour."""
        if not _ELLIPSIS.search(quote):
            return None
        needles = [_quote_at(p, Tier.INVISIBLE) for p in _ELLIPSIS.split(quote) if p.strip()]
        if not needles or any(len(needle) < MIN_FRAGMENT for needle in needles):
            return None
        for first in self._occurrences(needles[0], after=0):
            spans = [first]
            for needle in needles[1:]:
                near = next(
                    (span for span in self._occurrences(needle, after=spans[-1][1])
                     if span[0] - spans[-1][1] <= ELLIPSIS_GAP), None)
                if near is None:
                    break
                spans.append(near)
            else:
                text = JOINER.join(self.text[start:end] for start, end in spans)
                return Grounded(Tier.ELLIPSIS, tuple(spans), text)
        return None

    def _occurrences(self, needle: str, *, after: int) -> Iterator[tuple[int, int]]:
        """The original spans of ``needle`` (normalised by every tier) at or after ``after``,
        in order of position."""
        normalised = self._at(Tier.INVISIBLE)
        at = normalised.text.find(needle, normalised.index_at(after))
        while at >= 0:
            yield normalised.original(at, at + len(needle))
            at = normalised.text.find(needle, at + 1)


def ground(quote: str, text: str) -> Grounded | None:
    """``quote`` grounded in ``text`` (see the module docstring), or None."""
    return Decision(text).ground(quote)
