"""Call permissions: ``GET /calling/permissions/{consumer_whatsapp_id}``, and the decision
:meth:`AsyncClient.can_call` draws from one read of them."""

from __future__ import annotations

import datetime

import attrs

from ._enums import CallDecisionReason, CallNextStep, PermissionAction, PermissionStatus

__all__ = (
    "CallDecision",
    "CallPermission",
    "CallPermissionAction",
    "CallPermissionLimit",
    "CallPermissions",
)


@attrs.frozen(kw_only=True)
class CallPermission:
    """``expiration_time`` (Unix seconds) is set for ``temporary`` permissions only.

    Meta's table names the field ``expiration``; both spellings are read.
    """

    status: PermissionStatus | str
    expiration_time: int | None = None


@attrs.frozen(kw_only=True)
class CallPermissionLimit:
    """One limit on an action, e.g. 1 permission request per ``PT24H``.

    ``limit_expiration_time`` (Unix seconds) is present once ``current_usage`` reached the cap.
    """

    time_period: str
    max_allowed: int
    current_usage: int
    limit_expiration_time: int | None = None

    @property
    def exhausted(self) -> bool:
        return self.current_usage >= self.max_allowed


@attrs.frozen(kw_only=True)
class CallPermissionAction:
    """Whether the business can perform ``action_name`` now, all limits considered."""

    action_name: PermissionAction | str
    can_perform_action: bool
    limits: tuple[CallPermissionLimit, ...] = ()


@attrs.frozen(kw_only=True)
class CallPermissions:
    """The answer of ``GET /calling/permissions/{id}``."""

    permission: CallPermission
    actions: tuple[CallPermissionAction, ...] = ()
    messaging_product: str | None = None

    def action(self, name: PermissionAction | str) -> CallPermissionAction | None:
        """The entry for ``name`` (e.g. ``"start_call"``), or ``None`` if the API sent none."""
        for entry in self.actions:
            if entry.action_name == name:
                return entry
        return None

    @property
    def can_start_call(self) -> bool:
        """True when a ``connect`` to this user is allowed now (permission and limits)."""
        entry = self.action(PermissionAction.START_CALL)
        return entry is not None and entry.can_perform_action

    @property
    def can_request_permission(self) -> bool:
        """True when a call-permission request may be sent to this user now."""
        entry = self.action(PermissionAction.SEND_CALL_PERMISSION_REQUEST)
        return entry is not None and entry.can_perform_action


def _moment(unix_seconds: int | None) -> datetime.datetime | None:
    """Unix seconds as an aware UTC datetime; ``None`` for one no datetime can hold."""
    if unix_seconds is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(unix_seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _blocked_until(entry: CallPermissionAction) -> datetime.datetime | None:
    """When every limit that stops ``entry`` lapses: the latest ``limit_expiration_time`` of
    the used-up limits (the API sends one only for those), or ``None`` when any of them does
    not say."""
    blocking = [
        limit
        for limit in entry.limits
        if limit.exhausted or limit.limit_expiration_time is not None
    ]
    moments = [_moment(limit.limit_expiration_time) for limit in blocking]
    if not moments or any(moment is None for moment in moments):
        return None
    return max(moment for moment in moments if moment is not None)


@attrs.frozen(kw_only=True)
class CallDecision:
    """May the business call this user now, and if not, why and what next.

    ``allowed`` is the answer; ``reason`` why not (``None`` when allowed); ``next_step`` what
    to do: :attr:`~CallNextStep.CALL`, :attr:`~CallNextStep.SEND_PERMISSION_REQUEST`,
    :attr:`~CallNextStep.WAIT_UNTIL` ``retry_at`` (an aware UTC datetime), or
    :attr:`~CallNextStep.NONE`. ``until`` is when the limit named by ``reason`` lapses,
    if the API said. ``can_request_permission`` whether a permission request may be sent
    now; ``permissions`` the read it was drawn from.

    Everything comes from the read, whatever the limits are: ``can_perform_action`` and
    ``limits`` of each action, never numbers of this library's own. An action the API did not
    report is taken as not limited; a temporary permission whose ``expiration_time`` is past
    at ``now`` counts as expired even when the API still reports it.
    """

    allowed: bool
    reason: CallDecisionReason | None
    next_step: CallNextStep
    retry_at: datetime.datetime | None = None
    until: datetime.datetime | None = None
    can_request_permission: bool = False
    permissions: CallPermissions = attrs.field(repr=False)

    @classmethod
    def from_permissions(cls, permissions: CallPermissions, *, now: float) -> CallDecision:
        """The decision for ``permissions`` as read at ``now`` (Unix seconds)."""
        permission = permissions.permission
        start = permissions.action(PermissionAction.START_CALL)
        ask = permissions.action(PermissionAction.SEND_CALL_PERMISSION_REQUEST)
        can_ask = ask is None or ask.can_perform_action
        expiry = permission.expiration_time
        expired = (
            permission.status == PermissionStatus.TEMPORARY and expiry is not None and expiry <= now
        )
        granted = permission.status in (PermissionStatus.TEMPORARY, PermissionStatus.PERMANENT)
        if granted and not expired:
            if start is None or start.can_perform_action:
                return cls(
                    allowed=True,
                    reason=None,
                    next_step=CallNextStep.CALL,
                    can_request_permission=can_ask,
                    permissions=permissions,
                )
            until = _blocked_until(start)
            limited = until is not None or any(limit.exhausted for limit in start.limits)
            return cls(
                allowed=False,
                reason=CallDecisionReason.CALL_LIMIT_REACHED
                if limited
                else CallDecisionReason.UNKNOWN,
                next_step=CallNextStep.NONE if until is None else CallNextStep.WAIT_UNTIL,
                retry_at=until,
                until=until,
                can_request_permission=can_ask,
                permissions=permissions,
            )
        if expired:
            reason = CallDecisionReason.EXPIRED
        elif permission.status == PermissionStatus.NO_PERMISSION:
            reason = CallDecisionReason.NO_PERMISSION
        else:
            reason = CallDecisionReason.UNKNOWN
        if can_ask:
            return cls(
                allowed=False,
                reason=reason,
                next_step=CallNextStep.SEND_PERMISSION_REQUEST,
                can_request_permission=True,
                permissions=permissions,
            )
        assert ask is not None  # can_ask is True without an entry
        until = _blocked_until(ask)
        return cls(
            allowed=False,
            reason=CallDecisionReason.REQUEST_LIMIT_REACHED,
            next_step=CallNextStep.NONE if until is None else CallNextStep.WAIT_UNTIL,
            retry_at=until,
            until=until,
            can_request_permission=False,
            permissions=permissions,
        )
