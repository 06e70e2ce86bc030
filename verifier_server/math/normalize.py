"""String normalization of an extracted answer, before it is parsed into a typed value.

Only rewrites that cannot change which value is meant: delimiters, sizing and spacing
commands, \\dfrac and friends, \\text-like wrappers, units at the very end on word
boundaries, degrees, currency, thousands separators in true 3-digit groups (also `,\\!`),
`\\frac12` repairs, "and"/"or" lists, and an `\\approx` tail after an exact value. A
trailing percent sign ("\\%", "percent", "pct", "percentage") becomes one `%` that the
parser turns into a flag: `50\\%` equals both 50 (MATH asks "what percent") and 0.5, while a
bare `50` never equals 0.5. LaTeX escaped twice (`\\\\frac`, as some peers' strings are) is
read once.
"""

from __future__ import annotations

import re

MAX_ANSWER_CHARS = 2_000

_WRAPPERS = ("text", "textbf", "textit", "textrm", "textnormal", "mathrm", "mathbf", "mbox",
             "operatorname", "mathit", "boldsymbol", "bm", "emph")
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad\b|~|\\displaystyle|\\limits")
_UNITS = ("square units", "sq units", "square feet", "square inches", "square meters",
          "square centimeters", "square cm", "sq ft", "cubic feet", "cubic inches",
          "cubic units", "cubic centimeters", "cubic meters", "units", "unit", "cm", "mm",
          "km", "meters", "meter", "inches", "inch", "in", "feet", "foot", "ft", "yards",
          "yard", "miles", "mile", "mph", "hours", "hour", "minutes", "minute", "seconds",
          "second", "days", "day", "weeks", "week", "years", "year", "dollars", "dollar",
          "cents", "cent", "degrees", "degree", "points", "ways", "people", "students",
          "pounds", "ounces", "gallons", "liters", "grams", "kg", "sq", "cups", "apples")
_UNIT_AT_END = re.compile(r"(?<=[\d}\s)])\s*(?:\\?\s*)(?:" + "|".join(
    re.escape(u) for u in sorted(_UNITS, key=len, reverse=True)) + r")(?:\^\{?[23]\}?)?\s*$")
_TWICE_ESCAPED = re.compile(r"(?<!\\)\\\\(?=(?:frac|dfrac|tfrac|left|right|sqrt|le|ge|leq|geq|"
                            r"neq|cdot|times|pi|infty|in|cup|text|mathrm|pm)(?![a-zA-Z]))")
_TRIG = re.compile(r"\\(?:arc)?(?:sin|cos|tan|sec|csc|cot)(?![a-zA-Z])")
_THOUSANDS = re.compile(r"^-?[1-9]\d{0,2}(?:(?:,|\{,\})\d{3})+(?:\.\d+)?$")


def unwrap_macro(text: str, name: str) -> str:
    """Replace every \\name{content} by content (balanced braces)."""
    pattern = "\\" + name + "{"
    out, i = [], 0
    while (at := text.find(pattern, i)) >= 0:
        end = at + len(pattern)
        depth, j = 1, end
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:  # unbalanced: leave the rest alone
            break
        out.append(text[i:at])
        out.append(text[end : j - 1])
        i = j
    out.append(text[i:])
    return "".join(out)


def _repair_short_args(text: str) -> str:
    r"""\frac12 -> \frac{1}{2}, \frac1{x} -> \frac{1}{x}, \sqrt2 -> \sqrt{2}."""
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}", text)
    text = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d|[a-zA-Z])(?![a-zA-Z])", r"\\frac\1{\2}", text)
    return re.sub(r"\\sqrt\s*(\d|[a-zA-Z])(?![a-zA-Z])", r"\\sqrt{\1}", text)


def normalize(answer: str) -> str:
    """The normalized answer string."""
    s = answer.strip()[:MAX_ANSWER_CHARS]
    for _ in range(2):  # delimiters may nest: $\( ... \)$
        s = s.strip()
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
                s = s[len(left) : len(s) - len(right)]
    s = s.replace("\n", " ").replace("²", "^2").replace("³", "^3")
    s = _TWICE_ESCAPED.sub(r"\\", s)
    s = re.sub(r"(?<=\d),\\!\s*(?=\d)", "", s)  # 16,\!386 or 56,\!01,\!78: digit groups
    s = re.sub(r"(?<=\d)\s*\{\s*,\s*\}\s*(?=\d{3})", "{,}", s)  # 14 {, }916
    # An approximation after the exact value adds nothing: \frac{\sqrt3}{3} \approx 0.577.
    exact, *approximation = re.split(r"\\approx|≈", s, maxsplit=1)
    named_only = re.fullmatch(r"\s*(?:[a-zA-Z]\s*)?", exact)  # "x \approx 2": the value
    s = approximation[0] if approximation and named_only else exact
    s = re.sub(r"\\left\s*\.|\\right\s*\.", "", s)  # invisible delimiters
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s).replace("\\dbinom", "\\binom").replace(
        "\\tbinom", "\\binom")
    for name in _WRAPPERS:
        s = unwrap_macro(s, name)
    s = _SPACING.sub(" ", s)
    # Degrees and currency carry no value of their own, except inside a trigonometric
    # function: \sin(90^\circ - x) is \cos x, and \sin(30^\circ) is not \sin(30).
    degree = r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree"
    if _TRIG.search(s):
        s = re.sub(r"(\d+(?:\.\d+)?)\s*(?:" + degree + ")", r"(\1\\pi/180)", s)
    s = re.sub(degree, "", s)
    s = re.sub(r"\\\$|\$|€|£|\\euro|\\pounds", "", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(?<!\.)\.$", "", s).strip()  # a full stop, not an ellipsis
    s = re.sub(r"\s*(?:\\?%|(?<=\d)\s*(?:percentage|percent|pct))$", "%", s)
    s = re.sub(r"(?<=\d)\s*m\^\{?[23]\}?$", "", s)  # square and cubic meters
    previous = None
    while previous != s:  # several units may trail: "5 square units"
        previous = s
        s = _UNIT_AT_END.sub("", s).strip()
    s = re.sub(r"\s*\b(?:and|or)\b\s*", ",", s) if re.search(r"\S\s+(?:and|or)\s+\S", s) else s
    s = re.sub(r"(?<=[)\]])\s*(?:and|or)\s*(?=[(\[])", ",", s)  # "(11,7)or(7,11)"
    s = re.sub(r"^(?:[a-z]\s*)?\\in\s*", "", s)  # "x \in [1,2]"
    if _THOUSANDS.match(s):
        s = s.replace("{,}", "").replace(",", "")
    s = _repair_short_args(s)
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    return s.strip()
