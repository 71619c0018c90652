"""The messages the fake models on ``POST /messages`` (api-2026 §1-§2, api-facts §3.2): the
interactive call-permission request, the interactive call button (``voice_call``) and
templates, with the templates the fake was told about. What a message *does* (the window, the
limits, the statuses) is the world's business; this module reads a contract-valid body into
what was sent, checks a template against its registration, and keeps what was sent, bounded.
Not thread-safe on its own: the world calls it under its lock.

Templates: the fake does not know a WABA's approved templates. A template it was not told
about is taken as an approved call-permission template (any category the API allows for one),
so code that sends one works against a bare fake; :meth:`Templates.add` tells it about one,
and then a send is checked as the API checks it: the language must be one it was registered
in (132001), the parameters must match the placeholders in number and kind (132000, 132012),
and only a template with the ``call_permission_request`` component counts as a permission
request.
"""

from __future__ import annotations

import collections
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._enums import MessageKind
from ._errors import FakeAPIError

__all__ = (
    "DEFAULT_BUTTON_TTL_MINUTES",
    "DEFAULT_MAX_RECORDED_MESSAGES",
    "FakeMessage",
    "FakeTemplate",
    "MAX_TEMPLATES",
    "Messages",
    "Outgoing",
    "Templates",
    "new_message_id",
    "read_message",
)

DEFAULT_MAX_RECORDED_MESSAGES = 10_000
DEFAULT_BUTTON_TTL_MINUTES = 10_080  # 7 days, Meta's default for a call button
MAX_TEMPLATES = 1_000  # templates the fake is told about; a WABA has at most a few hundred
_TEMPLATE_CATEGORIES = ("MARKETING", "UTILITY")  # the only ones a call-permission template takes
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$", re.ASCII)
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_[A-Z]{2})?$", re.ASCII)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MAX_BODY = 1024  # a template body, as Meta's template page bounds it
_MAX_HEADER = 60


@attrs.frozen
class FakeTemplate:
    """A template the fake was told about (:meth:`FakeCallingAPI.add_template`). Its
    parameters are the ``{{1}}``/``{{name}}`` placeholders of its texts."""

    name: str
    language: str
    category: str
    body_text: str
    header_text: str | None = None
    call_permission_request: bool = True  # carries the call_permission_request component

    @property
    def body_parameters(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.body_text))

    @property
    def header_parameters(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.header_text or ""))


@attrs.define(eq=False)
class FakeMessage:
    """A message the business sent, as the fake keeps it. ``status`` is ``delivered`` or
    ``failed`` (then ``error_code`` says why: 131047, 131026)."""

    id: str
    kind: MessageKind
    user: str  # the key the fake files the user under (see FakeCallingAPI.add_user)
    sent_at: float
    status: str
    error_code: int | None = None
    body: str | None = None
    template: str | None = None
    language: str | None = None
    call_permission_request: bool = False  # counts as a call-permission request
    display_text: str | None = None
    ttl_minutes: int | None = None
    payload: str | None = None

    @property
    def button_expires_at(self) -> float | None:
        """When a call button stops working (``ttl_minutes`` after it was sent)."""
        if self.kind is not MessageKind.VOICE_CALL:
            return None
        return self.sent_at + 60 * (self.ttl_minutes or DEFAULT_BUTTON_TTL_MINUTES)

    @property
    def size(self) -> int:
        texts = (self.body, self.template, self.display_text, self.payload)
        return len(self.id) + len(self.user) + sum(len(t) for t in texts if t)


@attrs.frozen
class Outgoing:
    """What a contract-valid ``POST /messages`` body sends."""

    kind: MessageKind
    user_id: str  # as addressed: ``to`` when given (it wins), else ``recipient``
    free_form: bool  # only inside the customer-service window
    call_permission_request: bool
    body: str | None = None
    template: str | None = None
    language: str | None = None
    display_text: str | None = None
    ttl_minutes: int | None = None
    payload: str | None = None


class Templates:
    def __init__(self, max_templates: int = MAX_TEMPLATES) -> None:
        self.by_key: dict[tuple[str, str], FakeTemplate] = {}
        self.max_templates = max_templates

    def add(self, template: FakeTemplate) -> FakeTemplate:
        problem = _template_problem(template)
        if problem:
            raise ValueError(problem)
        key = (template.name, template.language)
        if key not in self.by_key and len(self.by_key) >= self.max_templates:
            raise ValueError(f"the fake keeps at most {self.max_templates} templates")
        self.by_key[key] = template
        return template

    def languages(self, name: str) -> list[str]:
        return [language for (known, language) in self.by_key if known == name]

    def get(self, name: str, language: str) -> FakeTemplate | None:
        return self.by_key.get((name, language))


def _template_problem(t: FakeTemplate) -> str | None:
    if not isinstance(t.name, str) or not _TEMPLATE_NAME.fullmatch(t.name):
        return "a template name is lowercase letters, digits and underscores, at most 512"
    if not isinstance(t.language, str) or not _LANGUAGE.fullmatch(t.language):
        return "language must be a code such as 'en' or 'en_US'"
    if t.category not in _TEMPLATE_CATEGORIES:
        return "a call-permission template is MARKETING or UTILITY"
    if not isinstance(t.body_text, str) or not t.body_text.strip():
        return "body_text is required and must not be empty"
    if len(t.body_text) > _MAX_BODY:
        return f"body_text is longer than {_MAX_BODY} characters"
    if t.header_text is not None and (
        not isinstance(t.header_text, str) or len(t.header_text) > _MAX_HEADER
    ):
        return f"header_text must be a string of at most {_MAX_HEADER} characters"
    for params in (t.body_parameters, t.header_parameters):
        if any(p.isdigit() for p in params) and not all(p.isdigit() for p in params):
            return "placeholders are all positional ({{1}}) or all named ({{name}})"
    return None


class Messages:
    """The messages sent, by id: the newest ``max_messages`` of them, holding at most
    ``max_bytes`` (``None``: no such bound); the oldest are forgotten first."""

    def __init__(
        self,
        max_messages: int | None = DEFAULT_MAX_RECORDED_MESSAGES,
        max_bytes: int | None = None,
    ) -> None:
        if max_messages is not None and max_messages < 1:
            raise ValueError("max_recorded_messages must be >= 1 (or None for no limit)")
        self.by_id: dict[str, FakeMessage] = {}
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._sizes: collections.deque[tuple[str, int]] = collections.deque()
        self._bytes = 0

    def add(self, message: FakeMessage) -> FakeMessage:
        self.by_id[message.id] = message
        size = message.size
        self._sizes.append((message.id, size))
        self._bytes += size
        while len(self._sizes) > 1 and (
            (self.max_messages is not None and len(self._sizes) > self.max_messages)
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            old_id, old_size = self._sizes.popleft()
            self._bytes -= old_size
            self.by_id.pop(old_id, None)
        return message


def new_message_id() -> str:
    return "wamid." + secrets.token_urlsafe(24)


# -- reading a body -------------------------------------------------------------------------


def read_message(body: Mapping[str, Any], templates: Templates) -> Outgoing:
    """What a contract-valid body sends; a template that breaks its registration is refused
    as the API refuses it."""
    # "to" wins when both are sent, as on connect (api-2026 §5).
    user_id = body["to"] if "to" in body else body["recipient"]
    if body["type"] == "template":
        return _template(body["template"], user_id, templates)
    interactive = body["interactive"]
    text = interactive.get("body", {}).get("text")
    if interactive["type"] == "call_permission_request":
        return Outgoing(
            MessageKind.CALL_PERMISSION_REQUEST,
            user_id,
            free_form=True,
            call_permission_request=True,
            body=text,
        )
    parameters = interactive["action"].get("parameters", {})
    return Outgoing(
        MessageKind.VOICE_CALL,
        user_id,
        free_form=True,
        call_permission_request=False,
        body=text,
        display_text=parameters.get("display_text"),
        ttl_minutes=parameters.get("ttl_minutes"),
        payload=parameters.get("payload"),
    )


def _template(data: Mapping[str, Any], user_id: str, templates: Templates) -> Outgoing:
    name, language = data["name"], data["language"]["code"]
    components = _components(data.get("components", ()))
    known = templates.get(name, language)
    if known is None and templates.languages(name):
        raise FakeAPIError.meta(132001, f"template name ({name}) does not exist in {language}")
    if known is not None:
        if known.call_permission_request and "button" in components:
            raise FakeAPIError.invalid(
                "template.components: the call permission request component cannot be "
                "combined with other interactive components (buttons)"
            )
        _check_parameters("body", known.body_parameters, components.get("body", []))
        _check_parameters("header", known.header_parameters, components.get("header", []))
    return Outgoing(
        MessageKind.TEMPLATE,
        user_id,
        free_form=False,
        call_permission_request=True if known is None else known.call_permission_request,
        body=None if known is None else known.body_text,
        template=name,
        language=language,
    )


def _components(components: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The parameters of each component, by type; the type is read in either case
    (``body`` / ``BODY``, ``call_permission_request`` / ``CALL_PERMISSION_REQUEST``)."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for component in components:
        out.setdefault(component["type"].lower(), []).extend(component.get("parameters", ()))
    return out


def _check_parameters(
    where: str, expected: tuple[str, ...], given: list[Mapping[str, Any]]
) -> None:
    named = bool(expected) and not expected[0].isdigit()
    names = [p.get("parameter_name") for p in given]
    if given and any((name is not None) != named for name in names):
        kind = "named (parameter_name)" if named else "positional (no parameter_name)"
        raise FakeAPIError.meta(132012, f"{where} parameters must be {kind}")
    wanted = len(set(expected))
    if len(given) != wanted:
        raise FakeAPIError.meta(
            132000, f"{where}: {wanted} parameter(s) expected, {len(given)} given"
        )
    if named and set(names) != set(expected):
        missing = ", ".join(sorted(set(expected) - {n for n in names if n}))
        raise FakeAPIError.meta(132000, f"{where}: parameter(s) missing: {missing}")
