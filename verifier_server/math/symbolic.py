"""The symbolic comparison, run inside the worker pool (never inline: sympy can be slow).

LaTeX is read with pylatexenc into a token stream and parsed by a small precedence parser of
our own that builds sympy objects directly: no `eval` of model text, no antlr. Guards refuse
huge powers and factorials before sympy evaluates them. Two scalars are equal when they are
structurally equal, when a printed decimal matches the exact value rounded to its precision,
or when a high-precision numeric comparison (constants) or a probe at random points (with
free symbols) agrees to a tight relative tolerance; sympy's simplify decides what the probe
cannot.
"""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction

import sympy
from pylatexenc.latexwalker import (
    LatexCharsNode,
    LatexEnvironmentNode,
    LatexGroupNode,
    LatexMacroNode,
    LatexMathNode,
    LatexSpecialsNode,
    LatexWalker,
)

from verifier_server.math.compare import (
    MIN_SIGNIFICANT_FOR_ROUNDING,
    fast_scalar_equal,
    round_to,
    structural_equal,
)
from verifier_server.math.values import Based, Expr, Matrix, Number, Relation, Seq, Value

MAX_LATEX_CHARS = 1_000
MAX_RESULT_DIGITS = 2_000   # refuse powers whose value would have more digits
MAX_FACTORIAL = 1_000
MAX_SYMBOLIC_DEGREE = 1_000  # (x^{199})^{199}: an exponent of 39,601 stalls every probe
REL_TOL = sympy.Float("1e-12", 40)
PROBE_POINTS = 6


class Unparseable(ValueError):
    """The text is not an expression we read (or reading it would be unsafe)."""


FUNCTIONS = {"sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "sec": sympy.sec,
             "csc": sympy.csc, "cot": sympy.cot, "arcsin": sympy.asin, "arccos": sympy.acos,
             "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
             "ln": sympy.log, "log": sympy.log, "exp": sympy.exp, "sqrt": sympy.sqrt}
CONSTANTS = {"pi": sympy.pi, "infty": sympy.oo, "e": sympy.E, "i": sympy.I}
GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
         "vartheta", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi",
         "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Phi", "Psi",
         "Omega"}
OPERATORS = {"cdot": "*", "times": "*", "div": "/", "ast": "*"}
MATRIX_ENVIRONMENTS = {"matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "array"}
_CHAR_TOKEN = re.compile(r"\d+(?:\.\d+)?|\.\d+|[a-zA-Z]|[-+*/^_()\[\]!|',]|\s+")

Token = tuple[str, object]  # (kind, payload)


# ---------------------------------------------------------------- LaTeX to tokens

def _nodes(latex: str) -> list:
    if len(latex) > MAX_LATEX_CHARS:
        raise Unparseable("too long")
    depth = 0
    for ch in latex:
        depth += (ch == "{") - (ch == "}")
        if depth > 40:
            raise Unparseable("nested too deeply")
    try:
        nodes, _, _ = LatexWalker(latex, tolerant_parsing=False).get_latex_nodes()
    except Exception as exc:  # pylatexenc raises several kinds on malformed input
        raise Unparseable(f"latex: {exc}") from exc
    return nodes


def _group(tokens: list[Token]) -> list[Token]:
    return [("(", None), *tokens, (")", None)]


def _arg_tokens(node) -> list[Token]:
    if node is None:
        raise Unparseable("missing macro argument")
    return _group(_tokens([node.nodelist] if isinstance(node, LatexGroupNode) else [node]))


def _flatten(nodes) -> list:
    """pylatexenc nests node lists; macros may also take their arguments from the next nodes,
    so the converter walks one flat list."""
    out = []
    for node in nodes:
        out.extend(_flatten(node) if isinstance(node, list) else [node])
    return out


def _tokens(nodes) -> list[Token]:
    nodes = _flatten(nodes)
    out: list[Token] = []
    i = 0
    while i < len(nodes):
        node = nodes[i]
        i += 1
        if node is None:
            continue
        if isinstance(node, LatexGroupNode):
            out += _group(_tokens([node.nodelist]))
        elif isinstance(node, LatexMathNode):
            out += _tokens([node.nodelist])
        elif isinstance(node, LatexEnvironmentNode) and node.environmentname in MATRIX_ENVIRONMENTS:
            out.append(("matrix", _matrix(node.latex_verbatim())))
        elif isinstance(node, LatexCharsNode | LatexSpecialsNode):
            text = node.chars if isinstance(node, LatexCharsNode) else node.specials_chars
            out += _char_tokens(text)
        elif isinstance(node, LatexMacroNode):
            name = node.macroname
            args = list(node.nodeargd.argnlist) if node.nodeargd and node.nodeargd.argnlist else []
            needed = {"frac": 2, "cfrac": 2, "binom": 2, "sqrt": 1}.get(name, 0)
            while sum(a is not None for a in args) < needed and i < len(nodes):
                args.append(nodes[i])  # pylatexenc left the arguments as following nodes
                i += 1
            args = [a for a in args if a is not None]
            if name in ("frac", "cfrac"):
                out += _group([*_arg_tokens(args[-2]), ("op", "/"), *_arg_tokens(args[-1])])
            elif name == "binom":
                out += [("func", "binomial"), ("(", None), *_arg_tokens(args[-2]), (",", None),
                        *_arg_tokens(args[-1]), (")", None)]
            elif name == "sqrt":
                if len(args) == 2:  # \sqrt[n]{x}
                    out += [("func", "root"), ("(", None), *_arg_tokens(args[1]), (",", None),
                            *_arg_tokens(args[0]), (")", None)]
                else:
                    out += [("func", "sqrt"), *_arg_tokens(args[-1])]
            elif name in FUNCTIONS:
                out.append(("func", name))
            elif name in CONSTANTS and name != "e":
                out.append(("const", name))
            elif name in GREEK:
                out.append(("name", name))
            elif name in OPERATORS:
                out.append(("op", OPERATORS[name]))
            elif name in ("left", "right", "displaystyle", ",", ";", "!", " ", "quad"):
                continue
            else:
                raise Unparseable(f"unknown macro \\{name}")
        else:
            raise Unparseable(f"unsupported {type(node).__name__}")
    return out


def _matrix(latex: str) -> sympy.Matrix:
    """A matrix literal (`\\begin{pmatrix}1 & 2\\end{pmatrix}`) as a sympy Matrix."""
    body = re.sub(r"^\\begin\{\w+\}(?:\{[^{}]*\})?|\\end\{\w+\}$", "", latex.strip())
    rows = [[latex_to_sympy(cell) for cell in row.split("&")]
            for row in re.split(r"\\\\", body) if row.strip()]
    if not rows or len({len(r) for r in rows}) != 1:
        raise Unparseable("a matrix with rows of different lengths")
    return sympy.Matrix(rows)


def _char_tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _CHAR_TOKEN.match(text, pos)
        if not m:
            raise Unparseable(f"unexpected character {text[pos]!r}")
        tok = m.group()
        if out and out[-1][0] in ("^", "_") and tok[0].isdigit():
            tok = tok[0]  # x^23 is x^2 3 in LaTeX: a bare exponent is one character
        pos += len(tok)
        if tok.isspace():
            continue
        if tok[0].isdigit() or tok[0] == ".":
            out.append(("num", tok))
        elif tok.isalpha():
            out.append(("const", tok) if tok in ("e", "i") else ("name", tok))
        elif tok in "([":
            out.append(("(", None))
        elif tok in ")]":
            out.append((")", None))
        elif tok in "^_!|',":
            out.append((tok, None))
        else:
            out.append(("op", tok))
    return out


# ---------------------------------------------------------------- tokens to sympy

class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens, self.pos, self.abs_open = tokens, 0, 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind):
            raise Unparseable(f"expected {kind or 'more'} at token {self.pos}")
        self.pos += 1
        return tok

    def parse(self) -> sympy.Expr:
        expr = self.expr()
        if self.peek() is not None:
            raise Unparseable(f"unexpected {self.peek()}")
        return expr

    def expr(self) -> sympy.Expr:
        value = self.term()
        while (tok := self.peek()) and tok[0] == "op" and tok[1] in "+-":
            self.take()
            right = self.term()
            value = value + right if tok[1] == "+" else value - right
        return value

    def starts_atom(self, tok: Token | None) -> bool:
        if tok is None:
            return False
        opens_abs = tok[0] == "|" and not self.abs_open
        return tok[0] in ("num", "name", "const", "func", "(", "matrix") or opens_abs

    def term(self) -> sympy.Expr:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok and tok[0] == "op" and tok[1] in "*/":
                self.take()
                right = self.unary()
                if tok[1] == "/" and right == 0:
                    raise Unparseable("division by zero")
                value = value * right if tok[1] == "*" else value / right
            elif self.starts_atom(tok):  # implicit multiplication: 2x, 3\sqrt{2}
                value = value * self.power()
            else:
                return value

    def unary(self) -> sympy.Expr:
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in "+-":
            self.take()
            value = self.unary()
            return -value if tok[1] == "-" else value
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        if (tok := self.peek()) and tok[0] == "^":
            self.take()
            exponent = self.unary()
            return guarded_pow(base, exponent)
        return base

    def postfix(self) -> sympy.Expr:
        value = self.atom()
        while (tok := self.peek()) and tok[0] in ("!", "'"):
            self.take()
            if tok[0] == "'":
                raise Unparseable("primes are not values")
            if not (value.is_Integer and 0 <= value <= MAX_FACTORIAL):
                raise Unparseable("factorial of a large or non-integer value")
            value = sympy.factorial(value)
        return value

    def atom(self) -> sympy.Expr:
        kind, payload = self.take()
        if kind == "num":
            return sympy.Rational(str(payload))
        if kind == "name":
            name = str(payload)
            if (tok := self.peek()) and tok[0] == "_":
                self.take()
                name += "_" + self.subscript()
            return sympy.Symbol(name)
        if kind == "const":
            return CONSTANTS[str(payload)]
        if kind == "(":
            value = self.expr()
            self.take(")")
            return value
        if kind == "|":
            self.abs_open += 1
            value = self.expr()
            self.take("|")
            self.abs_open -= 1
            return sympy.Abs(value)
        if kind == "func":
            return self.function(str(payload))
        if kind == "matrix":
            return payload
        raise Unparseable(f"unexpected {kind}")

    def subscript(self) -> str:
        kind, payload = self.take()
        if kind in ("num", "name"):
            return str(payload)
        if kind == "(":
            parts = []
            while (tok := self.take())[0] != ")":
                if tok[0] not in ("num", "name"):
                    raise Unparseable("complex subscript")
                parts.append(str(tok[1]))
            return "".join(parts)
        raise Unparseable("bad subscript")

    def function(self, name: str) -> sympy.Expr:
        if name in ("binomial", "root"):
            self.take("(")
            first = self.expr()
            self.take(",")
            second = self.expr()
            self.take(")")
            if name == "binomial":
                if not (first.is_Integer and abs(first) <= MAX_FACTORIAL):
                    raise Unparseable("binomial of a large value")
                return sympy.binomial(first, second)
            if first.is_number and second.is_Integer and second % 2:
                return sympy.real_root(first, second)  # \sqrt[3]{-8} is -2
            return sympy.root(first, second)
        exponent = None
        base = None
        if (tok := self.peek()) and tok[0] == "_" and name == "log":
            self.take()
            base = self.power() if self.peek() and self.peek()[0] == "(" else self.atom()
        if (tok := self.peek()) and tok[0] == "^":  # \sin^2 x
            self.take()
            exponent = self.atom()
        argument = self.power()
        value = FUNCTIONS[name](argument) if base is None else sympy.log(argument, base)
        return guarded_pow(value, exponent) if exponent is not None else value


def guarded_pow(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """base**exponent, refusing results too large to compute safely: a number of more than
    MAX_RESULT_DIGITS digits, a symbolic power of degree over MAX_SYMBOLIC_DEGREE (exponents
    multiply when powers nest), or a tower of variable exponents (x^{x^{x^{x}}})."""
    if isinstance(base, sympy.MatrixBase) or isinstance(exponent, sympy.MatrixBase):
        raise Unparseable("a power of a matrix")
    if base.is_number and exponent.is_number:
        try:
            size = abs(complex(exponent)) * math.log10(max(abs(complex(base)), 2.0))
        except (TypeError, ValueError, OverflowError) as exc:
            raise Unparseable("power too large to evaluate") from exc
        if size > MAX_RESULT_DIGITS:
            raise Unparseable("power too large to evaluate")
    elif exponent.is_number:
        try:
            inner = max((abs(complex(p.exp)) for p in base.atoms(sympy.Pow) if p.exp.is_number),
                        default=1.0)
            degree = abs(complex(exponent)) * max(inner, 1.0)
        except (TypeError, ValueError, OverflowError) as exc:
            raise Unparseable("symbolic power too large") from exc
        if abs(complex(exponent)) > 200 or degree > MAX_SYMBOLIC_DEGREE:
            raise Unparseable("symbolic power too large")
    elif any(not p.exp.is_number for p in exponent.atoms(sympy.Pow)):
        raise Unparseable("a tower of variable exponents")
    return base**exponent


def latex_to_sympy(latex: str) -> sympy.Expr:
    return _Parser(_tokens(_nodes(latex))).parse()


# ---------------------------------------------------------------- comparison

def to_sympy(value: Value) -> sympy.Expr | None:
    try:
        match value:
            case Number():
                return sympy.Rational(value.value.numerator, value.value.denominator)
            case Based():
                return sympy.Integer(int(value.digits, value.base))
            case Expr():
                return latex_to_sympy(value.latex)
            case Matrix():
                cells = [[to_sympy(cell) for cell in row] for row in value.rows]
                if any(c is None for row in cells for c in row):
                    return None
                return sympy.Matrix(cells)
    except (Unparseable, ValueError, TypeError, ZeroDivisionError, OverflowError,
            RecursionError, AttributeError):
        return None
    return None


def _close(x: sympy.Expr, y: sympy.Expr) -> bool | None:
    """Numeric comparison of two constants: True, False, or None when not finite."""
    vx, vy = sympy.N(x, 40), sympy.N(y, 40)
    if not (vx.is_finite and vy.is_finite):
        return None
    scale = max(abs(vx), abs(vy))
    return bool(abs(vx - vy) <= REL_TOL * scale) if scale else True


def _probe(diff: sympy.Expr, scale_of: sympy.Expr, symbols: list) -> bool | None:
    """Evaluate at random points: True if all tiny, False if one clearly differs."""
    rng = random.Random(1234)
    seen = 0
    for _ in range(PROBE_POINTS * 2):
        point = {s: sympy.Rational(rng.randint(-300, 300), rng.randint(7, 97)) for s in symbols}
        d = sympy.N(diff.subs(point), 30)
        s = sympy.N(scale_of.subs(point), 30)
        if not (d.is_finite and s.is_finite):
            continue
        if abs(d) > REL_TOL * max(abs(s), 1e-30) * 1e3:
            return False
        seen += 1
        if seen >= PROBE_POINTS:
            return True
    return None


def sympy_equal(x: sympy.Expr, y: sympy.Expr) -> bool:
    if x == y:
        return True
    if x.is_infinite or y.is_infinite:
        return False
    symbols = sorted(x.free_symbols | y.free_symbols, key=str)
    if not symbols:
        close = _close(x, y)
        if close is not None:
            return close
    else:
        probed = _probe(x - y, abs(x) + abs(y), symbols)
        if probed is not None:
            return probed
    return sympy.simplify(x - y) == 0


def _relations_equal(gold: Relation, answer: Relation) -> bool:
    flip = {">": "<", ">=": "<="}
    def oriented(r: Relation) -> tuple[str, sympy.Expr] | None:
        lhs, rhs = latex_to_sympy(r.lhs.latex), latex_to_sympy(r.rhs.latex)
        return (flip[r.op], rhs - lhs) if r.op in flip else (r.op, lhs - rhs)
    try:
        (op1, d1), (op2, d2) = oriented(gold), oriented(answer)
    except Unparseable:
        return False
    if op1 != op2:
        return False
    symbols = sorted(d1.free_symbols | d2.free_symbols, key=str)
    rng = random.Random(99)
    ratios = []
    for _ in range(PROBE_POINTS * 2):
        point = {s: sympy.Rational(rng.randint(-300, 300), rng.randint(7, 97)) for s in symbols}
        a, b = sympy.N(d1.subs(point), 30), sympy.N(d2.subs(point), 30)
        if b.is_finite and a.is_finite and b != 0:
            ratios.append(a / b)
        if len(ratios) >= PROBE_POINTS:
            break
    if not ratios or ratios[0] == 0 or (op1 != "=" and ratios[0] < 0):
        return False
    return all(abs(r - ratios[0]) <= REL_TOL * abs(ratios[0]) * 1e3 for r in ratios)


_INEQUALITIES = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge}


def _inequality_matches_interval(relation: Relation, interval: Seq) -> bool:
    """`-x > -1` against `(-\\infty, 1)`: the inequality's solution set in its one variable
    equals the interval, open and closed ends included."""
    if relation.op not in _INEQUALITIES or len(interval.items) != 2:
        return False
    try:
        lhs, rhs = latex_to_sympy(relation.lhs.latex), latex_to_sympy(relation.rhs.latex)
    except Unparseable:
        return False
    symbols = (lhs - rhs).free_symbols
    ends = [to_sympy(item) for item in interval.items]
    if len(symbols) != 1 or None in ends:
        return False
    solved = sympy.solve_univariate_inequality(
        _INEQUALITIES[relation.op](lhs, rhs), symbols.pop(), relational=False)
    return solved == sympy.Interval(*ends, left_open=interval.open == "(",
                                    right_open=interval.close == ")")


def _rounded_match(printed: Value, exact: sympy.Expr) -> bool:
    if not (isinstance(printed, Number) and printed.decimals is not None
            and printed.significant >= MIN_SIGNIFICANT_FOR_ROUNDING and exact.is_number):
        return False
    value = sympy.N(exact, 40)
    if not (value.is_real and value.is_finite):
        return False
    as_fraction = Fraction(str(value))
    return round_to(as_fraction, printed.decimals) == printed.value


_DECIMAL_LITERAL = re.compile(r"(?<![\d.])\d+\.(\d+)(?![\d.])")


def _printed_constant_match(printed: Value, exact: sympy.Expr) -> bool:
    """`x + 1.414i` against `x + \\sqrt{2}i`: an expression with one printed decimal equals
    the exact one when a value that rounds to that decimal (within half its last digit) makes
    the two identical at every point, the same value at every point."""
    if not isinstance(printed, Expr) or not exact.free_symbols:
        return False
    literals = list(_DECIMAL_LITERAL.finditer(printed.latex))
    if len(literals) != 1 or _DECIMAL_LITERAL.search(str(exact)):
        return False
    found = literals[0]
    digits = found.group(0).replace(".", "").lstrip("0")
    if len(digits) < MIN_SIGNIFICANT_FOR_ROUNDING:
        return False
    constant = sympy.Rational(found.group(0))
    placeholder = sympy.Dummy("printed")
    try:
        expr = latex_to_sympy(printed.latex).subs(constant, placeholder)
    except Unparseable:
        return False
    diff = sympy.expand(exact - expr)
    slope = diff.diff(placeholder)
    if placeholder not in diff.free_symbols or placeholder in slope.free_symbols:
        return False  # not linear in the printed constant
    half_unit = sympy.Rational(1, 2) / 10 ** len(found.group(1))
    rng = random.Random(7)
    solutions = []
    for _ in range(3):
        point = {s: sympy.Rational(rng.randint(-300, 300), rng.randint(7, 97))
                 for s in exact.free_symbols | expr.free_symbols if s != placeholder}
        a, b = sympy.N(slope.subs(point), 30), sympy.N(diff.subs(placeholder, 0).subs(point), 30)
        if a == 0 or not (a.is_finite and b.is_finite):
            return False
        solutions.append(sympy.N(-b / a, 30))
    first = solutions[0]
    return (all(abs(t - first) <= REL_TOL * max(abs(first), 1) * 1e3 for t in solutions)
            and abs(sympy.im(first)) <= REL_TOL and abs(sympy.re(first) - constant) <= half_unit)


def symbolic_scalar_equal(gold: Value, answer: Value) -> bool:
    fast = fast_scalar_equal(gold, answer)
    if fast is not None:
        return fast
    if isinstance(gold, Relation) and isinstance(answer, Relation):
        return _relations_equal(gold, answer)
    for relation, interval in ((gold, answer), (answer, gold)):
        if isinstance(relation, Relation) and isinstance(interval, Seq):
            return _inequality_matches_interval(relation, interval)
    x, y = to_sympy(gold), to_sympy(answer)
    if x is None or y is None:
        return False  # a failed parse never falls back to a number found inside it
    if isinstance(x, sympy.MatrixBase) or isinstance(y, sympy.MatrixBase):
        return (isinstance(x, sympy.MatrixBase) and isinstance(y, sympy.MatrixBase)
                and x.shape == y.shape and all(map(sympy_equal, x, y)))
    if _rounded_match(gold, y) or _rounded_match(answer, x):
        return True
    if isinstance(gold, Number) and gold.value.denominator == 1 and isinstance(answer, Number):
        return False
    return sympy_equal(x, y) or _printed_constant_match(answer, x) or _printed_constant_match(
        gold, y)


def decide(gold: Value, answer: Value) -> bool:
    """The full comparison (structure, then sympy at the leaves). Runs in a worker."""
    return bool(structural_equal(gold, answer, symbolic_scalar_equal))
