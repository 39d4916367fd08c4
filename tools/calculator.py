"""Arithmetic by walking the syntax tree: numbers, operators and a few math functions, no eval.

Anything else (names, attributes, subscripts, lambdas, comprehensions, other calls) is refused
with a message naming what is allowed. Every argument is treated as hostile, so each operation
is bounded *before* it runs (a single big-integer operation holds the GIL and cannot be
interrupted): exponents up to ``MAX_EXPONENT`` and results up to ``MAX_DIGITS`` digits,
``round`` digits up to ``MAX_ROUND_DIGITS``, ``factorial`` up to ``MAX_FACTORIAL``, expressions
up to ``MAX_EXPRESSION_CHARS`` characters, ``MAX_DEPTH`` levels and ``MAX_NODES`` parts. On top,
evaluation stops after ``CPU_SECONDS`` of the thread's CPU time, and the ``calculator`` tool
runs in a worker process killed at its timeout (``tools.functions``).
"""

from __future__ import annotations

import ast
import math
import operator
import time
from collections.abc import Callable
from typing import Any

from domain.errors import Invalid

Number = int | float

MAX_EXPRESSION_CHARS = 1_000
MAX_EXPONENT = 1_000
MAX_DIGITS = 1_000
MAX_ROUND_DIGITS = MAX_DIGITS
MAX_FACTORIAL = 449  # 449! has 998 digits, the largest under MAX_DIGITS
MAX_DEPTH = 200
MAX_NODES = 1_000
CPU_SECONDS = 1.0
_MAX_BITS = int(MAX_DIGITS * math.log2(10)) + 1


def _log(x: Number, base: Number = math.e) -> float:
    return math.log(x, base)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    # round(1, -10**8) computes 10**100000000 while holding the GIL: bound ndigits first.
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise TypeError("the number of digits must be an integer")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        raise Invalid(f"round() to {ndigits} digits is out of range; the calculator rounds to "
                      f"between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS} digits")
    return round(x, ndigits)


def _factorial(n: Number) -> int:
    if not isinstance(n, int):
        raise TypeError("factorial() takes a whole number")
    if n > MAX_FACTORIAL:
        raise Invalid(f"factorial({n}) would have more than {MAX_DIGITS} digits; the "
                      f"calculator computes factorials up to factorial({MAX_FACTORIAL})")
    return math.factorial(n)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin,
    "acos": math.acos, "atan": math.atan, "atan2": math.atan2, "exp": math.exp, "log": _log,
    "log10": math.log10, "log2": math.log2, "abs": abs, "round": _round, "min": min,
    "max": max, "floor": math.floor, "ceil": math.ceil, "hypot": math.hypot,
    "degrees": math.degrees, "radians": math.radians, "factorial": _factorial,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos, ast.USub: operator.neg}

_REFUSED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access", ast.Subscript: "indexing", ast.Lambda: "a lambda",
    ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a generator",
    ast.Compare: "a comparison", ast.BoolOp: "a boolean operator", ast.IfExp: "a conditional",
    ast.NamedExpr: "an assignment", ast.Starred: "unpacking", ast.JoinedStr: "a string",
    ast.List: "a list", ast.Tuple: "a tuple", ast.Set: "a set", ast.Dict: "a dictionary",
    ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "a slice",
}
_TOO_DEEP = "the expression is nested too deeply; simplify it"


def evaluate(expression: str, cpu_seconds: float = CPU_SECONDS) -> Number:
    """The value of an arithmetic expression, or ``Invalid`` saying what is not allowed."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise Invalid(f"the expression is {len(expression)} characters long; the calculator "
                      f"takes up to {MAX_EXPRESSION_CHARS}")
    if not expression.strip():
        raise Invalid("the expression is empty; write one such as 2 * (3 + 4)")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        if "too many nested" in (error.msg or ""):
            raise Invalid(_TOO_DEEP) from None
        raise Invalid(f"{expression!r} is not a valid expression ({error.msg}); use numbers, "
                      f"+ - * / // % ** and parentheses") from None
    except (RecursionError, MemoryError):
        raise Invalid(_TOO_DEEP) from None
    _check_shape(tree.body)
    try:
        return _checked(_Evaluation(time.thread_time() + cpu_seconds).value(tree.body))
    except RecursionError:
        raise Invalid(_TOO_DEEP) from None
    except ZeroDivisionError:
        raise Invalid("division by zero; check the divisor") from None
    except OverflowError:
        raise Invalid("the result is too large to represent; use smaller numbers") from None


def format_number(value: Number) -> str:
    """A result as a person would write it: integers exactly, floats to 15 significant digits."""
    if isinstance(value, int):
        return str(value)
    return format(value, ".15g")


def _check_shape(root: ast.AST) -> None:
    """Refuse trees deeper than ``MAX_DEPTH`` or larger than ``MAX_NODES``, without recursing."""
    stack = [(root, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_DEPTH:
            raise Invalid(f"the expression is nested more than {MAX_DEPTH} levels deep; "
                          "simplify it")
        if nodes > MAX_NODES:
            raise Invalid(f"the expression has more than {MAX_NODES} parts; split it up")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class _Evaluation:
    """One walk of the tree, stopped once the thread has used its CPU budget."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def value(self, node: ast.AST) -> Number:
        if time.thread_time() > self.deadline:
            raise Invalid("the expression took too long to evaluate and was stopped; "
                          "simplify it")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise Invalid(f"{node.value!r} is not a number; the calculator works with "
                              "numbers")
            return _checked(node.value)
        if isinstance(node, ast.BinOp):
            return _checked(_binary(node.op, self.value(node.left), self.value(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _checked(_UNARY[type(node.op)](self.value(node.operand)))
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise Invalid(f"unknown name {node.id!r}; the calculator knows the constants "
                          f"{', '.join(CONSTANTS)} and the functions {', '.join(FUNCTIONS)}")
        if isinstance(node, ast.Call):
            return _checked(self.call(node))
        what = _REFUSED.get(type(node), type(node).__name__)
        if isinstance(node, ast.Attribute):
            what += f" ('.{node.attr}')"
        raise Invalid(f"{what} is not allowed in the calculator; use numbers, + - * / // % **, "
                      "parentheses and the functions " + ", ".join(FUNCTIONS))

    def call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise Invalid("only the calculator's own functions can be called: "
                          + ", ".join(FUNCTIONS))
        name = node.func.id
        function = FUNCTIONS.get(name)
        if function is None:
            raise Invalid(f"function {name!r} is not available; the calculator offers "
                          + ", ".join(FUNCTIONS))
        if node.keywords:
            raise Invalid(f"{name}() takes positional arguments only")
        arguments = [self.value(argument) for argument in node.args]
        try:
            result = function(*arguments)
        except (TypeError, ValueError) as error:
            raise Invalid(f"{name}({', '.join(format_number(a) for a in arguments)}) cannot be "
                          f"computed: {error}") from None
        return result  # type: ignore[no-any-return]


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Add):
        return left + right
    if isinstance(op, ast.Sub):
        return left - right
    if isinstance(op, ast.Mult):
        return left * right
    if isinstance(op, ast.Div):
        return left / right
    if isinstance(op, ast.FloorDiv):
        return left // right
    if isinstance(op, ast.Mod):
        return left % right
    if isinstance(op, ast.Pow):
        return _power(left, right)
    raise Invalid(f"the operator {type(op).__name__} is not supported; use + - * / // % **")


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise Invalid(f"the exponent {format_number(exponent)} is too large; the calculator "
                      f"allows exponents up to {MAX_EXPONENT}")
    if abs(base) > 1 and exponent > 0:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_DIGITS:
            raise Invalid(f"the result would have about {digits:.0f} digits; the calculator "
                          f"handles numbers up to {MAX_DIGITS} digits")
    if base == 0 and exponent < 0:
        raise ZeroDivisionError
    return base ** exponent


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise Invalid("the result is a complex number, which the calculator does not handle "
                      "(e.g. a fractional power of a negative number)")
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > _MAX_BITS:
            raise Invalid(f"the result has more than {MAX_DIGITS} digits; use smaller numbers")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid("the result is not a finite number; use smaller numbers")
        return value
    raise Invalid("the result is not a number")
