"""The fake's states are enums that equal their wire values, and go out as plain strings."""

from __future__ import annotations

import json

from d360calling.testing import (
    CallAction,
    CallDirection,
    CallState,
    CallStatus,
    CallTerminateStatus,
    EndReason,
    FakeCallingAPI,
    PermissionStatus,
    sample_answer,
    sample_offer,
)

from .helpers import USER

CALLER = "4915100000005"


def test_an_inbound_call_moves_through_its_states() -> None:
    with FakeCallingAPI() as fake, fake.client(max_retries=0) as client:
        call = fake.user_calls(CALLER)
        assert call.direction is CallDirection.USER_INITIATED
        seen = [call.state]
        client.pre_accept_call(call.id, sample_answer())
        seen.append(call.state)
        client.accept_call(call.id, sample_answer())
        seen.append(call.state)
        client.terminate_call(call.id)
        seen.append(call.state)
        assert seen == [
            CallState.RINGING,
            CallState.PRE_ACCEPTED,
            CallState.ACCEPTED,
            CallState.ENDED,
        ]
        assert all(type(state) is CallState for state in seen)
        assert call.end_reason is EndReason.TERMINATED
        assert call.actions == [CallAction.PRE_ACCEPT, CallAction.ACCEPT, CallAction.TERMINATE]
        assert all(isinstance(action, CallAction) for action in call.actions)
        # Equal to the wire strings, and rendered as them.
        assert call.state == "ended"
        assert f"{call.state}/{call.end_reason}" == "ended/terminated"
        fake.wait_for_webhooks()
        terminate = json.loads(fake.webhooks[-1].body)["entry"][0]["changes"][0]["value"]
        assert terminate["calls"][0]["status"] == CallTerminateStatus.COMPLETED
        assert type(terminate["calls"][0]["status"]) is str
        assert terminate["calls"][0]["direction"] == "USER_INITIATED"


def test_a_business_initiated_call_and_the_permission_states() -> None:
    with FakeCallingAPI() as fake, fake.client(max_retries=0) as client:
        assert client.get_call_permissions(USER).permission.status == PermissionStatus.NO_PERMISSION
        fake.grant_permission(USER, notify=False)
        assert client.get_call_permissions(USER).permission.status == PermissionStatus.TEMPORARY
        call_id = client.connect_call(USER, sample_offer()).call_id
        call = fake.calls[call_id]
        assert (call.state, call.direction) == (CallState.RINGING, CallDirection.BUSINESS_INITIATED)
        fake.user_declines(call.id)
        assert call.end_reason is EndReason.DECLINED
        statuses = [
            w.value["statuses"][0]["status"] for w in fake.webhooks if "statuses" in w.value
        ]
        assert statuses == [CallStatus.RINGING, CallStatus.REJECTED]
