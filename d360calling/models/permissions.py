"""Call permissions: ``GET /calling/permissions/{consumer_whatsapp_id}``."""

from __future__ import annotations

import attrs

from ._enums import PermissionAction, PermissionStatus

__all__ = ("CallPermission", "CallPermissionAction", "CallPermissionLimit", "CallPermissions")


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
