"""Typed answers: a normalized answer string parsed into the value it denotes.

Kinds: `Number` (an exact Fraction, with the printed precision of a decimal), `Based`
(digits in a base, `204_5`), `Text` (words, multiple-choice letters), `Expr` (LaTeX left for
the symbolic comparison), `Seq` (tuples, vectors and intervals, with their brackets), `SetOf`
(sets, "find all" lists, unions of intervals, the two values of `\\pm`), `Matrix`, and
`Relation` (equations and inequalities that are not a plain `x = value`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from verifier_server.math.normalize import normalize

MAX_DIGITS = 400  # longer number literals are left to the symbolic path (which guards them)
# Bounds on what an answer may build (MATH's golds reach 8 items, one \\pm and 3 levels):
# beyond them the text stays one expression, so that a crafted answer (`(((...)))` 900 deep,
# `\\pm` 40 times: 2**40 readings) costs nothing and never exhausts the stack.
MAX_NESTING = 24
MAX_ITEMS = 64
MAX_SIGNS = 4


@dataclass(frozen=True)
class Number:
    value: Fraction
    decimals: int | None  # digits after the point when printed as a decimal, else None
    significant: int      # significant digits as printed
    percent: bool = False  # printed with a percent sign: equals value and value / 100


@dataclass(frozen=True)
class Based:
    digits: str
    base: int


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Expr:
    latex: str


@dataclass(frozen=True)
class Seq:
    open: str
    close: str
    items: tuple[Value, ...]


@dataclass(frozen=True)
class SetOf:
    items: tuple[Value, ...]


@dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple[Value, ...], ...]


@dataclass(frozen=True)
class Relation:
    op: str  # "=", "<", "<=", ">", ">=", "!="
    lhs: Expr
    rhs: Expr


Value = Number | Based | Text | Expr | Seq | SetOf | Matrix | Relation

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_RELATIONS = [("\\leq", "<="), ("\\geq", ">="), ("\\le", "<="), ("\\ge", ">="), ("\\neq", "!="),
              ("\\ne", "!="), ("\\lt", "<"), ("\\gt", ">"), ("<=", "<="), (">=", ">="),
              ("!=", "!="), ("≤", "<="), ("≥", ">="), ("≠", "!="), ("=", "="), ("<", "<"),
              (">", ">")]
# A variable or function name: x, \\theta, a_1, f(x); never a function of the math library
# (\\sin(x) = 1/2 is an equation, not a label).
NAME = re.compile(r"^(?:[a-zA-Z]|\\(?!(?:arc)?(?:sin|cos|tan|sec|csc|cot)h?\b|log\b|ln\b|exp\b)"
                  r"[a-zA-Z]+)(?:_\{?[\w]+\}?)?(?:\([a-z]\))?$")
# What labels a value in "(p, q) = (3, 2)" or "AB = 4, CD = 5": a name, a tuple of names, or
# up to three capitals (a segment or an angle).
# A left side that is an operation giving a value (a limit, an integral, a sum or product, a
# derivative, a binomial coefficient, a determinant): `LHS = value` states that value.
_VALUE_OF_AN_OPERATION = re.compile(r"^\s*(?:\\(?:lim|int|iint|oint|sum|prod|[dt]?binom|det)"
                                    r"(?![a-zA-Z])"
                                    r"|\\begin\{vmatrix\}"
                                    r"|\\[dt]?frac\{\s*(?:d|\\partial|\\mathrm\{d\})[^{}]*\}"
                                    r"\{\s*(?:d|\\partial|\\mathrm\{d\})"
                                    r"|[a-zA-Z]'+\s*\()")
_LABEL = re.compile(r"^(?:[A-Z]{2,3}|\((?:\s*[a-zA-Z]\s*,)+\s*[a-zA-Z]\s*\))$")
# One matrix literal (its body holds no other \begin: "A + B" of two matrices is an Expr).
_MATRIX = re.compile(r"^[\[(]?\s*\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?"
                     r"((?:(?!\\begin\{).)*)"
                     r"\\end\{\1\}\s*[\])]?$", re.S)
_DECIMAL = re.compile(r"^([-+])?(\d+)?(?:\.(\d+))?$")
_FRAC = re.compile(r"^(-)?\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$")
_SLASH = re.compile(r"^(-?[\d.]+)\s*/\s*(-?[\d.]+)$")
_MIXED = re.compile(r"^([+-]?)(\d+)\s*(?:\\frac\{(\d+)\}\{(\d+)\}|\s(\d+)/(\d+))$")
# "1,22" or "0,111": a decimal comma (a 3-digit group after a nonzero integer part is
# thousands, and one digit after the comma is a list, "1,2").
_DECIMAL_COMMA = re.compile(r"^-?(?:0|\d+(?=,\d{2}$|,\d{4,}$)|\d{4,}),\d{2,}$")
_SCI = re.compile(r"^(-?[\d.]+)\s*(?:\\times|\\cdot|\*)\s*10\^\{?(-?\d{1,3})\}?$")
_BASED = re.compile(r"^([0-9A-Za-z]+)_\{?(\d{1,2})\}?$")
# A multiple-choice letter, alone or with its option's text: "(D) Alina", "C Cecile".
_LETTER_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?$|^\(([A-E])\)\s.*$|^([A-E])(?:\s+[A-Z][a-z]+)+$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z\s'\-]*$")


def split_top_level(s: str, separators: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split on separators that sit outside every bracket and brace; a separator that ends in
    a letter must not run into one (\\le is not \\left). Returns the parts and the
    separators found between them."""
    parts, found, depth, start, i = [], [], 0, 0, 0
    firsts = {t[0] for t in separators}  # no separator holds a bracket
    while i < len(s):
        char = s[i]
        depth += (char in "([{") - (char in ")]}")
        sep = None if depth or char not in firsts else next((
            t for t in separators if s.startswith(t, i) and not (
                t[-1].isalpha() and s[i + len(t):i + len(t) + 1].isalpha())), None)
        if sep is None:
            i += 1
            continue
        parts.append(s[start:i].strip())
        found.append(sep)
        i += len(sep)
        start = i
    parts.append(s[start:].strip())
    return parts, found


def _matching_close(s: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(s)):
        if s[i] in "([{":
            depth += 1
        elif s[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def parse_number(s: str) -> Number | None:
    """Exact value of a plain number written as an integer, decimal, fraction, mixed number
    or in scientific notation; None for anything else."""
    if s.endswith("%"):  # one or more percent signs, spaces between
        while s.endswith("%"):
            s = s[:-1].strip()
        number = parse_number(s)
        return None if number is None else Number(number.value, number.decimals,
                                                  number.significant, percent=True)
    s = s.replace(" ", "") if not _MIXED.match(s) else s
    if len(s) > MAX_DIGITS:
        return None
    if _DECIMAL_COMMA.match(s):
        s = s.replace(",", ".")
    if (m := _DECIMAL.match(s)) and (m.group(2) or m.group(3)):
        sign, whole, frac = m.group(1), m.group(2) or "0", m.group(3)
        value = Fraction(f"{whole}.{frac}" if frac else whole)
        digits = (whole + (frac or "")).lstrip("0") or "0"
        return Number(-value if sign == "-" else value, len(frac) if frac else None,
                      len(digits))
    if (m := _FRAC.match(s)) or (m := _SLASH.match(s)):
        groups = m.groups()
        sign = groups[0] if len(groups) == 3 else None
        num, den = groups[-2], groups[-1]
        try:
            value = Fraction(num) / Fraction(den)
        except (ValueError, ZeroDivisionError):
            return None
        return Number(-value if sign else value, None, MAX_DIGITS)
    if m := _MIXED.match(s):
        sign, whole, a, b, c, d = m.groups()
        num, den = (a, b) if a else (c, d)
        if int(den) == 0 or int(num) >= int(den):
            return None
        value = int(whole) + Fraction(int(num), int(den))
        return Number(-value if sign == "-" else value, None, MAX_DIGITS)
    if m := _SCI.match(s):
        mantissa = parse_number(m.group(1))
        if mantissa is None:
            return None
        exponent = int(m.group(2))  # 2.31 \times 10^{-3} is printed to 5 decimals
        decimals = None if mantissa.decimals is None else mantissa.decimals - exponent
        return Number(mantissa.value * Fraction(10) ** exponent, decimals, mantissa.significant)
    return None


def _interval_from_inequality(parts: list[str], ops: list[str]) -> Seq | None:
    """x < 3, 2 <= x, -1 < x <= 4 as intervals; None when a bound has variables."""
    names = [p for p in parts if NAME.match(p)]
    if len(names) != 1 or any(has_variables(p) for p in parts if p not in names):
        return None
    inf, neg_inf = Expr("\\infty"), Expr("-\\infty")
    if len(parts) == 2 and NAME.match(parts[0]) and ops[0] in ("<", "<=", ">", ">="):
        bound = parse_scalar(parts[1])
        if ops[0] in ("<", "<="):
            return Seq("(", ")" if ops[0] == "<" else "]", (neg_inf, bound))
        return Seq("(" if ops[0] == ">" else "[", ")", (bound, inf))
    if len(parts) == 2 and NAME.match(parts[1]) and ops[0] in ("<", "<=", ">", ">="):
        flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[ops[0]]
        return _interval_from_inequality([parts[1], parts[0]], [flipped])
    if (len(parts) == 3 and NAME.match(parts[1]) and ops[0] == ops[1] == "<") or (
            len(parts) == 3 and NAME.match(parts[1]) and set(ops) <= {"<", "<="}):
        return Seq("(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]",
                   (parse_scalar(parts[0]), parse_scalar(parts[2])))
    return None


def _split_relations(s: str) -> tuple[list[str], list[str]]:
    parts, tokens = split_top_level(s, tuple(token for token, _ in _RELATIONS))
    return parts, [dict(_RELATIONS)[t] for t in tokens]


def has_variables(latex: str) -> bool:
    """Whether letters other than macro names (\\pi, \\sqrt, ...) and e occur."""
    return bool(re.search(r"[a-df-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", latex)))


def _is_label(s: str) -> bool:
    return bool(NAME.match(s) or _LABEL.match(s))


def parse_scalar(s: str) -> Value:
    s = s.strip()
    if (number := parse_number(s)) is not None:
        return number
    if _MIXED.match(s.rstrip("%")):  # "11 6/6": not a mixed number, and not 11 * 6/6
        return Text(s)
    s = s.removesuffix("%")
    if m := _BASED.match(s):
        base = int(m.group(2))
        digits = m.group(1).upper()
        if 2 <= base <= 36 and all(int(d, 36) < base for d in digits):
            return Based(digits, base)
    if m := _LETTER_CHOICE.match(s):
        return Text(next(g for g in m.groups() if g).upper())
    if _WORDS.match(s) and (len(s) >= 3 or " " in s):
        return Text(" ".join(s.lower().replace("-", " ").split()))
    if len(_PROSE_WORD.findall(s)) > MAX_FORMULA_WORDS:  # a sentence: no formula to parse
        return Text(s)
    return Expr(s)


# Words of four letters or more that are not LaTeX commands: a formula holds a few at most
# (`\text{cm}`, `\mathrm{area}`), a sentence many, and sympy would only spend time on it.
_PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{4,}")
MAX_FORMULA_WORDS = 4


def parse_value(s: str, depth: int = 0) -> Value:
    """Parse a normalized answer string (`depth`: how deep inside another answer it sits)."""
    s = s.strip()
    if not s:
        return Text("")
    if depth > MAX_NESTING or s.count("\\pm") + s.count("\\mp") > MAX_SIGNS:
        return Expr(s)

    def parse(part: str) -> Value:
        return parse_value(part, depth + 1)

    def many(parts: list[str]) -> tuple[Value, ...] | None:
        return None if len(parts) > MAX_ITEMS else tuple(parse(p) for p in parts if p)

    if m := _MATRIX.fullmatch(s):  # \begin{pmatrix}, or an array in brackets
        rows = [r.split("&") for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        if sum(len(r) for r in rows) > MAX_ITEMS:
            return Expr(s)
        return Matrix(tuple(tuple(parse(c) for c in r) for r in rows))
    for sign in ("\\pm", "\\mp"):
        if sign in s:
            plus, minus = s.replace(sign, "+", 1), s.replace(sign, "-", 1)
            return SetOf((parse(plus), parse(minus)))
    union, _ = split_top_level(s, ("\\cup",))
    if len(union) > 1:
        return SetOf(items) if (items := many(union)) is not None else Expr(s)
    if (number := parse_number(s)) is not None:  # "1,22" (a decimal comma) before lists
        return number
    listed, _ = split_top_level(s, (",", ";"))
    labelled = [_split_relations(i) for i in listed]
    if len(listed) > MAX_ITEMS:
        return Expr(s)
    if len(listed) > 1 and all(ops == ["="] and _is_label(parts[0]) for parts, ops in labelled):
        return SetOf(tuple(parse(parts[1]) for parts, _ in labelled))  # AB = 4, CD = 5
    parts, ops = _split_relations(s)
    if ops and all(op == "=" for op in ops) and len({p.replace(" ", "") for p in parts}) == 1:
        return Text(s)  # "0 = 0": true of anything, so the answer to nothing
    if ops == ["="] and _VALUE_OF_AN_OPERATION.match(parts[0]):
        return parse(parts[1])  # "\lim_{x \to 0} \frac{\sin x}{x} = 1": its value
    if ops and all(op == "=" for op in ops):
        chain = len(parts) > 2 and not has_variables(parts[-1])
        # "35 + 70 = 105": a computation ending in its result (a number, not a restatement)
        computation = not any(has_variables(p) for p in parts) and parse_number(parts[-1])
        if computation or (chain and parse_number(parts[-1])) or (
                _is_label(parts[0]) and (chain or _LABEL.match(parts[0]))):
            # its result: "35 + 70 = 105", "x = 5 + 6 = 11", "(p, q) = (3, 2)"
            return parse(parts[-1])
        if all(NAME.match(p) for p in parts[:-1]):
            if len(parts) == 2 and has_variables(parts[1]):
                return Relation("=", Expr(parts[0]), Expr(parts[1]))  # "y = 2x + 3"
            return parse(parts[-1])  # "x = 5", "a = b = 5"
    if ops:
        if interval := _interval_from_inequality(parts, ops):
            return interval
        if len(ops) == 1:
            return Relation(ops[0], Expr(parts[0]), Expr(parts[1]))
        return Expr(s)
    opener = "\\{" if s.startswith("\\{") else s[0]
    if opener in _OPENERS or opener == "\\{":
        at = 1 if opener == "\\{" else 0
        close = _matching_close(s, at)
        if close == len(s) - 1 or (opener == "\\{" and close == len(s) - 2 and s.endswith("\\}")):
            inner = s[at + 1 : close - (1 if opener == "\\{" else 0)]
            items, _ = split_top_level(inner, (",",))
            if len(items) == 1:  # "(0;-2;6)": semicolons where commas would be
                items, _ = split_top_level(inner, (";",))
            if len(items) > MAX_ITEMS:
                return Expr(s)
            if opener == "\\{" or (opener == "{" and len(items) >= 2):  # {1, 2}: a set too
                return SetOf(tuple(parse(i) for i in items if i))
            if len(items) >= 2:
                return Seq(opener, s[-1], tuple(parse(i) for i in items))
            if opener in "({":
                return parse(inner)
    if len(listed) > 1:
        return SetOf(many(listed))
    return parse_scalar(s)


def parse_answer(answer: str) -> Value:
    """Normalize then parse an answer string."""
    return parse_value(normalize(answer))
