"""Messages of the calling workflow, sent through ``POST /messages`` (the messaging endpoint,
same base URL and key): the call-permission request, interactive or as a template, and the
call button.

One frozen class per message, checked when it is made, so a message that exists is one the
API can take. Each names the user by ``to`` (a phone number) or ``recipient`` (a
business-scoped user id), exactly one. Their wire form (``messaging_product``,
``recipient_type``, the ``interactive`` or ``template`` object) is added by the converter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from ..errors import InvalidRequestError
from . import _checks
from ._enums import TemplateParameterFormat

__all__ = (
    "BODY_PARAMETER_MAX",
    "CTA_PAYLOAD_MAX",
    "CallButtonMessage",
    "CallPermissionRequestMessage",
    "CallPermissionTemplateMessage",
    "DISPLAY_TEXT_MAX",
    "HEADER_PARAMETER_MAX",
    "MESSAGE_BODY_MAX",
    "MESSAGE_REQUESTS",
    "MessageContact",
    "MessageInfo",
    "MessageRequest",
    "MessageResponse",
    "SendMessageAnswer",
    "TEMPLATE_NAME_MAX",
    "TTL_MINUTES_MAX",
    "TTL_MINUTES_MIN",
    "TemplateParameter",
)

# Meta's limits (Cloud API interactive messages and templates; the call-button page).
MESSAGE_BODY_MAX = 1024
DISPLAY_TEXT_MAX = 20
TTL_MINUTES_MIN = 1
TTL_MINUTES_MAX = 43_200  # 30 days
CTA_PAYLOAD_MAX = 512
TEMPLATE_NAME_MAX = 512
HEADER_PARAMETER_MAX = 60  # a text header is at most 60 characters, its variable included
BODY_PARAMETER_MAX = 1024  # a template body is at most 1024 characters
# Template names and named parameters: lowercase letters, digits and underscores.
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+", re.ASCII)
_PARAMETER_NAME = re.compile(r"[a-z0-9_]+", re.ASCII)


def _check_addressee(to: str | None, recipient: str | None) -> None:
    if to is None and recipient is None:
        raise InvalidRequestError(
            "a message needs its user: to (a phone number) or recipient (a business-scoped id)"
        )
    if to is not None and recipient is not None:
        raise InvalidRequestError(
            "give either to or recipient, not both (the API would use to and ignore recipient)"
        )


def _text(maximum: int, *, optional: bool = False) -> Any:
    def check(_: object, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        _checks.check_text(value, attribute.name, maximum)

    return check


@attrs.frozen(kw_only=True)
class CallPermissionRequestMessage:
    """Ask the user for permission to call (the interactive ``call_permission_request``).

    Free-form, so only inside the 24-hour customer-service window (outside it the message
    fails with 131047, :class:`~d360calling.ReEngagementRequiredError`, usually reported by
    its status webhook: send :class:`CallPermissionTemplateMessage` instead). The rest of
    the message (no header, no footer) is WhatsApp's own.

    Attributes:
        to: The user's phone number.
        recipient: The user's business-scoped id, instead of ``to``.
        body: The message's text (optional, at most 1024 characters).

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    to: str | None = attrs.field(default=None, validator=_checks.optional_whatsapp_id)
    recipient: str | None = attrs.field(default=None, validator=_checks.optional_business_scoped_id)
    body: str | None = attrs.field(default=None, validator=_text(MESSAGE_BODY_MAX, optional=True))

    def __attrs_post_init__(self) -> None:
        _check_addressee(self.to, self.recipient)


@attrs.frozen(kw_only=True)
class TemplateParameter:
    """One variable's value in a template message.

    Attributes:
        text: The value.
        name: The variable's name for a template whose variables are named
            (``{{first_name}}``); ``None`` for positional ones (``{{1}}``).
    """

    text: str
    name: str | None = None


Parameters = Sequence[str | TemplateParameter] | Mapping[str, str]


def _convert_parameters(
    value: Parameters, field: str, maximum: int
) -> tuple[TemplateParameter, ...]:
    items: list[TemplateParameter] = []
    if isinstance(value, Mapping):
        items.extend(TemplateParameter(text=text, name=name) for name, text in value.items())
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items.extend(
            item if isinstance(item, TemplateParameter) else TemplateParameter(text=item)
            for item in value
        )
    else:
        raise InvalidRequestError(
            f"{field} must be a sequence of texts (positional) or a mapping of name to text "
            f"(named), got {type(value).__name__}"
        )
    for index, item in enumerate(items):
        name: object = item.name
        if name is not None and (not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name)):
            raise InvalidRequestError(
                f"{field}: parameter names are lowercase letters, digits and underscores, "
                f"got {name!r:.40}"
            )
        where = f"{field}[{index}]" if name is None else f"{field}[{name!r:.40}]"
        _checks.check_text(item.text, where, maximum)
    return tuple(items)


def _body_parameters(value: Parameters) -> tuple[TemplateParameter, ...]:
    return _convert_parameters(value, "body_parameters", BODY_PARAMETER_MAX)


def _header_parameters(value: Parameters) -> tuple[TemplateParameter, ...]:
    return _convert_parameters(value, "header_parameters", HEADER_PARAMETER_MAX)


def _parameter_format(value: Any) -> TemplateParameterFormat | None:
    if value is None:
        return None
    try:
        return TemplateParameterFormat(value)
    except (ValueError, TypeError):
        raise InvalidRequestError(
            f"parameter_format must be 'positional' or 'named', got {value!r:.40}"
        ) from None


def _template_name(_: object, __: Any, value: Any) -> None:
    if (
        not isinstance(value, str)
        or len(value) > TEMPLATE_NAME_MAX
        or not _TEMPLATE_NAME.fullmatch(value)
    ):
        raise InvalidRequestError(
            "template must be a template name: lowercase letters, digits and underscores, at "
            f"most {TEMPLATE_NAME_MAX} characters, got {value!r:.40}"
        )


def _language(_: object, __: Any, value: Any) -> None:
    _checks.check_language(value, "language")


@attrs.frozen(kw_only=True)
class CallPermissionTemplateMessage:
    """Ask the user for permission to call with an approved template (``type: "template"``),
    which works outside the 24-hour window too.

    The template is one you created (category MARKETING or UTILITY) with a body and a
    ``call_permission_request`` component; the send names it and fills in its variables, and
    WhatsApp adds the permission buttons. ``body_parameters`` and ``header_parameters`` are
    texts in order for a positional template (``{{1}}``), or a mapping of name to text for a
    named one (``{{first_name}}``, Meta's example form). ``parameter_format`` is taken from
    them when not given; given, they must match it.

    Attributes:
        to: The user's phone number.
        recipient: The user's business-scoped id, instead of ``to``.
        template: The approved template's name.
        language: Its language, e.g. ``"en_US"``.
        body_parameters: The body's variables (texts, or a mapping of name to text).
        header_parameters: The header's variable (at most one).
        parameter_format: ``"positional"`` or ``"named"``.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    to: str | None = attrs.field(default=None, validator=_checks.optional_whatsapp_id)
    recipient: str | None = attrs.field(default=None, validator=_checks.optional_business_scoped_id)
    template: str = attrs.field(validator=_template_name)
    language: str = attrs.field(validator=_language)
    body_parameters: tuple[TemplateParameter, ...] = attrs.field(
        default=(), converter=_body_parameters
    )
    header_parameters: tuple[TemplateParameter, ...] = attrs.field(
        default=(), converter=_header_parameters
    )
    parameter_format: TemplateParameterFormat | None = attrs.field(
        default=None, converter=_parameter_format
    )

    def __attrs_post_init__(self) -> None:
        _check_addressee(self.to, self.recipient)
        if len(self.header_parameters) > 1:
            raise InvalidRequestError(
                f"header_parameters: a text header takes 1 parameter, got "
                f"{len(self.header_parameters)}"
            )
        given = self.body_parameters + self.header_parameters
        named = {parameter.name is not None for parameter in given}
        if len(named) > 1:
            raise InvalidRequestError(
                "body_parameters and header_parameters mix named and positional parameters; "
                "a template uses one parameter format"
            )
        inferred = (
            None
            if not given
            else TemplateParameterFormat.NAMED
            if named == {True}
            else TemplateParameterFormat.POSITIONAL
        )
        if self.parameter_format is None:
            object.__setattr__(self, "parameter_format", inferred)
        elif inferred is not None and inferred is not self.parameter_format:
            shape = "a mapping" if inferred is TemplateParameterFormat.NAMED else "a sequence"
            raise InvalidRequestError(
                f"parameter_format is {self.parameter_format.value!r} but the parameters are "
                f"{shape}: named parameters are a mapping of name to text, positional ones a "
                "sequence of texts"
            )


def _ttl_minutes(_: object, __: Any, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"ttl_minutes must be an int, got {value!r:.40}")
    if not TTL_MINUTES_MIN <= value <= TTL_MINUTES_MAX:
        raise InvalidRequestError(
            f"ttl_minutes must be between {TTL_MINUTES_MIN} and {TTL_MINUTES_MAX} (30 days), "
            f"got {value}"
        )


def _payload(_: object, __: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidRequestError(f"payload must be a str, got {type(value).__name__}")
    if not value:
        raise InvalidRequestError("payload must not be empty (leave it out instead)")
    if len(value) > CTA_PAYLOAD_MAX:
        raise InvalidRequestError(
            f"payload is {len(value)} characters; the API takes at most {CTA_PAYLOAD_MAX}"
        )


@attrs.frozen(kw_only=True)
class CallButtonMessage:
    """A message with a "call us on WhatsApp" button (the interactive ``voice_call``).

    Attributes:
        to: The user's phone number.
        recipient: The user's business-scoped id, instead of ``to``.
        body: The message (at most 1024 characters).
        display_text: The button's label (at most 20 characters).
        ttl_minutes: How long the button works, 1 to 43,200 (the API's default is 7 days).
        payload: Your text (at most 512 characters), which comes back as ``cta_payload`` on
            the connect and terminate webhooks of the call the button starts.

    Raises:
        InvalidRequestError: A field is not valid; nothing can be sent with it.
    """

    to: str | None = attrs.field(default=None, validator=_checks.optional_whatsapp_id)
    recipient: str | None = attrs.field(default=None, validator=_checks.optional_business_scoped_id)
    body: str = attrs.field(validator=_text(MESSAGE_BODY_MAX))
    display_text: str = attrs.field(validator=_text(DISPLAY_TEXT_MAX))
    ttl_minutes: int | None = attrs.field(default=None, validator=_ttl_minutes)
    payload: str | None = attrs.field(default=None, validator=_payload)

    def __attrs_post_init__(self) -> None:
        _check_addressee(self.to, self.recipient)


MessageRequest: TypeAlias = (
    CallPermissionRequestMessage | CallPermissionTemplateMessage | CallButtonMessage
)
"""Any one message; :meth:`AsyncClient.send_message` takes each."""

MESSAGE_REQUESTS: tuple[type[MessageRequest], ...] = (
    CallPermissionRequestMessage,
    CallPermissionTemplateMessage,
    CallButtonMessage,
)


@attrs.frozen(kw_only=True)
class MessageContact:
    """Whom a sent message went to.

    Attributes:
        input: The user as given.
        wa_id: The user's WhatsApp id.
        user_id: Their business-scoped id, when the API reports one.
    """

    input: str | None = None
    wa_id: str | None = None
    user_id: str | None = None


@attrs.frozen(kw_only=True)
class MessageInfo:
    """A sent message as the API names it.

    Attributes:
        id: Its wamid.
        message_status: Meta's ``accepted``, ``held_for_quality_assessment`` or ``paused``.
    """

    id: str | None = None
    message_status: str | None = None


@attrs.frozen(kw_only=True)
class SendMessageAnswer:
    """The body of ``POST /messages``' answer, as sent."""

    messaging_product: str | None = None
    contacts: tuple[MessageContact, ...] = ()
    messages: tuple[MessageInfo, ...] = ()


@attrs.frozen(kw_only=True)
class MessageResponse:
    """A sent message.

    Attributes:
        message_id: Its wamid (``wamid.…``): what the user's reply carries as its
            ``context.id``, and what its status webhooks name.
        wa_id: The user's WhatsApp id.
        input: The user as given.
        message_status: Meta's ``accepted``, ``held_for_quality_assessment`` or ``paused``,
            when it says.
        user_id: The user's business-scoped id, when the API reports one.
        messaging_product: ``"whatsapp"``, when the API says.
    """

    message_id: str
    wa_id: str | None = None
    input: str | None = None
    message_status: str | None = None
    user_id: str | None = None
    messaging_product: str | None = None
