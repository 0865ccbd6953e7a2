"""Keyframe schedules: `frame:(value)` strings -> one float per frame (spec v06-animation §2, §3.1).

A schedule is a comma-separated list of entries ``FRAME:(VALUE)``. VALUE is either a plain number
(``5``, ``-2``, ``.5``, ``0.65``), which is tweened linearly to the next key, or a numexpr expression
in ``t`` (the frame index), which is evaluated at every frame from its key up to the frame before the
next key. The tokenizer below reports character positions; expressions are checked against an
allow-list before numexpr ever sees them (numexpr compiles its input with Python's ``eval``), and
each expression is evaluated once over all the frames it covers.

This module is pure: it imports nothing of deforum but the errors. The settings pass what it needs as
arguments: the schedule field names (``names``) and the frame limit (``frame_limit``); the defaults below
are v0.6's fifteen schedule names and the settings' frame limit, kept equal to ``deforum.settings`` by its tests.

Differences from v0.6 are listed in docs/compat.md (schedules section).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numexpr
import numpy as np

from deforum.errors import ScheduleError, SettingsError

# The 15 schedule fields of DeforumAnimArgs, in v0.6 order (spec §1.1): the default ``names`` of
# parse_schedules. deforum.settings declares the fields and passes its own list; a test keeps the two equal.
SCHEDULE_FIELDS: tuple[str, ...] = (
    "angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
    "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma",
    "perspective_flip_fv", "noise_schedule", "strength_schedule", "contrast_schedule")

# Bounds that keep a settings file from costing unbounded time or memory. MAX_FRAMES is the default
# ``frame_limit``; deforum.settings passes its MAX_FRAMES_LIMIT (a test keeps the two equal).
MAX_FRAMES = 100_000
MAX_SCHEDULE_LENGTH = 40 * MAX_FRAMES  # one keyframe a frame ("12345:(-1.234567)", ...) for every frame allowed
MAX_EXPRESSION_LENGTH = 1_000
MAX_NESTING = 32  # parentheses inside one expression
MAX_EXPRESSION_HEIGHT = 100  # operations stacked on one another (numexpr recurses over the tree)
MAX_FRAME_DIGITS = 12

INT64_MAX = 2**63 - 1

# v0.6 decides "number or expression" with this test on the raw text between the parentheses
# (spec §2.2). `$` also matches before a final newline, as in v0.6.
_NUMBER = re.compile(r"^(?=.)([+-]?([0-9]*)(\.([0-9]+))?)$")


def is_number(text: str) -> bool:
    """True when v0.6 treats ``text`` as a plain number (tweened) rather than an expression (held)."""
    return _NUMBER.match(text) is not None


# ------------------------------------------------------------------------------------------------
# Expression language: tokens, parser, checks
# ------------------------------------------------------------------------------------------------

# numexpr 2.8 functions available to v0.6 (spec §2.4) with their number of arguments. `contains`
# needs strings, which are refused, so it is left out.
FUNCTIONS: dict[str, int] = {
    **dict.fromkeys(
        "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh "
        "exp expm1 log log10 log1p sqrt abs floor ceil real imag conj copy ones_like".split(), 1),
    "arctan2": 2,
    "fmod": 2,
    "complex": 2,
    "where": 3,
}
# One-argument reductions. Per frame, v0.6 reduced a single value, so they are the identity.
REDUCTIONS = ("sum", "prod", "min", "max")
# Functions that v0.6's numexpr applied to integers by converting them to float64 first.
_FLOAT_FOR_INTS = ("abs", "copy", "ones_like")

CONSTANTS: dict[str, float | bool] = {"pi": math.pi, "e": math.e, "True": True, "False": False}
# What messages list as allowed. The rest still works for v0.6 files but means nothing for a per-frame
# number: numexpr's complex-number and array helpers (real, imag, conj, complex, copy, ones_like), the
# one-value reductions (sum, prod, min, max: the identity per frame) and v0.6's accidental names i and
# max_frames (aliases of t and max_f).
_UNADVERTISED = ("real", "imag", "conj", "complex", "copy", "ones_like")
ADVERTISED_FUNCTIONS = tuple(name for name in FUNCTIONS if name not in _UNADVERTISED)
ADVERTISED_VARIABLES = ("t", "max_f")
# Frame variables: t is the frame index; i and max_frames are the names v0.6 leaked from its
# interpolation function (t/max_frames appears in old settings), max_f is the documented name.
FRAME_VARIABLES = ("t", "i", "max_f", "max_frames")

_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
_OPERATORS = ("**", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "<", ">", "&", "|", "~", "(", ")", ",")
_NUMBER_TOKEN = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_DIGITS = "0123456789"
_NAME_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HINTS = {
    "and": "use & instead of 'and'",
    "or": "use | instead of 'or'",
    "not": "use ~ instead of 'not'",
    "lambda": "only arithmetic is allowed",
    "round": "use floor(x+0.5)",
    "minimum": "use where(a<b, a, b)",
    "maximum": "use where(a>b, a, b)",
}


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "name", "op", "end"
    text: str
    pos: int  # 0-based index into the whole source text


@dataclass(frozen=True)
class Node:
    """One node of a checked expression. ``literal`` means no frame variable below it."""

    kind: str  # "num", "const", "var", "unary", "binary", "call"
    text: str  # operator, name or literal text
    pos: int
    args: tuple[Node, ...] = ()
    value: object = None  # the number for "num"/"const"
    literal: bool = True
    height: int = 1


class _Errors:
    """Builds ScheduleErrors that point into the original text."""

    def __init__(self, source: str, field: str | None):
        self.source = source
        self.field = field

    def __call__(self, message: str, pos: int) -> ScheduleError:
        return ScheduleError(message, field=self.field, text=self.source, position=pos)


def _tokenize(expr: str, offset: int, err: _Errors) -> list[_Token]:
    tokens: list[_Token] = []
    depth = 0
    k = 0
    n = len(expr)
    while k < n:
        c = expr[k]
        pos = offset + k
        if c.isspace():
            k += 1
            continue
        if c in _DIGITS or (c == "." and k + 1 < n and expr[k + 1] in _DIGITS):
            m = _NUMBER_TOKEN.match(expr, k)
            end = m.end()
            if end < n and (expr[end].isalnum() or expr[end] in "_.'\""):
                raise err(f"malformed number {expr[k:end + 1]!r}", pos)
            tokens.append(_Token("num", m.group(), pos))
            k = end
            continue
        if c.isalpha() or c == "_":
            m = _NAME_TOKEN.match(expr, k)
            if m is None:  # a non-ASCII letter
                raise err(f"character {c!r} is not allowed in an expression", pos)
            name = m.group()
            if "__" in name:
                raise err(f"name {name!r} is not allowed (double underscores are refused)", pos)
            tokens.append(_Token("name", name, pos))
            k = m.end()
            if k < n and expr[k] == ".":
                raise err(f"attribute access after {name!r} is not allowed", offset + k)
            continue
        if expr.startswith("//", k):
            raise err("'//' is not available in v0.6 expressions; use floor(a/b)", pos)
        op = next((o for o in _OPERATORS if expr.startswith(o, k)), None)
        if op is None:
            if c in "'\"":
                raise err("strings are not allowed in an expression", pos)
            if c in "[]{}":
                raise err(f"{c!r} is not allowed: only numbers, t, operators and functions", pos)
            if c == ".":
                raise err("attribute access is not allowed", pos)
            if c == "=":
                raise err("'=' is not allowed (did you mean '=='?)", pos)
            raise err(f"character {c!r} is not allowed in an expression", pos)
        if op == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise err(f"more than {MAX_NESTING} nested parentheses", pos)
        elif op == ")":
            depth -= 1
        tokens.append(_Token("op", op, pos))
        k += len(op)
    tokens.append(_Token("end", "", offset + n))
    return tokens


class _Parser:
    """Recursive descent over Python's precedence, restricted to what numexpr evaluates.

    comparison := bor [cmp bor]          (a chained comparison is refused, numexpr cannot do it)
    bor        := band ('|' band)*
    band       := arith ('&' arith)*
    arith      := term (('+'|'-') term)*
    term       := unary (('*'|'/'|'%') unary)*
    unary      := ('+'|'-'|'~') unary | power
    power      := primary ['**' unary]
    primary    := NUMBER | NAME | NAME '(' args ')' | '(' comparison ')'
    """

    def __init__(self, tokens: list[_Token], variables: tuple[str, ...], err: _Errors):
        self.tokens = tokens
        self.k = 0
        self.depth = 0
        self.variables = variables
        self.err = err

    def peek(self) -> _Token:
        return self.tokens[self.k]

    def take(self) -> _Token:
        tok = self.tokens[self.k]
        self.k += 1
        return tok

    def expect(self, text: str) -> _Token:
        tok = self.peek()
        if tok.text != text or tok.kind != "op":
            raise self.err(f"expected {text!r}, found {tok.text or 'the end of the expression'!r}", tok.pos)
        return self.take()

    def node(self, kind: str, text: str, pos: int, args: tuple[Node, ...]) -> Node:
        height = 1 + max(a.height for a in args)
        if height > MAX_EXPRESSION_HEIGHT:
            raise self.too_complex(pos)
        return Node(kind, text, pos, args, literal=all(a.literal for a in args), height=height)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.err("empty expression", self.peek().pos)
        tree = self.comparison()
        tok = self.peek()
        if tok.kind != "end":
            hint = _HINTS.get(tok.text)
            raise self.err(f"unexpected {tok.text!r}" + (f" ({hint})" if hint else ""), tok.pos)
        return tree

    def binary_level(self, operators: tuple[str, ...], operand) -> Node:
        left = operand()
        while self.peek().kind == "op" and self.peek().text in operators:
            tok = self.take()
            left = self.node("binary", tok.text, tok.pos, (left, operand()))
        return left

    def comparison(self) -> Node:
        left = self.bor()
        tok = self.peek()
        if tok.kind == "op" and tok.text in _COMPARISONS:
            self.take()
            left = self.node("binary", tok.text, tok.pos, (left, self.bor()))
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text in _COMPARISONS:
                raise self.err("chained comparison: write (a < b) & (b < c)", nxt.pos)
        return left

    def bor(self) -> Node:
        return self.binary_level(("|",), self.band)

    def band(self) -> Node:
        return self.binary_level(("&",), self.arith)

    def arith(self) -> Node:
        return self.binary_level(("+", "-"), self.term)

    def term(self) -> Node:
        return self.binary_level(("*", "/", "%"), self.unary)

    def too_complex(self, pos: int) -> ScheduleError:
        return self.err(f"expression too complex (more than {MAX_EXPRESSION_HEIGHT} nested operations)", pos)

    def unary(self) -> Node:
        # Every nesting level (parentheses, unary signs, powers) passes here: bound the recursion.
        tok = self.peek()
        self.depth += 1
        if self.depth > MAX_EXPRESSION_HEIGHT:
            raise self.too_complex(tok.pos)
        try:
            if tok.kind == "op" and tok.text in ("+", "-", "~"):
                self.take()
                return self.node("unary", tok.text, tok.pos, (self.unary(),))
            return self.power()
        finally:
            self.depth -= 1

    def power(self) -> Node:
        base = self.primary()
        tok = self.peek()
        if tok.kind == "op" and tok.text == "**":
            self.take()
            return self.node("binary", "**", tok.pos, (base, self.unary()))
        return base

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            return _number_node(tok, self.err)
        if tok.kind == "op" and tok.text == "(":
            inner = self.comparison()
            self.expect(")")
            return inner
        if tok.kind == "name":
            if self.peek().kind == "op" and self.peek().text == "(":
                return self.call(tok)
            return self.name(tok)
        if tok.kind == "end":
            raise self.err("the expression ends too early", tok.pos)
        raise self.err(f"unexpected {tok.text!r}", tok.pos)

    def name(self, tok: _Token) -> Node:
        name = tok.text
        if name in CONSTANTS:
            return Node("const", name, tok.pos, value=CONSTANTS[name])
        if name in self.variables:
            return Node("var", name, tok.pos, literal=False)
        if name in FUNCTIONS or name in REDUCTIONS:
            raise self.err(f"function {name!r} needs parentheses: {name}(...)", tok.pos)
        raise self.err(f"unknown name {name!r}; {self.allowed_names()}", tok.pos)

    def allowed_names(self) -> str:
        hint = _HINTS.get(self.tokens[self.k - 1].text)
        names = ", ".join((*(v for v in self.variables if v in ADVERTISED_VARIABLES), "pi", "e"))
        return (hint + "; " if hint else "") + f"allowed names: {names} and the functions {_function_list()}"

    def call(self, tok: _Token) -> Node:
        name = tok.text
        if name not in FUNCTIONS and name not in REDUCTIONS:
            hint = _HINTS.get(name)
            raise self.err(f"unknown function {name!r}" + (f" ({hint})" if hint else "")
                           + f"; allowed: {_function_list()}", tok.pos)
        self.expect("(")
        args: list[Node] = []
        if not (self.peek().kind == "op" and self.peek().text == ")"):
            args.append(self.comparison())
            while self.peek().kind == "op" and self.peek().text == ",":
                self.take()
                args.append(self.comparison())
        self.expect(")")
        wanted = 1 if name in REDUCTIONS else FUNCTIONS[name]
        if len(args) != wanted:
            hint = ""
            if name in ("min", "max") and len(args) == 2:
                hint = "; numexpr's min/max reduce one value, for two use where(a<b, a, b)"
            raise self.err(f"{name}() takes {wanted} argument{'s' * (wanted > 1)}, got {len(args)}{hint}",
                           tok.pos)
        return self.node("call", name, tok.pos, tuple(args))


def _function_list() -> str:
    """The functions a message offers: the ones that mean something for a per-frame number."""
    return ", ".join(ADVERTISED_FUNCTIONS)


def _number_node(tok: _Token, err: _Errors) -> Node:
    text = tok.text
    if any(c in text for c in ".eE"):
        value: int | float = float(text)
        if not math.isfinite(value):
            raise err(f"number {text} is too large", tok.pos)
    else:
        value = int(text)
        if value > INT64_MAX:
            raise err(f"integer {text} is too large (at most {INT64_MAX})", tok.pos)
    return Node("num", text, tok.pos, value=value)


# Constant folding guard -------------------------------------------------------------------------
# numexpr (and Python's compiler) compute sub-expressions made only of literals in Python, with
# unbounded integers: `10**10**10` would never finish. Fold them here first, bounded.

_NUMPY_FUNCTIONS = {
    "arcsinh": np.arcsinh, "arccosh": np.arccosh, "arctanh": np.arctanh, "arcsin": np.arcsin,
    "arccos": np.arccos, "arctan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "expm1": np.expm1, "log": np.log,
    "log10": np.log10, "log1p": np.log1p, "sqrt": np.sqrt, "abs": np.absolute, "floor": np.floor,
    "ceil": np.ceil, "real": np.real, "imag": np.imag, "conj": np.conj, "copy": np.copy,
    "ones_like": np.ones_like, "arctan2": np.arctan2, "fmod": np.fmod, "complex": complex,
}


def _fold(node: Node, err: _Errors):
    """Value of a literal-only node, computed with bounded integers (raises ScheduleError)."""
    if node.kind in ("num", "const"):
        return node.value
    values = [_fold(a, err) for a in node.args]
    try:
        with np.errstate(all="ignore"):
            if node.kind == "unary":
                (a,) = values
                value = {"-": lambda: -a, "+": lambda: +a, "~": lambda: ~a}[node.text]()
            elif node.kind == "call":
                if node.text in REDUCTIONS:
                    value = values[0]
                elif node.text == "where":
                    value = values[1] if values[0] else values[2]
                else:
                    value = _NUMPY_FUNCTIONS[node.text](*values)
            else:
                a, b = values
                if node.text == "**":
                    _check_power(a, b, node, err)
                value = _BINARY[node.text](a, b)
    except ScheduleError:
        raise
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise err(f"cannot compute {node.text!r} here: {exc}", node.pos) from None
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and abs(
            int(value)) > INT64_MAX:
        raise err("integer result is too large (beyond 64-bit integers)", node.pos)
    return value


def _check_power(base, exponent, node: Node, err: _Errors) -> None:
    integers = (int, np.integer)
    if isinstance(base, integers) and isinstance(exponent, integers) and exponent > 0 and abs(base) > 1:
        if int(exponent) * math.log2(abs(int(base))) > 63:
            raise err("integer power is too large (beyond 64-bit integers)", node.pos)


_BINARY = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
    "%": lambda a, b: a % b, "**": lambda a, b: a**b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b, "&": lambda a, b: a & b, "|": lambda a, b: a | b,
}


def _guard_constants(node: Node, err: _Errors) -> None:
    if node.literal:
        _fold(node, err)
        return
    for arg in node.args:
        _guard_constants(arg, err)


@lru_cache(maxsize=256)
def _checked(expr: str, variables: tuple[str, ...], source: str, offset: int, field: str | None) -> Node:
    err = _Errors(source, field)
    if len(expr) > MAX_EXPRESSION_LENGTH:
        raise err(f"expression longer than {MAX_EXPRESSION_LENGTH} characters", offset)
    tree = _Parser(_tokenize(expr, offset, err), variables, err).parse()
    _guard_constants(tree, err)
    return tree


def check_expression(expr: str, variables: tuple[str, ...] = ("t",), *, field: str | None = None,
                     source: str | None = None, offset: int = 0) -> Node:
    """Tokenize, parse and check an expression against the allow-list; return its tree.

    ``source``/``offset`` place the expression inside a longer text so that error positions point
    into that text. Nothing is evaluated except bounded constant arithmetic.
    """
    return _checked(expr, tuple(variables), expr if source is None else source, offset, field)


# ------------------------------------------------------------------------------------------------
# Evaluation with numexpr
# ------------------------------------------------------------------------------------------------


def _int_mod_is_floored() -> bool:
    # numexpr >= 2.13 computes integer % with Python's sign rule; v0.6 (numexpr 2.8) used C's.
    a = np.array([-7], dtype=np.int64)
    return int(numexpr.evaluate("a % 5", local_dict={"a": a}, global_dict={})[0]) == 3


_INT_MOD_FLOORED = _int_mod_is_floored()


class _Emitter:
    """Writes a checked tree as numexpr text; parts that need v0.6 semantics are computed first."""

    def __init__(self, variables: dict[str, np.ndarray]):
        self.env = dict(variables)

    def run(self, node: Node) -> np.ndarray:
        return numexpr.evaluate(self.text(node), local_dict=self.env, global_dict={})

    def bind(self, value: np.ndarray) -> str:
        name = f"_v{len(self.env)}"
        self.env[name] = value
        return name

    def text(self, node: Node) -> str:
        if node.kind == "num":
            return repr(node.value)
        if node.kind == "const":
            return repr(node.value)
        if node.kind == "var":
            return "max_f" if node.text == "max_frames" else ("t" if node.text == "i" else node.text)
        args = node.args
        if node.kind == "unary":
            return f"({node.text}{self.text(args[0])})"
        if node.kind == "binary":
            if node.text == "%" and _INT_MOD_FLOORED and not node.literal:
                return self.c_modulo(args[0], args[1])
            return f"({self.text(args[0])} {node.text} {self.text(args[1])})"
        if node.text in REDUCTIONS:
            return f"({self.text(args[0])})"
        if node.text in _FLOAT_FOR_INTS and not node.literal:
            value = self.run(args[0])
            if value.dtype.kind in "biu":
                value = value.astype(np.float64)
            return f"{node.text}({self.bind(value)})"
        return f"{node.text}({', '.join(self.text(a) for a in args)})"

    def c_modulo(self, left: Node, right: Node) -> str:
        a, b = self.run(left), self.run(right)
        if a.dtype.kind in "biu" and b.dtype.kind in "biu" and not (a.dtype.kind == b.dtype.kind == "b"):
            dtype = np.result_type(a.dtype if a.dtype.kind != "b" else np.int32,
                                   b.dtype if b.dtype.kind != "b" else np.int32)
            a, b = a.astype(dtype), b.astype(dtype)
            with np.errstate(divide="ignore", invalid="ignore"):
                return self.bind(np.where(b == 0, 0, np.fmod(a, np.where(b == 0, 1, b))).astype(dtype))
        return f"({self.bind(a)} % {self.bind(b)})"


def evaluate_expression(expr: str, t, *, max_frames: int | None = None, field: str | None = None,
                        source: str | None = None, offset: int = 0,
                        variables: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Evaluate ``expr`` for every frame index in ``t`` at once; float64 array shaped like ``t``.

    The names are ``t`` (and its v0.6 alias ``i``), ``max_f``/``max_frames`` when ``max_frames`` is
    given, ``pi``, ``e``, ``True``, ``False``, the numexpr 2.8 functions, and the names of ``variables``
    (per-frame arrays shaped like ``t``, e.g. an audio envelope ``x``). Integer arithmetic is int64 with
    v0.6's rules (C-style ``%``). A value that is not a finite real number is an error.
    """
    source = expr if source is None else source
    err = _Errors(source, field)
    extra = dict(variables or {})
    names = (FRAME_VARIABLES if max_frames is not None else ("t", "i")) + tuple(extra)
    tree = check_expression(expr, names, field=field, source=source, offset=offset)
    frames = np.asarray(t, dtype=np.int64)
    variables = {"t": frames, **{name: np.asarray(value, dtype=np.float64) for name, value in extra.items()}}
    if max_frames is not None:
        variables["max_f"] = np.asarray(max_frames, dtype=np.int64)
    try:
        with np.errstate(all="ignore"):
            result = _Emitter(variables).run(tree)
    except Exception as exc:  # numexpr reports problems with many exception types
        raise err(f"numexpr cannot evaluate this expression: {exc}", offset) from None
    if result.dtype.kind == "c":
        raise err("the expression gives a complex number; use real(...) or abs(...)", offset)
    if result.dtype.kind not in "biuf":
        raise err(f"the expression gives a {result.dtype} value, not a number", offset)
    values = np.broadcast_to(result.astype(np.float64), frames.shape).copy()
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad.ravel()))
        frame = int(frames.ravel()[first])
        raise err(f"the expression is {values.ravel()[first]} at t={frame} (not a finite number)", offset)
    return values


# ------------------------------------------------------------------------------------------------
# Schedule strings
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyframe:
    """One ``FRAME:(VALUE)`` entry. ``position`` is where VALUE starts in the schedule text.

    ``frame_expr``: the frame given as a quoted expression of ``max_f`` (A1111 Deforum's ``"max_f-1":(...)``);
    ``frame`` is then None until ``parse_schedule`` knows the run's length (``frame_of``).
    """

    frame: int | None
    value: str
    position: int
    frame_position: int
    frame_expr: str | None = None

    @property
    def is_number(self) -> bool:
        return is_number(self.value)


def parse_keyframes(text: str, *, field: str | None = None) -> list[Keyframe]:
    """Split a schedule string into its entries, in the order written (duplicates kept).

    Grammar (whitespace allowed between any two parts):
        schedule := entry (',' entry)* [',']
        entry    := FRAME ':' '(' VALUE ')'       VALUE: any text with balanced parentheses
        FRAME    := DIGITS | '"' EXPR '"' | "'" EXPR "'"   EXPR: an expression of max_f (A1111's keys)
    """
    if not isinstance(text, str):
        raise ScheduleError(f"a schedule must be a string like \"0:(1.0)\", got {text!r}", field=field)
    err = _Errors(text, field)
    if len(text) > MAX_SCHEDULE_LENGTH:
        raise err(f"schedule longer than {MAX_SCHEDULE_LENGTH} characters", MAX_SCHEDULE_LENGTH)
    n = len(text)

    def skip_space(k: int) -> int:
        while k < n and text[k].isspace():
            k += 1
        return k

    entries: list[Keyframe] = []
    k = skip_space(0)
    if k == n:
        raise err('empty schedule; write at least one entry such as "0:(0)"', 0)
    while True:
        frame_pos = k
        frame: int | None = None
        frame_expr: str | None = None
        if k < n and text[k] in "\"'":
            close = text.find(text[k], k + 1)
            if close < 0:
                raise err(f"this {text[k]} is never closed", k)
            frame_expr = text[k + 1:close]
            check_expression(frame_expr, ("max_f", "max_frames"), field=field, source=text, offset=k + 1)
            k = close + 1
            shown = text[frame_pos:k]
        else:
            if k < n and text[k] in "+-":
                raise err("a frame number cannot have a sign", k)
            start = k
            while k < n and text[k] in _DIGITS:
                k += 1
            if k == start:
                found = repr(text[k]) if k < n else "the end"
                raise err(f'expected a frame number (as in "10:(0.5)"), found {found}', k)
            if k < n and text[k] == ".":
                raise err("a frame number must be a whole number", start)
            digits = text[start:k].lstrip("0") or "0"
            if len(digits) > MAX_FRAME_DIGITS:
                raise err(f"frame number {text[start:k]} is too large", start)
            frame = int(digits)
            shown = str(frame)
        k = skip_space(k)
        if k >= n or text[k] != ":":
            raise err(f"expected ':' after frame number {shown}", k)
        k = skip_space(k + 1)
        if k >= n or text[k] != "(":
            raise err(f"expected '(' after '{shown}:' (values go in parentheses)", k)
        open_pos = k
        depth = 0
        while True:
            if k >= n:
                raise err("this '(' is never closed", open_pos)
            if text[k] == "(":
                depth += 1
            elif text[k] == ")":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        entries.append(Keyframe(frame, text[open_pos + 1:k], open_pos + 1, frame_pos, frame_expr))
        k = skip_space(k + 1)
        if k == n:
            return entries
        if text[k] != ",":
            if text[k] in _DIGITS:
                raise err("missing ',' between entries", k)
            raise err(f"unexpected {text[k]!r} after an entry; entries are separated by ','", k)
        k = skip_space(k + 1)
        if k == n:  # a trailing comma is fine
            return entries


def frame_of(key: Keyframe, max_frames: int, *, field: str | None = None, text: str = "") -> int:
    """The frame of ``key``: its number, or its quoted ``max_f`` expression evaluated for this run (truncated
    to a whole frame, as A1111 Deforum does); a negative or non-finite frame is a ScheduleError."""
    if key.frame_expr is None:
        return int(key.frame)
    value = float(evaluate_expression(key.frame_expr, np.array(0), max_frames=max_frames, field=field,
                                      source=text or None, offset=key.frame_position + 1))
    if not math.isfinite(value) or value < 0 or value > 10**MAX_FRAME_DIGITS:
        raise _Errors(text, field)(f"frame {key.frame_expr!r} is {value:g} for max_f={max_frames}; a frame must "
                                   "be a whole number >= 0", key.frame_position)
    return int(value)


def _keyframe_value(key: Keyframe, frames: np.ndarray, max_frames: int, err: _Errors,
                    field: str | None, text: str, variables: Mapping[str, float] | None = None) -> np.ndarray:
    """Values of one key over ``frames`` (a number is the same everywhere)."""
    if key.is_number:
        try:
            value = float(key.value)
        except ValueError:
            raise err(f"{key.value!r} is not a number", key.position) from None
        if not math.isfinite(value):
            raise err(f"{key.value!r} is not a finite number", key.position)
        return np.full(frames.shape, value)
    return evaluate_expression(key.value, frames, max_frames=max_frames, field=field, source=text,
                               offset=key.position, variables=variables)


def parse_schedule(text: str, max_frames: int, *, field: str | None = None,
                   frame_limit: int = MAX_FRAMES, variables: Mapping[str, float] | None = None) -> np.ndarray:
    """The per-frame values of a schedule string: float64 array of length ``max_frames``.

    v0.6 rules (spec §2.3): a number key is tweened linearly to the next key; an expression key is
    evaluated with ``t`` = frame index at every frame up to the next key (and to the end after the
    last key); number -> expression ramps to the expression's value at its own key; a later
    duplicate key wins; keys >= max_frames are ignored. Fixed: frames before the first key hold the
    first key's value (v0.6 required key 0), and when every key is >= max_frames the first key's
    value is used for all frames. ``max_frames`` must be a whole number from 1 to ``frame_limit``.
    A frame may be a quoted expression of ``max_f`` (``"max_f-1":(0)``, A1111 Deforum's keys);
    ``variables`` are extra names the values may use (the seed ``s`` of ``seed_schedule``).
    """
    _check_max_frames(max_frames, frame_limit)
    err = _Errors(text if isinstance(text, str) else "", field)
    latest: dict[int, Keyframe] = {}
    for key in parse_keyframes(text, field=field):
        latest[frame_of(key, max_frames, field=field, text=text)] = key
    keys = sorted(latest)
    inside = [k for k in keys if k < max_frames]
    if not inside:
        first = latest[keys[0]]
        value = _keyframe_value(first, np.array(keys[0]), max_frames, err, field, text, variables)
        return np.full(max_frames, float(value))

    values = np.full(max_frames, np.nan)
    for index, frame in enumerate(inside):
        key = latest[frame]
        if key.is_number:
            values[frame] = _keyframe_value(key, np.array(frame), max_frames, err, field, text, variables)
        else:
            end = inside[index + 1] if index + 1 < len(inside) else max_frames
            frames = np.arange(frame, end, dtype=np.int64)
            values[frame:end] = _keyframe_value(key, frames, max_frames, err, field, text, variables)
    defined = np.flatnonzero(~np.isnan(values))
    if len(defined) == max_frames:
        return values
    return np.interp(np.arange(max_frames, dtype=np.float64), defined.astype(np.float64), values[defined])


def _check_max_frames(max_frames: int, frame_limit: int) -> None:
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or not (
            1 <= max_frames <= frame_limit):
        raise SettingsError(f"max_frames must be a whole number from 1 to {frame_limit}, got {max_frames!r}")


def parse_schedules(anim_args: Mapping[str, object] | object, max_frames: int, *,
                    names: Iterable[str] = SCHEDULE_FIELDS,
                    frame_limit: int = MAX_FRAMES) -> dict[str, np.ndarray]:
    """Parse the schedule fields ``names`` (v0.6's 15 by default); report every bad one at once.

    ``anim_args`` is a mapping (or a namespace such as v0.6's ``anim_args``). Raises the field's
    ScheduleError when one field is bad, or one ScheduleError listing all of them; either way the
    exception's ``errors`` attribute holds the individual errors.
    """
    _check_max_frames(max_frames, frame_limit)
    values = anim_args if isinstance(anim_args, Mapping) else vars(anim_args)
    series: dict[str, np.ndarray] = {}
    errors: list[ScheduleError] = []
    for name in names:
        if name not in values:
            errors.append(ScheduleError("missing schedule field", field=name))
            continue
        try:
            series[name] = parse_schedule(values[name], max_frames, field=name, frame_limit=frame_limit)
        except ScheduleError as exc:
            errors.append(exc)
    if len(errors) == 1:
        errors[0].errors = list(errors)
        raise errors[0]
    if errors:
        listing = "\n".join(f"- {exc}" for exc in errors)
        combined = ScheduleError(f"{len(errors)} schedules have errors:\n{listing}")
        combined.errors = errors
        raise combined
    return series


# ------------------------------------------------------------------------------------------------
# Prompt schedule
# ------------------------------------------------------------------------------------------------

_FRAME_KEY = re.compile(r"\s*\d+\s*")


def _prompt_key(key: object) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise ScheduleError(f"prompt key {key!r} is not a frame number", field="animation_prompts")
    if isinstance(key, (int, np.integer)):
        frame = int(key)
    elif isinstance(key, str) and _FRAME_KEY.fullmatch(key):
        frame = int(key)
    elif isinstance(key, float) and key.is_integer():
        frame = int(key)
    else:
        raise ScheduleError(f"prompt key {key!r} is not a whole frame number (such as 0 or \"20\")",
                            field="animation_prompts")
    if frame < 0:
        raise ScheduleError(f"prompt key {key!r} is negative; frames start at 0", field="animation_prompts")
    return frame


def prompt_schedule(animation_prompts: Mapping[object, str], max_frames: int, *,
                    frame_limit: int = MAX_FRAMES) -> list[str]:
    """The prompt of every frame: the prompt of the largest key <= frame (spec §3.1).

    Keys may be ints or strings of digits (settings JSON). Frames before the first key use the first
    key's prompt; keys >= max_frames are ignored unless no key is smaller, in which case the
    smallest key's prompt is used for every frame.
    """
    _check_max_frames(max_frames, frame_limit)
    if not isinstance(animation_prompts, Mapping) or not animation_prompts:
        raise ScheduleError("animation_prompts must be a non-empty mapping of frame -> prompt, got "
                            f"{animation_prompts!r}", field="animation_prompts")
    prompts: dict[int, str] = {}
    for key, prompt in animation_prompts.items():
        frame = _prompt_key(key)
        if not isinstance(prompt, str):
            raise ScheduleError(f"prompt at key {key!r} must be a string, got {prompt!r}",
                                field="animation_prompts")
        prompts[frame] = prompt
    keys = sorted(prompts)
    inside = [k for k in keys if k < max_frames] or keys[:1]
    result: list[str] = []
    current = 0
    for frame in range(max_frames):
        while current + 1 < len(inside) and inside[current + 1] <= frame:
            current += 1
        result.append(prompts[inside[current]])
    return result
