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
    """A user's call permission.

    Attributes:
        status: ``no_permission``, ``temporary`` or ``permanent`` (or a status the API adds
            later, as text).
        expiration_time: When a ``temporary`` permission ends (Unix seconds); Meta's table
            names the field ``expiration``, and both spellings are read.
    """

    status: PermissionStatus | str
    expiration_time: int | None = None


@attrs.frozen(kw_only=True)
class CallPermissionLimit:
    """One limit on an action, e.g. 1 permission request per ``PT24H``.

    Attributes:
        time_period: The period, as an ISO 8601 duration (``PT24H``, ``P7D``).
        max_allowed: How many the period allows.
        current_usage: How many were used in it.
        limit_expiration_time: When the limit lapses (Unix seconds); present once
            ``current_usage`` reached the cap.
    """

    time_period: str
    max_allowed: int
    current_usage: int
    limit_expiration_time: int | None = None

    @property
    def exhausted(self) -> bool:
        """Whether the limit is used up (``current_usage`` reached ``max_allowed``)."""
        return self.current_usage >= self.max_allowed


@attrs.frozen(kw_only=True)
class CallPermissionAction:
    """Whether the business can perform an action now, all limits considered.

    Attributes:
        action_name: ``start_call`` or ``send_call_permission_request`` (or an action the API
            adds later, as text).
        can_perform_action: Whether it may, now.
        limits: The limits on it.
    """

    action_name: PermissionAction | str
    can_perform_action: bool
    limits: tuple[CallPermissionLimit, ...] = ()


@attrs.frozen(kw_only=True)
class CallPermissions:
    """The answer of ``GET /calling/permissions/{id}``.

    Attributes:
        permission: The user's permission (status and expiry).
        actions: What the business may do, with the limits on each.
        messaging_product: ``"whatsapp"``, when the API says.
    """

    permission: CallPermission
    actions: tuple[CallPermissionAction, ...] = ()
    messaging_product: str | None = None

    def action(self, name: PermissionAction | str) -> CallPermissionAction | None:
        """The entry for one action.

        Args:
            name: The action, e.g. ``"start_call"``.

        Returns:
            Its entry, or ``None`` if the API sent none.
        """
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

    Everything comes from the read, whatever the limits are: ``can_perform_action`` and
    ``limits`` of each action, never numbers of this library's own. An action the API did not
    report is taken as not limited; a temporary permission whose ``expiration_time`` is past
    at ``now`` counts as expired even when the API still reports it.

    Attributes:
        allowed: The answer.
        reason: Why not (``None`` when allowed): no permission, expired, call limit
            reached, request limit reached, or unknown.
        next_step: What to do: :attr:`~CallNextStep.CALL`,
            :attr:`~CallNextStep.SEND_PERMISSION_REQUEST`, :attr:`~CallNextStep.WAIT_UNTIL`
            ``retry_at``, or :attr:`~CallNextStep.NONE`.
        retry_at: When to try again (an aware UTC datetime), with ``WAIT_UNTIL``.
        until: When the limit named by ``reason`` lapses, if the API said.
        can_request_permission: Whether a permission request may be sent now.
        permissions: The read it was drawn from.
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
        """The decision for a permissions read.

        Args:
            permissions: The read.
            now: When to decide for (Unix seconds): a temporary permission whose
                ``expiration_time`` is past then counts as expired.

        Returns:
            The decision.
        """
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
