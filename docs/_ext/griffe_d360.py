"""A griffe extension for the API reference (mkdocs.yml loads it into mkdocstrings).

The docstrings are written to read well in the source and in ``help()``, with a few reST
habits that Markdown does not know. Before mkdocstrings renders them, this turns:

- the roles ``:class:`~d360calling.Client```, ``:meth:`aclose```... into links to the
  object's entry when the reference has one (an optional cross-reference: a target without
  an entry, e.g. ``aiohttp.ClientSession``, stays code and is not an error);
- a paragraph ending in ``::`` (which introduces an indented literal block) into one
  ending in ``:``;
- ``>>>`` doctest blocks into fenced ``pycon`` blocks, without ``# doctest:`` flags;
- reST simple tables (``====  ====`` borders) into Markdown tables; a line with a blank
  cell continues the row above (so a row whose every cell wraps onto a next line that
  fills every cell cannot be told from two rows).

The entries of a class docstring's ``Attributes:`` section become the docstrings of the
attributes they name, so each field is listed once, with its type, default and description.

It also gives each attrs class (``@attrs.frozen``, ``@attrs.define``...) the constructor
attrs writes for it, so the reference shows its signature (the fields, their defaults, and
``*`` for ``kw_only=True``); and it gives ``Client``'s blocking methods, which the class makes with
``connect_call = _blocking(AsyncClient.connect_call)``, an entry of their own: static
analysis sees an attribute there, but each is the AsyncClient method's blocking twin, with
its parameters and docstring (``functools.wraps``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from griffe import (
    Alias,
    Attribute,
    Class,
    Docstring,
    DocstringSectionAttributes,
    Expr,
    ExprCall,
    ExprKeyword,
    Extension,
    Function,
    GriffeLoader,
    Module,
    Object,
    Parameter,
    ParameterKind,
    Parameters,
)

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const):`(~?)([^`<>]+)`")
_BORDER = re.compile(r"^( *)=+( +=+)+ *$")
_DOCTEST_FLAG = re.compile(r"\s*# doctest:.*$")
_SYNC_METHOD = re.compile(r"^_blocking\(AsyncClient\.(\w+)\)$")


class D360Docstrings(Extension):
    """Markdown for the reST habits of d360calling's docstrings, and Client's methods."""

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "d360calling":
            return
        _add_blocking_methods(pkg)
        objects = list(_objects(pkg))
        classes = [obj for obj in objects if isinstance(obj, Class)]
        own_fields = {cls.path: _attrs_fields(cls) for cls in classes}
        for cls in classes:
            _add_attrs_init(cls, own_fields)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = to_markdown(obj.docstring.value, obj)
        for obj in objects:
            if isinstance(obj, Class):
                _document_attributes(obj)


def _objects(root: Object) -> Iterator[Object]:
    """Every object defined in ``root`` (not the names it imports), ``root`` included."""
    stack: list[Object] = [root]
    while stack:
        obj = stack.pop()
        yield obj
        stack.extend(member for member in obj.members.values() if isinstance(member, Object))


def _add_blocking_methods(pkg: Module) -> None:
    module = pkg.members.get("_sync_client")
    async_module = pkg.members.get("_async_client")
    if not isinstance(module, Module) or not isinstance(async_module, Module):
        return
    client, async_client = module.members.get("Client"), async_module.members.get("AsyncClient")
    if not isinstance(client, Class) or not isinstance(async_client, Class):
        return
    for name, member in list(client.members.items()):
        match = _SYNC_METHOD.match(str(getattr(member, "value", "")))
        source = async_client.members.get(match.group(1)) if match else None
        if not isinstance(source, Function):
            continue
        method = Function(
            name,
            lineno=member.lineno,
            endlineno=member.endlineno,
            parameters=Parameters(
                *(
                    Parameter(
                        p.name,
                        annotation=p.annotation,
                        kind=p.kind,
                        default=p.default,
                        docstring=p.docstring,
                    )
                    for p in source.parameters
                )
            ),
            returns=source.returns,
        )
        method.labels = source.labels - {"async"}
        if source.docstring is not None:
            method.docstring = Docstring(
                source.docstring.value,
                lineno=source.docstring.lineno,
                endlineno=source.docstring.endlineno,
                parent=method,
                parser=source.docstring.parser,
                parser_options=source.docstring.parser_options,
            )
        client.set_member(name, method)


_ATTRS_DECORATOR = re.compile(r"^attrs?\.(frozen|define|mutable|s|attrs)$")
_ATTRS_FIELD = re.compile(r"^attrs?\.(field|ib)$")


def _attrs_options(cls: Class) -> dict[str, str] | None:
    """The keywords of ``cls``'s attrs class decorator (``{}`` for a bare one), or ``None``."""
    for decorator in cls.decorators:
        value = decorator.value
        function = value.function if isinstance(value, ExprCall) else value
        if not _ATTRS_DECORATOR.match(str(function)):
            continue
        if not isinstance(value, ExprCall):
            return {}
        return {a.name: str(a.value) for a in value.arguments if isinstance(a, ExprKeyword)}
    return None


def _attrs_fields(cls: Class) -> list[Parameter]:
    """The ``__init__`` parameters attrs makes of ``cls``'s own fields, in order."""
    options = _attrs_options(cls)
    if options is None:
        return []
    kind = (
        ParameterKind.keyword_only
        if options.get("kw_only") == "True"
        else ParameterKind.positional_or_keyword
    )
    fields: list[Parameter] = []
    attributes = [m for m in cls.members.values() if isinstance(m, Attribute)]
    for attribute in sorted(attributes, key=lambda a: a.lineno or 0):
        annotation = attribute.annotation
        if annotation is None or "instance-attribute" not in attribute.labels:
            continue  # a ClassVar (griffe labels it a class attribute only), not a field
        default: str | Expr | None = attribute.value
        if isinstance(default, ExprCall) and _ATTRS_FIELD.match(str(default.function)):
            keywords = {a.name: a.value for a in default.arguments if isinstance(a, ExprKeyword)}
            if str(keywords.get("init", "True")) == "False":
                continue
            if "default" in keywords:
                default = keywords["default"]
            elif "factory" in keywords:
                default = f"{keywords['factory']}()"
            else:
                default = None
        fields.append(
            Parameter(attribute.name.lstrip("_"), annotation=annotation, kind=kind, default=default)
        )
        # The entry shows the field's default, not the attrs.field(...) call that makes it.
        attribute.value = default
        attribute.labels.discard("class-attribute")
    return fields


def _add_attrs_init(cls: Class, own_fields: dict[str, list[Parameter]]) -> None:
    """Give ``cls`` the ``__init__`` attrs writes: the fields of its attrs bases, then its own
    (``own_fields``: each attrs class's fields, by path)."""
    options = _attrs_options(cls)
    if options is None or options.get("init") == "False" or "__init__" in cls.members:
        return
    parameters: list[Parameter] = [Parameter("self", kind=ParameterKind.positional_or_keyword)]
    try:
        bases = [base for base in reversed(cls.mro()) if isinstance(base, Class)]
    except Exception:  # a base griffe cannot resolve: this class's own fields only
        bases = []
    for owner in [*bases, cls]:
        for field in own_fields.get(owner.path, []):
            parameters = [p for p in parameters if p.name != field.name]
            parameters.append(field)
    init = Function(
        "__init__",
        lineno=cls.lineno,
        endlineno=cls.lineno,
        parameters=Parameters(*parameters),
        returns="None",
    )
    cls.set_member("__init__", init)


def _document_attributes(cls: Class) -> None:
    """Move each entry of the class docstring's ``Attributes:`` section to the attribute it
    names (when that has no docstring of its own), so each field is listed once: with its
    type, its default and its description."""
    if cls.docstring is None:
        return
    for section in cls.docstring.parsed:
        if not isinstance(section, DocstringSectionAttributes):
            continue
        kept = []
        for item in section.value:
            member = cls.members.get(item.name)
            if isinstance(member, Attribute) and member.docstring is None:
                member.docstring = Docstring(
                    item.description,
                    parent=member,
                    parser=cls.docstring.parser,
                    parser_options=cls.docstring.parser_options,
                )
            else:
                kept.append(item)
        section.value = kept
    cls.docstring.parsed[:] = [
        section
        for section in cls.docstring.parsed
        if not isinstance(section, DocstringSectionAttributes) or section.value
    ]


def to_markdown(text: str, scope: Object) -> str:
    """``text``, a docstring of ``scope``, with its reST habits turned into Markdown."""
    lines = _tables(_doctests(text.splitlines()))
    out = "\n".join(_literal_intro(line) for line in lines)
    return _ROLE.sub(lambda m: _reference(m.group(2), bool(m.group(1)), scope), out)


def _literal_intro(line: str) -> str:
    if line.rstrip().endswith("::") and line.strip() != "::":
        stripped = line.rstrip()[:-2]
        return stripped.rstrip() if stripped.endswith(" ") else stripped + ":"
    return "" if line.strip() == "::" else line


def _doctests(lines: list[str]) -> list[str]:
    out: list[str] = []
    fenced = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        out.append("```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(_DOCTEST_FLAG.sub("", lines[i]))
            i += 1
        out.append("```")
    return out


def _tables(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        border = _BORDER.match(lines[i])
        end = _table_end(lines, i) if border else None
        if end is None:
            out.append(lines[i])
            i += 1
            continue
        out.extend(_markdown_table(lines[i : end + 1]))
        i = end + 1
    return out


def _table_end(lines: list[str], start: int) -> int | None:
    """The last border of the simple table starting at ``start`` (3 borders), or ``None``."""
    borders = [start]
    for j in range(start + 1, len(lines)):
        if not lines[j].strip():
            return None
        if lines[j] == lines[start]:
            borders.append(j)
            if len(borders) == 3:
                return j
    return None


def _markdown_table(table: list[str]) -> list[str]:
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", table[0])]
    starts = [start for start, _ in spans]

    def cells(line: str) -> list[str]:
        bounds = [*starts[1:], len(line) + 1]
        return [line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]

    second = table.index(table[0], 1)
    header = _rows(table[1:second], cells)
    body = _rows(table[second + 1 : -1], cells)
    head = [" ".join(column).strip() for column in zip(*header, strict=True)]
    if not head:
        head = [""] * len(starts)
    rendered = [_row(head), "|" + "---|" * len(starts)]
    rendered.extend(_row(row) for row in body)
    return ["", *rendered, ""]


def _rows(lines: list[str], cells: Any) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in lines:
        parts: list[str] = cells(line)
        if rows and not all(parts):
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], parts, strict=True)]
        else:
            rows.append(parts)
    return rows


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _reference(target: str, short: bool, scope: Object) -> str:
    target = target.strip().removesuffix("()")
    shown = target.rsplit(".", 1)[-1] if short else target
    found = _resolve(target, scope)
    code = f"<code>{shown}</code>"
    if found is None:
        return f"`{shown}`"
    return f'<autoref identifier="{found}" optional>{code}</autoref>'


def _resolve(target: str, scope: Object) -> str | None:
    """The canonical path of ``target`` as seen from ``scope``, or ``None``."""
    scopes: list[Object] = []
    obj: Object | None = scope
    while obj is not None:
        scopes.append(obj)
        obj = obj.parent
    collection = scope.modules_collection
    first = target.partition(".")[0]
    if first in collection.members:
        try:
            found = collection[target]
            return str(found.canonical_path)
        except Exception:  # griffe raises several kinds; unresolved is fine
            return target
    for candidate in scopes:
        try:
            found = candidate[target]
        except Exception:  # not in this scope: try the next
            continue
        try:
            return str(found.canonical_path)
        except Exception:  # an alias griffe cannot follow
            return str(found.path) if isinstance(found, Alias) else None
    return None
