"""Integer expressions over hyperparameters: `3*hidden_size`, `(depth - 4) // 6`, `filters + 1`.

Layout templates (docs/families.md) write every dimension as one of these. A
tiny recursive-descent parser, never `eval`: integer literals, names,
`+ - * //`, unary minus and parentheses, nothing else. Parsing happens once,
when a family is loaded, so an unknown name or a stray character is reported
with the family file's line before any checkpoint is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Union

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*()]))")


class ExprError(ValueError):
    """An expression that does not parse or cannot be evaluated (message says where)."""


@dataclass(frozen=True)
class Num:
    value: int


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Neg:
    arg: "Node"


@dataclass(frozen=True)
class BinOp:
    op: str
    left: "Node"
    right: "Node"


Node = Union[Num, Name, Neg, BinOp]


@dataclass(frozen=True)
class Derived:
    """A hyperparameter default computed from the others (`proj_size: 2*hidden_size`)."""

    text: str

    def value(self, env: Mapping[str, int]) -> int:
        return evaluate(parse(self.text), env)

    def __str__(self) -> str:
        return self.text


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:].strip()[:10]!r} in {text!r} "
                            "(integer expressions use names, integers, + - * // and parentheses)")
        out.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ExprError(f"{self.text!r} ends too early")
        self.i += 1
        return tok

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = BinOp(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek() in ("*", "//"):
            op = self.take()
            node = BinOp(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Neg(self.unary())
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok == "(":
            node = self.expr()
            if self.take() != ")":
                raise ExprError(f"missing ')' in {self.text!r}")
            return node
        if tok.isdigit():
            return Num(int(tok))
        if tok[0].isalpha() or tok[0] == "_":
            return Name(tok)
        raise ExprError(f"unexpected {tok!r} in {self.text!r}")


def parse(text: str | int) -> Node:
    """Parse one integer expression (an int is a literal). Raises ExprError."""
    if isinstance(text, bool):
        raise ExprError(f"expected an integer expression, got {text!r}")
    if isinstance(text, int):
        return Num(text)
    if not isinstance(text, str) or not text.strip():
        raise ExprError(f"expected an integer expression, got {text!r}")
    p = _Parser(text)
    node = p.expr()
    if p.peek() is not None:
        raise ExprError(f"unexpected {p.peek()!r} in {text!r}")
    return node


def names(node: Node) -> set[str]:
    """Every name an expression uses."""
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Neg):
        return names(node.arg)
    if isinstance(node, BinOp):
        return names(node.left) | names(node.right)
    return set()


def evaluate(node: Node, env: Mapping[str, int]) -> int:
    """The integer value; ExprError for an unbound name or a division by zero."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Name):
        if node.name not in env or env[node.name] is None:
            raise ExprError(f"{node.name} is not known")
        value = env[node.name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExprError(f"{node.name}={value!r} is not an integer")
        return value
    if isinstance(node, Neg):
        return -evaluate(node.arg, env)
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    if node.op == "+":
        return a + b
    if node.op == "-":
        return a - b
    if node.op == "*":
        return a * b
    if b == 0:
        raise ExprError(f"division by zero in {render(node)}")
    return a // b


def render(node: Node) -> str:
    """Back to text (fully parenthesised where it matters)."""
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Neg):
        return f"-{render(node.arg)}"
    left, right = render(node.left), render(node.right)
    if isinstance(node.left, BinOp) and node.op in ("*", "//") and node.left.op in ("+", "-"):
        left = f"({left})"
    if isinstance(node.right, BinOp) and (node.op in ("*", "//", "-") or node.right.op in ("+", "-")):
        right = f"({right})"
    sep = "" if node.op in ("*", "//") else " "
    return f"{left}{sep}{node.op}{sep}{right}"


__all__ = ["Derived", "parse", "names", "evaluate", "render", "ExprError", "Node", "Num", "Name", "Neg", "BinOp"]
