"""The calculator: right answers, and clear refusals of anything beyond arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import Invalid
from tools import ToolContext, ToolExecutor, default_registry
from tools.calculator import evaluate, format_number


@pytest.mark.parametrize(("expression", "expected"), [
    ("1 + 2", "3"),
    ("2 * (3 + 4)", "14"),
    ("7 / 2", "3.5"),
    ("7 // 2", "3"),
    ("-7 // 2", "-4"),
    ("7 % 3", "1"),
    ("2 ** 10", "1024"),
    ("-3 ** 2", "-9"),
    ("(-3) ** 2", "9"),
    ("2 ** -1", "0.5"),
    ("sqrt(16)", "4"),
    ("abs(-5.5)", "5.5"),
    ("round(3.14159, 2)", "3.14"),
    ("min(3, 1, 2) + max(3, 1, 2)", "4"),
    ("log(e)", "1"),
    ("log(8, 2)", "3"),
    ("log10(1000)", "3"),
    ("sin(pi / 2) + cos(0)", "2"),
    ("0.1 + 0.2", "0.3"),
    ("2 ** 100", "1267650600228229401496703205376"),
    ("10 / 4 * 2", "5"),
    ("+5 - -3", "8"),
    ("floor(2.7) + ceil(2.1)", "5"),
    ("1e3 + 1", "1001"),
    ("hypot(3, 4)", "5"),
    ("factorial(5)", "120"),
    ("round(1234.5, -2)", "1200"),
    ("round(1234, -1000)", "0"),
    ("(" * 150 + "1" + ")" * 150, "1"),
    ("+".join(["1"] * 150), "150"),
])
def test_it_answers_arithmetic(expression: str, expected: str) -> None:
    assert format_number(evaluate(expression)) == expected


@pytest.mark.parametrize(("expression", "says"), [
    ("().__class__", "attribute access ('.__class__') is not allowed"),
    ("(1).__class__.__bases__", "attribute access"),
    ("__import__('os')", "function '__import__' is not available"),
    ("import os", "is not a valid expression"),
    ("9**9**9", "the exponent 387420489 is too large"),
    ("10 ** 1000 * 10", "digits"),
    ("(10 ** 999) * (10 ** 999)", "more than 1000 digits"),
    ("x + 1", "unknown name 'x'"),
    ("open('/etc/passwd')", "function 'open' is not available"),
    ("[1, 2]", "a list is not allowed"),
    ("(1, 2)[0]", "indexing is not allowed"),
    ("lambda: 1", "a lambda is not allowed"),
    ("[x for x in (1, 2)]", "a comprehension is not allowed"),
    ("1 < 2", "a comparison is not allowed"),
    ("'a' * 3", "'a' is not a number"),
    ("True + 1", "True is not a number"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "sqrt(-1) cannot be computed"),
    ("exp(1000)", "too large"),
    ("1e308 * 10", "not a finite number"),
    ("(-8) ** (1 / 3)", "complex number"),
    ("round(x=1)", "positional arguments only"),
    ("", "the expression is empty"),
    ("1 +" * 400 + "1", "characters long"),
    ("round(1, -10**8)", "round() to -100000000 digits is out of range"),
    ("round(1.5, 0.5)", "must be an integer"),
    ("factorial(450)", "factorial(450) would have more than 1000 digits"),
    ("factorial(2.5)", "takes a whole number"),
    ("factorial(-1)", "not defined for negative values"),
    ("-" * 300 + "1", "nested more than 200 levels deep"),
])
def test_it_refuses_with_a_clear_error(expression: str, says: str) -> None:
    with pytest.raises(Invalid) as refused:
        evaluate(expression)
    assert says in refused.value.message


@given(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6), st.integers(1, 10**6))
def test_it_agrees_with_python_on_integers(a: int, b: int, c: int) -> None:
    assert evaluate(f"{a} + {b} * {c} - ({a} // {c}) % {c}") == a + b * c - (a // c) % c


@given(st.text(alphabet="0123456789+-*/%().e ", max_size=40))
def test_any_input_gives_a_number_or_a_clear_error(expression: str) -> None:
    try:
        assert isinstance(evaluate(expression), int | float)
    except Invalid as error:
        assert error.message


async def test_refusals_come_back_to_the_model_as_tool_errors(ctx: ToolContext) -> None:
    executor = ToolExecutor(default_registry(), allowed=["calculator"])
    answer = await executor.execute("calculator", {"expression": "2 * 21"}, ctx)
    refused = await executor.execute("calculator", {"expression": "().__class__"}, ctx)
    oversized = await executor.execute("calculator", {"expression": "9**9**9"}, ctx)
    freezing = await executor.execute("calculator", {"expression": "round(1, -10**8)"}, ctx)
    assert (answer.status, answer.result) == ("ok", "42")
    assert refused.status == "error" and "attribute access" in refused.result
    assert oversized.status == "error" and "exponent" in oversized.result
    assert freezing.status == "error" and "out of range" in freezing.result
