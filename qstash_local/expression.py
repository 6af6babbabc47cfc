"""A safe parser for ``Upstash-Retry-Delay`` expressions such as ``pow(2, retried) * 1000``.

The grammar is a small recursive descent (no ``eval``)::

    expr    := term (("+" | "-") term)*
    term    := unary (("*" | "/") unary)*
    unary   := ("+" | "-") unary | primary
    primary := NUMBER | "retried" | NAME "(" expr ("," expr)* ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from qstash_local.error import BadRequest

Evaluator = Callable[[float], float]
"""A compiled expression: the value for a given ``retried`` count."""

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_]\w*)|(\S))")
_FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    "pow": (2, lambda x, y: math.pow(x, y)),
    "exp": (1, math.exp),
    "sqrt": (1, math.sqrt),
    "abs": (1, abs),
    "floor": (1, lambda x: float(math.floor(x))),
    "ceil": (1, lambda x: float(math.ceil(x))),
    "round": (1, lambda x: float(round(x))),
    "min": (2, min),
    "max": (2, max),
}
_OPERATORS: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}
MAX_DELAY_MS = 86_400_000.0


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        for number, name, symbol in _TOKEN.findall(text):
            if number:
                tokens.append(("num", number))
            elif name:
                tokens.append(("name", name))
            elif symbol:
                if symbol not in "+-*/(),":
                    raise self.error(f"unexpected character {symbol!r}")
                tokens.append(("sym", symbol))
        return tokens

    def error(self, what: str) -> BadRequest:
        return BadRequest(
            f"invalid Upstash-Retry-Delay {self.text!r}: {what}; expected arithmetic (+ - * /) "
            f"on numbers and `retried` with {', '.join(sorted(_FUNCTIONS))}"
        )

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, symbol: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (symbol is not None and token != ("sym", symbol)):
            found = "end of expression" if token is None else repr(token[1])
            raise self.error(f"expected {symbol or 'a value'!r} but found {found}")
        self.pos += 1
        return token

    def parse(self) -> Evaluator:
        if not self.tokens:
            raise self.error("it is empty")
        node = self.expr()
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def binary(self, symbols: str, operand: Callable[[], Evaluator]) -> Evaluator:
        node = operand()
        while (token := self.peek()) is not None and token[0] == "sym" and token[1] in symbols:
            self.pos += 1
            node = _apply(_OPERATORS[token[1]], node, operand())
        return node

    def expr(self) -> Evaluator:
        return self.binary("+-", self.term)

    def term(self) -> Evaluator:
        return self.binary("*/", self.unary)

    def unary(self) -> Evaluator:
        token = self.peek()
        if token in (("sym", "-"), ("sym", "+")):
            self.pos += 1
            inner = self.unary()
            return (lambda r: -inner(r)) if token == ("sym", "-") else inner
        return self.primary()

    def primary(self) -> Evaluator:
        kind, value = self.take()
        if kind == "num":
            number = float(value)
            return lambda _r: number
        if kind == "name":
            return self.name(value)
        if value == "(":
            node = self.expr()
            self.take(")")
            return node
        raise self.error(f"unexpected {value!r}")

    def name(self, name: str) -> Evaluator:
        if name == "retried":
            return lambda r: r
        if name not in _FUNCTIONS:
            raise self.error(f"unknown name {name!r}")
        arity, function = _FUNCTIONS[name]
        self.take("(")
        args = [self.expr()]
        while self.peek() == ("sym", ","):
            self.pos += 1
            args.append(self.expr())
        self.take(")")
        if len(args) != arity:
            raise self.error(f"{name}() takes {arity} argument(s), got {len(args)}")
        return lambda r: function(*(arg(r) for arg in args))


def _apply(op: Callable[[float, float], float], left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda r: op(left(r), right(r))


def compile_expression(text: str) -> Evaluator:
    """Parse a retry-delay expression, raising BadRequest that names the bad part."""
    return _Parser(text).parse()


def delay_ms(evaluator: Evaluator, retried: int) -> float:
    """Evaluate an expression for ``retried`` and clamp it to [0 ms, 1 day].

    UNVERIFIED: QStash does not say what a negative, infinite or failing expression means;
    negative is taken as 0 (retry now) and anything unusable as the one-day ceiling.
    """
    try:
        value = float(evaluator(float(retried)))
    except (ArithmeticError, ValueError):
        return MAX_DELAY_MS
    if math.isnan(value):
        return MAX_DELAY_MS
    return min(MAX_DELAY_MS, max(0.0, value))
