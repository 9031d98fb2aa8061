"""SOQL: a tokenizer and recursive-descent parser producing a small AST; errors carry Salesforce's wording."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "NULL",
    "TRUE",
    "FALSE",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "GROUP",
    "HAVING",
    "INCLUDES",
    "EXCLUDES",
    "USING",
    "SCOPE",
    "WITH",
    "FOR",
    "TYPEOF",
    "ALL",
    "ROWS",
    "UPDATE",
    "VIEW",
    "REFERENCE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
}
DATE_LITERALS = {
    "TODAY",
    "YESTERDAY",
    "TOMORROW",
    "LAST_WEEK",
    "THIS_WEEK",
    "NEXT_WEEK",
    "LAST_MONTH",
    "THIS_MONTH",
    "NEXT_MONTH",
    "LAST_90_DAYS",
    "NEXT_90_DAYS",
    "THIS_YEAR",
    "LAST_YEAR",
    "NEXT_YEAR",
}
DATE_N_LITERALS = {
    "LAST_N_DAYS",
    "NEXT_N_DAYS",
    "LAST_N_WEEKS",
    "NEXT_N_WEEKS",
    "LAST_N_MONTHS",
    "NEXT_N_MONTHS",
    "LAST_N_YEARS",
    "NEXT_N_YEARS",
    "N_DAYS_AGO",
}


class SoqlError(Exception):
    """A query error as Salesforce reports it: errorCode plus message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Token:
    kind: str  # ident, string, number, date, datetime, op, punct, eof
    text: str
    pos: int
    value: Any = None


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})(?![\d:T])
  | (?P<number>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),.:])
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "_": "\\_",
    "%": "\\%",
}


def caret_message(query: str, pos: int, text: str) -> str:
    """Salesforce's error layout: the query, a caret under the column, 'ERROR at Row:R:Column:C', the text."""
    before = query[:pos]
    row = before.count("\n") + 1
    line_start = before.rfind("\n") + 1
    column = pos - line_start + 1
    line = query.split("\n")[row - 1]
    return f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{text}"


def tokenize(query: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN_RE.match(query, pos)
        if not m:
            bad = query[pos:].split()[0] if query[pos:].split() else query[pos]
            raise SoqlError("MALFORMED_QUERY", caret_message(query, pos, f"unexpected token: '{bad}'"))
        kind = m.lastgroup or ""
        text = m.group()
        if kind != "ws":
            tok = Token(kind, text, pos)
            if kind == "string":
                body = text[1:-1]
                tok.value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), body)
            elif kind == "number":
                tok.value = float(text) if any(c in text for c in ".eE") else int(text)
            out.append(tok)
        pos = m.end()
    out.append(Token("eof", "", len(query)))
    return out


# ------------------------------------------------------------------ AST


@dataclass
class FieldRef:
    path: list[str]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass
class Aggregate:
    func: str
    arg: FieldRef | None
    alias: str | None
    pos: int


@dataclass
class SubQuery:
    query: Query
    pos: int


@dataclass
class TypeOf:
    """TYPEOF rel WHEN Obj THEN fields ... [ELSE fields] END: per-type field lists of a polymorphic relationship."""

    relationship: str
    whens: list[tuple[str, list[FieldRef]]]
    otherwise: list[FieldRef]
    pos: int


@dataclass
class Literal:
    value: Any
    kind: str  # string, number, date, datetime, null, boolean, dateliteral
    pos: int
    n: int | None = None


@dataclass
class Comparison:
    field: FieldRef | Aggregate  # an Aggregate only in HAVING
    op: str  # = != < <= > >= IN NOT IN LIKE INCLUDES EXCLUDES
    value: Literal | list[Literal]


@dataclass
class BoolOp:
    op: str  # AND OR
    items: list[Any]


@dataclass
class Not:
    item: Any


@dataclass
class OrderItem:
    field: FieldRef
    desc: bool
    nulls_first: bool


@dataclass
class Query:
    select: list[FieldRef | Aggregate | SubQuery | TypeOf]
    sobject: str
    sobject_pos: int
    where: Any = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    group_by: list[FieldRef] = field(default_factory=list)
    text: str = ""
    all_rows: bool = False
    having: Any = None


class Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.in_having = False

    # -------------------------------------------------------------- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text.upper() in words

    def advance(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def error(self, tok: Token | None = None, text: str | None = None) -> SoqlError:
        tok = tok or self.tok
        if text is None:
            text = "unexpected token: <EOF>" if tok.kind == "eof" else f"unexpected token: {tok.text}"
        if tok is self.tokens[0]:
            # Nothing parsed yet: Salesforce answers the short form, without the query and caret
            # ("SELEKT Name FROM Account" -> "unexpected token: SELEKT", heroku-applink-nodejs
            # mappings/query-malformed-soql.json).
            return SoqlError("MALFORMED_QUERY", text)
        return SoqlError("MALFORMED_QUERY", caret_message(self.query, tok.pos, text))

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            raise self.error()
        return self.advance()

    def expect_punct(self, p: str) -> Token:
        if self.tok.kind != "punct" or self.tok.text != p:
            raise self.error()
        return self.advance()

    def ident(self) -> Token:
        if self.tok.kind != "ident":
            raise self.error()
        return self.advance()

    # -------------------------------------------------------------- grammar
    def parse(self) -> Query:
        q = self.query_rule()
        if self.tok.kind != "eof":
            raise self.error()
        return q

    def query_rule(self) -> Query:
        self.expect_kw("SELECT")
        select = self.select_list()
        self.expect_kw("FROM")
        obj = self.ident()
        name = obj.text
        # A child relationship may be qualified by its parent's name inside a subquery (FROM Account.Contacts).
        while self.tok.kind == "punct" and self.tok.text == ".":
            self.advance()
            name += "." + self.ident().text
        q = Query(select=select, sobject=name, sobject_pos=obj.pos, text=self.query)
        # An alias after the object name is legal SOQL (FROM Account a); it is accepted and ignored.
        if self.tok.kind == "ident" and self.tok.text.upper() not in KEYWORDS:
            self.advance()
        if self.is_kw("USING"):
            self.advance()
            self.expect_kw("SCOPE")
            self.ident()
        if self.is_kw("WHERE"):
            self.advance()
            q.where = self.or_expr()
        if self.is_kw("WITH"):
            raise self.error(text=f"unexpected token: {self.tok.text}")
        if self.is_kw("GROUP"):
            self.advance()
            self.expect_kw("BY")
            q.group_by.append(self.field_ref())
            while self.tok.kind == "punct" and self.tok.text == ",":
                self.advance()
                q.group_by.append(self.field_ref())
            if self.is_kw("HAVING"):
                self.advance()
                self.in_having = True
                q.having = self.or_expr()
                self.in_having = False
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            q.order = self.order_list()
        if self.is_kw("LIMIT"):
            self.advance()
            q.limit = self.integer()
        if self.is_kw("OFFSET"):
            self.advance()
            q.offset = self.integer()
        if self.is_kw("ALL"):
            self.advance()
            self.expect_kw("ROWS")
            q.all_rows = True
        if self.is_kw("FOR"):
            self.advance()
            if not self.is_kw("UPDATE", "VIEW", "REFERENCE"):
                raise self.error()
            self.advance()
        return q

    def order_list(self) -> list[OrderItem]:
        items = []
        while True:
            f = self.field_ref()
            desc = False
            if self.is_kw("ASC", "DESC"):
                desc = self.advance().text.upper() == "DESC"
            nulls_first = not desc  # SOQL's default: ASC NULLS FIRST, DESC NULLS LAST
            if self.is_kw("NULLS"):
                self.advance()
                if not self.is_kw("FIRST", "LAST"):
                    raise self.error()
                nulls_first = self.advance().text.upper() == "FIRST"
            items.append(OrderItem(f, desc, nulls_first))
            if not (self.tok.kind == "punct" and self.tok.text == ","):
                return items
            self.advance()

    def integer(self) -> int:
        t = self.tok
        if t.kind != "number" or not isinstance(t.value, int) or t.value < 0:
            raise self.error()
        self.advance()
        return int(t.value)

    def select_list(self) -> list[FieldRef | Aggregate | SubQuery | TypeOf]:
        items: list[FieldRef | Aggregate | SubQuery | TypeOf] = [self.select_item()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            items.append(self.select_item())
        return items

    def select_item(self) -> FieldRef | Aggregate | SubQuery | TypeOf:
        t = self.tok
        if t.kind == "punct" and t.text == "(":
            self.advance()
            sub = self.query_rule()
            self.expect_punct(")")
            return SubQuery(sub, t.pos)
        if self.is_kw("TYPEOF"):
            return self.typeof()
        if t.kind != "ident" or t.text.upper() in ("FROM",):
            raise self.error()
        nxt = self.tokens[self.i + 1]
        if nxt.kind == "punct" and nxt.text == "(":
            func = self.advance().text.upper()
            self.advance()
            if func not in ("COUNT", "COUNT_DISTINCT", "MIN", "MAX", "SUM", "AVG", "FIELDS"):
                raise SoqlError("MALFORMED_QUERY", caret_message(self.query, t.pos, f"Unknown function: {t.text}"))
            arg = None
            if func == "FIELDS":
                which = self.ident().text.upper()
                self.expect_punct(")")
                return Aggregate("FIELDS", FieldRef([which], t.pos), None, t.pos)
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                arg = self.field_ref()
            elif func != "COUNT":
                raise self.error()
            self.expect_punct(")")
            alias = None
            if self.tok.kind == "ident" and self.tok.text.upper() not in KEYWORDS:
                alias = self.advance().text
            return Aggregate(func, arg, alias, t.pos)
        return self.field_ref()

    def typeof(self) -> TypeOf:
        start = self.advance()
        rel = self.ident().text
        whens: list[tuple[str, list[FieldRef]]] = []
        otherwise: list[FieldRef] = []
        while self.is_kw("WHEN"):
            self.advance()
            obj = self.ident().text
            self.expect_kw("THEN")
            whens.append((obj, self.plain_fields()))
        if not whens:
            raise self.error()
        if self.is_kw("ELSE"):
            self.advance()
            otherwise = self.plain_fields()
        self.expect_kw("END")
        return TypeOf(rel, whens, otherwise, start.pos)

    def plain_fields(self) -> list[FieldRef]:
        items = [self.field_ref()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            items.append(self.field_ref())
        return items

    def field_ref(self) -> FieldRef:
        t = self.ident()
        path = [t.text]
        while self.tok.kind == "punct" and self.tok.text == ".":
            self.advance()
            path.append(self.ident().text)
        return FieldRef(path, t.pos)

    def or_expr(self) -> Any:
        return self.bool_chain("OR", self.and_expr)

    def and_expr(self) -> Any:
        return self.bool_chain("AND", self.not_expr)

    def bool_chain(self, op: str, operand: Callable[[], Any]) -> Any:
        """operand (op operand)*: one BoolOp over all of them, or the operand alone."""
        items = [operand()]
        while self.is_kw(op):
            self.advance()
            items.append(operand())
        return items[0] if len(items) == 1 else BoolOp(op, items)

    def not_expr(self) -> Any:
        if self.is_kw("NOT"):
            self.advance()
            return Not(self.not_expr())
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.advance()
            inner = self.or_expr()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        f: FieldRef | Aggregate
        nxt = self.tokens[min(self.i + 1, len(self.tokens) - 1)]
        if self.in_having and self.tok.kind == "ident" and nxt.kind == "punct" and nxt.text == "(":
            t = self.advance()
            func = t.text.upper()
            if func not in ("COUNT", "COUNT_DISTINCT", "MIN", "MAX", "SUM", "AVG"):
                raise SoqlError("MALFORMED_QUERY", caret_message(self.query, t.pos, f"Unknown function: {t.text}"))
            self.advance()
            arg = None if self.tok.kind == "punct" and self.tok.text == ")" else self.field_ref()
            if arg is None and func != "COUNT":
                raise self.error()
            self.expect_punct(")")
            f = Aggregate(func, arg, None, t.pos)
        else:
            f = self.field_ref()
        t = self.tok
        if t.kind == "op":
            self.advance()
            op = "!=" if t.text == "<>" else t.text
            return Comparison(f, op, self.literal())
        if self.is_kw("NOT"):
            self.advance()
            self.expect_kw("IN")
            return Comparison(f, "NOT IN", self.literal_list())
        if self.is_kw("IN"):
            self.advance()
            return Comparison(f, "IN", self.literal_list())
        if self.is_kw("LIKE"):
            self.advance()
            lit = self.literal()
            if lit.kind != "string":
                raise self.error(self.tokens[self.i - 1])
            return Comparison(f, "LIKE", lit)
        if self.is_kw("INCLUDES", "EXCLUDES"):
            op = self.advance().text.upper()
            return Comparison(f, op, self.literal_list())
        raise self.error()

    def literal_list(self) -> list[Literal]:
        self.expect_punct("(")
        if self.is_kw("SELECT"):
            raise SoqlError(
                "MALFORMED_QUERY",
                caret_message(self.query, self.tok.pos, "semi-join sub-selects are not supported by sforg"),
            )
        items = [self.literal()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            items.append(self.literal())
        self.expect_punct(")")
        return items

    def literal(self) -> Literal:
        t = self.tok
        if t.kind == "string":
            self.advance()
            return Literal(t.value, "string", t.pos)
        if t.kind == "number":
            self.advance()
            return Literal(t.value, "number", t.pos)
        if t.kind in ("date", "datetime"):
            self.advance()
            return Literal(t.text, t.kind, t.pos)
        if t.kind == "ident":
            up = t.text.upper()
            if up == "NULL":
                self.advance()
                return Literal(None, "null", t.pos)
            if up in ("TRUE", "FALSE"):
                self.advance()
                return Literal(up == "TRUE", "boolean", t.pos)
            if up in DATE_LITERALS:
                self.advance()
                return Literal(up, "dateliteral", t.pos)
            if up in DATE_N_LITERALS:
                self.advance()
                self.expect_punct(":")
                n = self.integer()
                return Literal(up, "dateliteral", t.pos, n)
        raise self.error()


def parse(query: str) -> Query:
    """Parse a SOQL statement; raises SoqlError(MALFORMED_QUERY) with Salesforce's layout."""
    if not query or not query.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>")
    return Parser(query).parse()
