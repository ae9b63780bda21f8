"""The offline extractor: deterministic rules over cue phrases, no credentials, no quota.

Its rules are the decision drains' offline rules (``halachot_reply``, ``metadata_reply``), which
their calls carry (halacha/extractors/protocol.py); the backend itself knows no drain. It finds
sentences in which the court lays down a rule ("we hold that", "the rule is that",
"נקבע כי", "הלכה היא", ...), skips those in a party's mouth ("the appellant argued that the rule
is ..."), and answers in the same JSON a model would, validated by the same protocol — so its
quotes are slices of the decision text and always verbatim. Metadata comes from labelled header
lines ("Before:", "Appellant:", "Case No.", "לפני:", "המערער:", "מספר תיק:").

It is the default backend, so that everything runs without a key. It never calls the network.
"""

from __future__ import annotations

import json
import re
from datetime import date

from halacha.extractors.base import Extractor, ModelCall, ModelReply, empty_usage

HEBREW_LETTER = "\u05d0-\u05ea"

# A cue ends where the rule itself begins.
_EN_CUE = re.compile(
    r"\b(?:we\s+(?:therefore\s+|also\s+|further\s+|now\s+)?(?:hold|rule)|the\s+rule\s+is|"
    r"the\s+law\s+is|it\s+is\s+(?:hereby\s+)?held)(?:\s*,[^,]{1,40},)?\s+that\s+",
    re.IGNORECASE,
)
_HE_CUE = re.compile(
    rf"(?<![{HEBREW_LETTER}])(?:אנו\s+קובעים|נקבע|נפסק|הלכה\s+היא|הכלל\s+הוא)\s*(?:,\s*)?(?:כי\s+|ש(?=[{HEBREW_LETTER}]))"
)
# A cue after one of these words reports what a party said, not what the court holds.
_EN_REPORTED = re.compile(
    r"\b(?:argued|argues|contended|contends|claimed|claims|submitted|submits|asserted|asserts|"
    r"maintained|urged|suggested)\b",
    re.IGNORECASE,
)
_HE_REPORTED = re.compile(
    rf"(?<![{HEBREW_LETTER}])(?:טען|טענה|טענו|טוען|טוענת|לטענת|טענת)(?![{HEBREW_LETTER}])"
)

_ABBREVIATIONS = {
    "ltd", "inc", "co", "no", "nos", "mr", "mrs", "ms", "dr", "v", "vs", "st", "adv", "j",
    "e.g", "i.e", "cf", "p", "pp", "para", "s", "ss", "art", "sec",
}  # fmt: skip

TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "administrative": ("authority", "municipality", "permit", "committee", "רשות", "עירייה", "היתר", "ועדה"),
    "consumer": ("consumer", "seller", "advertis", "צרכן", "עוסק", "פרסומת"),
    "contract": ("contract", "offer", "acceptance", "promis", "חוזה", "הסכם"),
    "criminal": ("confession", "accused", "conviction", "sentence", "נאשם", "הרשעה", "עונש"),
    "defamation": ("defamation", "libel", "לשון הרע"),
    "employment": ("employee", "employer", "wage", "overtime", "עובד", "מעסיק", "שכר", "פיצויי פיטורים"),
    "evidence": ("evidence", "admissib", "inadmissib", "recording", "ראיה", "ראיות", "קביל"),
    "family": ("child", "custody", "parent", "spouse", "maintenance", "ילד", "הורים", "משמורת", "מזונות"),
    "insurance": ("insur", "ביטוח", "מבטח", "מבוטח", "פוליסה"),
    "procedure": ("limitation", "court fee", "התיישנות", "אגרה"),
    "property": ("landlord", "tenant", "lease", "deposit", "land", "משכיר", "שוכר", "דירה", "מקרקעין", "שכירות"),
    "tax": ("tax", "assessment", "שומה", "נישום"),
    "tort": ("negligen", "hazard", "injur", "duty of care", "רשלנות", "נזק"),
}  # fmt: skip


def sentences(text: str):
    """(start, end) spans of the sentences of ``text``; lines never join, abbreviations never split."""
    position = 0
    for line in text.splitlines(keepends=True):
        start = position
        position += len(line)
        body_end = start + len(line.rstrip("\r\n"))
        cursor = start
        for match in re.finditer(r"[.!?]+(?=\s|$)", text[start:body_end]):
            end = start + match.end()
            word = re.search(r"([\w.]+)[.!?]+$", text[cursor:end])
            if word and (
                word.group(1).lower().rstrip(".") in _ABBREVIATIONS
                or re.fullmatch(r"[A-Z]", word.group(1))
            ):
                continue
            yield from _trimmed(text, cursor, end)
            cursor = end
        yield from _trimmed(text, cursor, body_end)


def _trimmed(text: str, start: int, end: int):
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end


def topics_for(rule: str) -> list[str]:
    lowered = rule.lower()
    found = []
    for topic, keywords in TOPIC_KEYWORDS.items():
        for keyword in keywords:
            if re.search(f"[{HEBREW_LETTER}]", keyword):
                hit = keyword in lowered  # Hebrew prefixes (ה, ו, ב, ל, מ, ש) attach to the word
            else:
                hit = re.search(rf"\b{re.escape(keyword)}", lowered) is not None
            if hit:
                found.append(topic)
                break
    return found


def find_rules(text: str) -> list[dict]:
    """The halachot the cue rules see in ``text``, as the reply JSON's items."""
    found = []
    for start, end in sentences(text):
        sentence = text[start:end]
        match = _EN_CUE.search(sentence) or _HE_CUE.search(sentence)
        if match is None:
            continue
        before = sentence[: match.start()]
        if _EN_REPORTED.search(before) or _HE_REPORTED.search(before):
            continue
        rule = sentence[match.end() :].strip()
        if len(rule.split()) < 3:
            continue
        if rule[0].isascii() and rule[0].islower():
            rule = rule[0].upper() + rule[1:]
        found.append({"rule": rule, "quote": sentence, "topics": topics_for(rule)})
    return found


# --- metadata ---------------------------------------------------------------------------------

# A label ends in a colon, so that a sentence starting with the same word ("Before his death")
# is never read as a header; "Case No. 12/34" is the one form that may go without.
_LINE = r"^[ \t]*{label}[ \t]*:[ \t]*(?P<value>\S.*?)[ \t]*$"
_CASE_RE = re.compile(
    r"^[ \t]*(?:(?:Case|File)\s+No\.[ \t]*:?|(?:Case\s+number|מספר\s+תיק|תיק\s+מס['׳]?)[ \t]*:)"
    r"[ \t]*(?P<value>\S.*?)[ \t]*$",
    re.M | re.I,
)
_JUDGES_RE = re.compile(_LINE.format(label=r"(?:Before|Coram|לפני)"), re.M | re.I)
_PARTY_RE = re.compile(
    _LINE.format(
        label=r"(?:Appellants?|Respondents?|Petitioners?|Plaintiffs?|Defendants?|Applicants?|"
        r"המערערת|המערערים|המערער|המשיבה|המשיבים|המשיב|העותרת|העותרים|העותר|התובעת|התובעים|"
        r"התובע|הנתבעת|הנתבעים|הנתבע|המבקשת|המבקשים|המבקש)"
    ),
    re.M | re.I,
)
_DATE_LINE_RE = re.compile(
    r"^[ \t]*(?:(?:Decided|Date\s+of\s+judgment|Judgment\s+given|ניתן\s+ביום)[ \t]*:"
    r"|ניתן\s+היום[ \t]*[,:])[ \t]*(?P<value>\S.*?)[ \t]*$",
    re.M | re.I,
)
_COURT_LABEL_RE = re.compile(_LINE.format(label=r"(?:Court|בית\s+המשפט)"), re.M | re.I)
_COURT_FIRST_LINE_RE = re.compile(r"\b(?:Court|Tribunal)\b|^(?:בית\s+ה?משפט|בית\s+הדין)", re.I)
_TITLES_RE = re.compile(
    r"^(?:(?:the\s+)?(?:hon(?:ourable)?\.?|chief\s+justice|deputy\s+president|vice\s+president|"
    r"president|justice|judge|registrar)\s+)+"
    r"|^(?:(?:כבוד|כב['׳]|המשנה\s+לנשיאה|המשנה\s+לנשיא|הנשיאה|הנשיא|השופטת|השופט|הרשמת|הרשם)\s+)+",
    re.I,
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["january", "february", "march", "april", "may", "june", "july", "august",
         "september", "october", "november", "december"], 1
    )
}  # fmt: skip


def parse_loose_date(value: str) -> date | None:
    """2023-03-14, 14.3.2023, 14/3/2023, 14 March 2023, March 14, 2023 (or a d.m.yyyy date
    inside other words) — or None."""
    value = value.strip().rstrip(".")
    patterns = (
        (r"(\d{4})-(\d{1,2})-(\d{1,2})", lambda m: (m[1], m[2], m[3])),
        (r"(\d{1,2})[./](\d{1,2})[./](\d{4})", lambda m: (m[3], m[2], m[1])),
    )
    for pattern, order in patterns:
        match = re.fullmatch(pattern, value)
        if match:
            year, month, day = (int(x) for x in order(match))
            return _date(year, month, day)
    match = re.fullmatch(r"(\d{1,2})\s+([A-Za-z]+)\s+(\d{4})", value)
    if match and match[2].lower() in _MONTHS:
        return _date(int(match[3]), _MONTHS[match[2].lower()], int(match[1]))
    match = re.fullmatch(r"([A-Za-z]+)\s+(\d{1,2}),?\s+(\d{4})", value)
    if match and match[1].lower() in _MONTHS:
        return _date(int(match[3]), _MONTHS[match[1].lower()], int(match[2]))
    # "ניתן היום, כ"ג בשבט התשפ"ב (2.2.2022)": the civil date inside other words.
    match = re.search(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4})(?![\d.])", value)
    if match:
        return _date(int(match[3]), int(match[2]), int(match[1]))
    return None


def _date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _names(value: str, *, strip_titles: bool) -> list[str]:
    parts = re.split(r"\s*[,;]\s*|\s+and\s+", value)
    names = []
    for part in parts:
        name = _TITLES_RE.sub("", part.strip()) if strip_titles else part.strip()
        if name and name not in names:
            names.append(name)
    return names


def read_metadata(text: str) -> dict:
    """Metadata from the labelled header lines of a decision (see the module docstring)."""
    court = None
    match = _COURT_LABEL_RE.search(text)
    if match:
        court = match["value"]
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if _COURT_FIRST_LINE_RE.search(first) and len(first) <= 200:
            court = first
    case = _CASE_RE.search(text)
    judges: list[str] = []
    for match in _JUDGES_RE.finditer(text):
        judges += [n for n in _names(match["value"], strip_titles=True) if n not in judges]
    parties: list[str] = []
    for match in _PARTY_RE.finditer(text):
        # Party names keep their commas ("Ltd., Haifa"); several parties are split by ";".
        for name in re.split(r"\s*;\s*", match["value"]):
            if name and name not in parties:
                parties.append(name)
    decided_on = None
    for match in _DATE_LINE_RE.finditer(text):
        decided_on = parse_loose_date(match["value"])
        if decided_on:
            break
    return {
        "court": court,
        "case_number": case["value"] if case else None,
        "decided_on": decided_on,
        "judges": judges,
        "parties": parties,
    }


def halachot_reply(text: str) -> str:
    """The halacha drain's offline rule: the reply a model would give, from the cue phrases."""
    return json.dumps({"halachot": find_rules(text)}, ensure_ascii=False)


def metadata_reply(text: str) -> str:
    """The metadata drain's offline rule: the reply a model would give, from the header lines."""
    found = read_metadata(text)
    decided_on = found["decided_on"]
    return json.dumps(dict(found, decided_on=decided_on.isoformat() if decided_on else None),
                      ensure_ascii=False)


class OfflineExtractor(Extractor):
    """The backend that calls no model: it answers each call with the drain's own offline rule
    (``ModelCall.offline``), free and deterministic."""

    name = "offline"
    model = "cue-rules-1"

    def quota_key(self) -> str:
        return "offline"

    def call(self, request: ModelCall) -> ModelReply:
        text = request.offline()
        # No tokens, and no model_usage: nothing was spent on a model.
        return ModelReply(
            text=text, usage=dict(empty_usage(), model_usage={}),
            raw={"backend": self.name, "model": self.model, "reply": text},
            backend=self.name, model=self.model,
        )
