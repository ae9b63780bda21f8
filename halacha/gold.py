"""The gold set (issue 31): decisions written for the set, each with the halachot it holds, and
the score of predicted halachot against them by quote-span overlap.

The set is data, one JSON file per decision in halacha/gold/ (docs/quality.md, "The gold set",
says how it was made and what a file holds). ``load`` reads and validates every file and refuses
a broken one with the file and the field named; ``score`` matches one decision's predicted
halachot to its gold ones and counts them; ``reply_for`` writes a reply that the halacha parser
(halacha/extractors/protocol.py) accepts, for tests and benches. Plain data and functions: this
module never calls a model and never touches the database.

The scoring rule. A predicted halacha is the spans of its quote in the decision (several for a
quote joined by an ellipsis); a gold halacha is one span. They match when the characters the
predicted spans share with the gold span are at least half of the gold span's length and at
least half of the predicted spans' total length: the prediction holds most of the gold passage
and is mostly that passage, so a quote of the whole decision matches nothing. Predictions and
gold halachot are paired one to one, and the pairing is optimal: the largest number of pairs
(a maximum bipartite matching), so a duplicated prediction counts once and one prediction
spanning two gold passages counts for one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

FOLDER = Path(__file__).resolve().parent / "gold"
LANGUAGES = ("he", "en")
FIELDS = ("id", "language", "title", "court", "case_number", "decided_on", "text", "halachot",
          "notes")
HALACHA_FIELDS = ("rule", "quote", "span")

Span = tuple[int, int]  # [start, end) character offsets into the decision's text


class GoldSetError(ValueError):
    """A gold file that cannot be used; the message names the file, the field and what to fix."""


@dataclass(frozen=True)
class GoldHalacha:
    rule: str  # the binding rule, one sentence in the decision's language
    quote: str  # the supporting passage: exactly text[span[0]:span[1]]
    span: Span


@dataclass(frozen=True)
class GoldDecision:
    id: str
    language: str
    title: str
    court: str
    case_number: str
    decided_on: date | None
    text: str
    halachot: tuple[GoldHalacha, ...]
    notes: str  # how the decision and its halachot were made and checked

    @property
    def spans(self) -> list[Span]:
        """The gold halachot's spans, in the file's order (``score``'s ``gold``)."""
        return [halacha.span for halacha in self.halachot]


# --- loading ----------------------------------------------------------------------------------


def load(folder: Path = FOLDER) -> list[GoldDecision]:
    """Every gold decision in ``folder`` (its ``*.json`` files, in name order), validated.

    Raises ``GoldSetError`` naming the file and the field at the first problem: a file that is
    not JSON, a missing, unexpected or mistyped field, a language other than he/en, a date that
    is not YYYY-MM-DD, a quote that is not in the text or not at its span, overlapping gold
    spans, an id used twice.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GoldSetError(f"{folder}: not a folder (the gold set is one JSON file per decision)")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise GoldSetError(f"{folder}: holds no gold files (*.json)")
    decisions: list[GoldDecision] = []
    seen: dict[str, Path] = {}
    for path in paths:
        decision = load_file(path)
        if decision.id in seen:
            raise GoldSetError(f"{path}: id: {decision.id!r} is already the id of "
                               f"{seen[decision.id].name}; give each decision an id of its own")
        seen[decision.id] = path
        decisions.append(decision)
    return decisions


def load_file(path: Path) -> GoldDecision:
    """One gold file, validated (see ``load``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise GoldSetError(f"{path}: is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise GoldSetError(f"{path}: is not JSON ({exc.msg}, line {exc.lineno} column "
                           f"{exc.colno})") from None
    if not isinstance(data, dict):
        raise GoldSetError(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return from_data(data, where=path)


def from_data(data: dict[str, Any], *, where: Path | str) -> GoldDecision:
    """A gold decision from its fields (a file's object, or an operator's entry: ``where``
    names it in the errors), validated as ``load`` says; ``decided_on`` may be null there."""
    path = where
    _check_fields(path, "", data, FIELDS)
    # An operator's entry may leave the header fields blank (the decision's own may be).
    blank = () if isinstance(where, Path) else ("title", "court", "case_number")
    strings = {name: (data[name] if name in blank and data[name] == "" else
                      _string(path, name, data[name]))
               for name in FIELDS if name not in ("halachot", "decided_on")}
    if strings["language"] not in LANGUAGES:
        raise GoldSetError(f"{path}: language: {strings['language']!r} is not one of "
                           f"{', '.join(LANGUAGES)}")
    decided_on = None
    if data["decided_on"] is not None or isinstance(where, Path):
        decided = _string(path, "decided_on", data["decided_on"])
        try:
            decided_on = date.fromisoformat(decided)
        except ValueError:
            raise GoldSetError(f"{path}: decided_on: {decided!r} is not a YYYY-MM-DD "
                               "date") from None
    text = strings["text"]
    items = data["halachot"]
    if not isinstance(items, list) or not items:
        raise GoldSetError(f"{path}: halachot: must be a non-empty list of "
                           "{rule, quote, span} objects")
    halachot = tuple(_halacha(path, f"halachot[{i}]", item, text) for i, item in enumerate(items))
    _check_disjoint(path, halachot)
    return GoldDecision(
        id=strings["id"], language=strings["language"], title=strings["title"],
        court=strings["court"], case_number=strings["case_number"], decided_on=decided_on,
        text=text, halachot=halachot, notes=strings["notes"],
    )


def _check_fields(path: Path | str, where: str, data: dict[str, Any], fields: Sequence[str]) -> None:
    prefix = f"{where}." if where else ""
    missing = [name for name in fields if name not in data]
    if missing:
        raise GoldSetError(f"{path}: {prefix}{missing[0]}: missing (a gold "
                           f"{'halacha' if where else 'file'} has {', '.join(fields)})")
    extra = sorted(set(data) - set(fields))
    if extra:
        raise GoldSetError(f"{path}: {prefix}{extra[0]}: unexpected field (a gold "
                           f"{'halacha' if where else 'file'} has {', '.join(fields)})")


def _string(path: Path | str, field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise GoldSetError(f"{path}: {field}: must be a non-empty string, not {value!r}")
    return value


def _halacha(path: Path | str, where: str, item: object, text: str) -> GoldHalacha:
    if not isinstance(item, dict):
        raise GoldSetError(f"{path}: {where}: must be an object with rule, quote and span")
    _check_fields(path, where, item, HALACHA_FIELDS)
    rule = _string(path, f"{where}.rule", item["rule"])
    quote = _string(path, f"{where}.quote", item["quote"])
    if quote != quote.strip():
        raise GoldSetError(f"{path}: {where}.quote: begins or ends with whitespace; a quote is "
                           "grounded stripped, so the span must not hold it")
    span = item["span"]
    if not (isinstance(span, list) and len(span) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in span)
            and 0 <= span[0] < span[1] <= len(text)):
        raise GoldSetError(f"{path}: {where}.span: {span!r} is not [start, end] with "
                           f"0 <= start < end <= {len(text)} (the text's length)")
    start, end = span
    if text[start:end] != quote:
        found = text.find(quote)
        if found < 0:
            raise GoldSetError(f"{path}: {where}.quote: does not occur in the text (a gold "
                               "quote is an exact slice of it): " + _excerpt(quote))
        raise GoldSetError(f"{path}: {where}.span: [{start}, {end}] holds "
                           f"{_excerpt(text[start:end])}, not the quote, which is at "
                           f"[{found}, {found + len(quote)}]")
    return GoldHalacha(rule=rule, quote=quote, span=(start, end))


def _check_disjoint(path: Path | str, halachot: Sequence[GoldHalacha]) -> None:
    order = sorted(range(len(halachot)), key=lambda i: halachot[i].span)
    for before, after in zip(order, order[1:], strict=False):
        if halachot[after].span[0] < halachot[before].span[1]:
            raise GoldSetError(
                f"{path}: halachot[{after}].span: {list(halachot[after].span)} overlaps "
                f"halachot[{before}].span {list(halachot[before].span)}; gold passages are "
                "disjoint (merge the two halachot or shorten a quote)")


def _excerpt(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """Counts of one decision, or of many added up (``a + b``, ``sum(scores, Score())``): the
    micro-average, in which every halacha of the set weighs the same. A rate whose denominator
    is zero (no prediction, no gold halacha) is 0."""

    true_positives: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall, 2·TP / (predicted + gold)."""
        total = self.predicted + self.gold
        return 2 * self.true_positives / total if total else 0.0

    def __add__(self, other: Score) -> Score:
        if not isinstance(other, Score):
            return NotImplemented
        return Score(self.true_positives + other.true_positives,
                     self.predicted + other.predicted, self.gold + other.gold)


def score(gold: Sequence[Sequence[int]], predicted: Sequence[Iterable[Sequence[int]]]) -> Score:
    """One decision's predicted halachot (each a list of ``[start, end]`` spans, as the parser's
    ``quote_spans``) against its gold spans (``GoldDecision.spans``), by the rule in the module
    docstring."""
    return Score(len(match(gold, predicted)), len(predicted), len(gold))


def match(gold: Sequence[Sequence[int]],
          predicted: Sequence[Iterable[Sequence[int]]]) -> dict[int, int]:
    """The optimal one-to-one pairing ``{predicted index: gold index}`` of the predictions that
    match a gold halacha (module docstring). Kuhn's augmenting paths: tiny inputs, exact."""
    gold_spans = [_span(span) for span in gold]
    if any(end == start for start, end in gold_spans):
        raise ValueError("a gold span is empty")
    candidates: list[list[int]] = []
    for spans in predicted:
        merged = _merged(_span(span) for span in spans)
        length = sum(end - start for start, end in merged)
        shared = [(_overlap(merged, g), i) for i, g in enumerate(gold_spans)]
        fits = [(-common, i) for common, i in shared
                if length and 2 * common >= gold_spans[i][1] - gold_spans[i][0]
                and 2 * common >= length]
        candidates.append([i for _common, i in sorted(fits)])  # the largest overlap first
    owner: dict[int, int] = {}  # gold index -> predicted index

    def pair(p: int, visited: set[int]) -> bool:
        for g in candidates[p]:
            if g in visited:
                continue
            visited.add(g)
            if g not in owner or pair(owner[g], visited):
                owner[g] = p
                return True
        return False

    for p in range(len(candidates)):
        pair(p, set())
    return {p: g for g, p in owner.items()}


def _span(span: Sequence[int]) -> Span:
    if len(span) != 2 or not 0 <= span[0] <= span[1]:
        raise ValueError(f"a span is [start, end] with 0 <= start <= end, not {list(span)!r}")
    return int(span[0]), int(span[1])


def _merged(spans: Iterable[Span]) -> list[Span]:
    """The union of ``spans`` as disjoint spans, in order (so no character counts twice)."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _overlap(spans: Iterable[Span], gold: Span) -> int:
    return sum(max(0, min(end, gold[1]) - max(start, gold[0])) for start, end in spans)


# --- replies ----------------------------------------------------------------------------------


def reply_for(decision: GoldDecision, quotes: Sequence[str] | None = None) -> str:
    """A halachot reply for ``decision`` as a model would write it (the JSON that
    ``protocol.parse_halachot`` reads): each gold rule with its gold quote, or with
    ``quotes[i]`` in its place (a model's copy of it), and no topics."""
    copies = [halacha.quote for halacha in decision.halachot] if quotes is None else list(quotes)
    if len(copies) != len(decision.halachot):
        raise ValueError(f"{decision.id} has {len(decision.halachot)} halachot, "
                         f"not {len(copies)} quotes")
    items = [{"rule": halacha.rule, "quote": quote, "topics": []}
             for halacha, quote in zip(decision.halachot, copies, strict=True)]
    return json.dumps({"halachot": items}, ensure_ascii=False)
