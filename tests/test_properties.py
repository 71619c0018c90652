"""Property-based tests (hypothesis) over every public method's arguments and over arbitrary
responses: only d360calling's typed errors escape, invalid input sends nothing, and whatever is
sent validates against the OpenAPI contract."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from d360calling import Client, D360Error, InvalidRequestError, RetryPolicy, SettingsUpdate
from d360calling.models import CallingSettings
from d360calling.testing import FakeCallingAPI, Fault, sample_answer, sample_offer
from d360calling.testing._contract import openapi

USER = "4915112345678"
# max_examples comes from the Hypothesis profile (tests/conftest.py): 100, or 2000 to explore.
PROPERTIES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _schema(name: str) -> dict[str, Any]:
    spec = openapi()  # 360dialog's OpenAPI for the Calling endpoints, shipped with the fake
    # The request bodies are "oneOf: [object, <schema>]", which a valid body matches twice;
    # the named schema is the contract.
    return {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCallingAPI]:
    with FakeCallingAPI() as api:
        yield api


@pytest.fixture(scope="module")
def client(fake: FakeCallingAPI) -> Iterator[Client]:
    policy = RetryPolicy(initial_delay=0.001, max_delay=0.002, max_retry_after=0.01)
    # Arbitrary SDPs: the client's own SDP check (tests/test_fake_sdp.py) would warn on them.
    with Client(
        api_key=fake.api_key,
        base_url=fake.url,
        timeout=2,
        max_retries=0,
        retry_policy=policy,
        sdp_check="off",
    ) as c:
        yield c


# -- arbitrary arguments ----------------------------------------------------------------------

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
call_ids = st.one_of(anything, st.just("wacid.ABC123"), st.text(min_size=1, max_size=60))
sdps = st.one_of(
    anything, st.just(sample_answer()), st.text(max_size=200).map(lambda t: "v=0\r\n" + t)
)


def _not_too_short(value: Any) -> bool:
    """A valid timeout (a positive finite number) far shorter than a loopback round trip
    (9.3e-279 s, say) times the attempt out before anything is sent, which is not what this
    property is about; invalid values (non-numbers, zero, negative, NaN, inf) are kept."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return not 0 < value < 1.0


# Valid timeouts the fake answers well within, on any machine; and invalid ones.
timeouts = st.one_of(st.none(), st.just(2.0), st.floats(1.0, 60.0), anything.filter(_not_too_short))


def _methods(c: Client) -> list[tuple[str, Callable[..., Any], st.SearchStrategy[tuple[Any, ...]]]]:
    return [
        ("connect", c.connect_call, st.tuples(st.one_of(anything, st.just(USER)), sdps)),
        ("pre_accept", c.pre_accept_call, st.tuples(call_ids, sdps)),
        ("accept", c.accept_call, st.tuples(call_ids, sdps)),
        ("reject", c.reject_call, st.tuples(call_ids)),
        ("terminate", c.terminate_call, st.tuples(call_ids)),
        ("permissions", c.get_call_permissions, st.tuples(st.one_of(anything, st.just(USER)))),
        (
            "update settings",
            c.update_settings,
            st.tuples(
                st.one_of(
                    anything,
                    st.builds(
                        CallingSettings,
                        status=st.one_of(
                            st.none(), st.sampled_from(["ENABLED", "DISABLED"]), anything
                        ),
                    ),
                )
            ),
        ),
    ]


@pytest.mark.parametrize(
    "method",
    ["connect", "pre_accept", "accept", "reject", "terminate", "permissions", "update settings"],
)
@PROPERTIES
@given(data=st.data(), timeout=timeouts, max_retries=st.one_of(st.none(), st.just(0), anything))
def test_any_arguments_give_a_result_or_a_typed_error_and_invalid_ones_send_nothing(
    fake: FakeCallingAPI,
    client: Client,
    method: str,
    data: st.DataObject,
    timeout: Any,
    max_retries: Any,
) -> None:
    name, fn, args_strategy = next(m for m in _methods(client) if m[0] == method)
    args = data.draw(args_strategy)
    fake.clear_faults()
    before = len(fake.requests)
    try:
        fn(*args, timeout=timeout, max_retries=max_retries)
    except InvalidRequestError:
        assert len(fake.requests) == before, "invalid input reached the server"
        return
    except D360Error:
        pass  # the fake refused it (e.g. no such call): a typed error, as promised
    sent = fake.requests[before:]
    assert len(sent) == 1
    if sent[0].method == "POST":
        name = (
            "calling.CallActionRequest"
            if sent[0].path == "/calling/calls"
            else "calling.UpdateCallingSettingsRequest"
        )
        jsonschema.validate(sent[0].json, _schema(name))


@PROPERTIES
@given(
    action=st.sampled_from(["connect", "pre_accept", "accept", "reject", "terminate"]),
    callback=st.one_of(st.none(), st.text(max_size=512)),
)
def test_every_valid_call_action_validates_against_the_contract(
    fake: FakeCallingAPI, client: Client, action: str, callback: str | None
) -> None:
    from d360calling import models

    fake.clear_faults()
    fake.inject(
        Fault(
            status=200,
            json={"messaging_product": "whatsapp", "success": True, "calls": [{"id": "wacid.X"}]},
        ),
        path="/calling/calls",
    )
    call_id = "wacid.HBgLMTIzNDU2Nzg5MA"
    request: models.CallActionRequest
    if action == "connect":
        request = models.ConnectCallRequest(
            to=USER, sdp=sample_offer(), biz_opaque_callback_data=callback
        )
    elif action == "pre_accept":
        request = models.PreAcceptCallRequest(call_id=call_id, sdp=sample_answer())
    elif action == "accept":
        request = models.AcceptCallRequest(
            call_id=call_id, sdp=sample_answer(), biz_opaque_callback_data=callback
        )
    elif action == "reject":
        request = models.RejectCallRequest(call_id=call_id)
    else:
        request = models.TerminateCallRequest(call_id=call_id)
    before = len(fake.requests)
    client.perform_call_action(request)
    (sent,) = fake.requests[before:]
    body = sent.json
    jsonschema.validate(body, _schema("calling.CallActionRequest"))
    assert body["action"] == action
    assert ("session" in body) == (action in ("connect", "pre_accept", "accept"))
    if "session" in body:
        assert body["session"]["sdp_type"] == ("offer" if action == "connect" else "answer")
        assert not isinstance(request, (models.RejectCallRequest, models.TerminateCallRequest))
        assert body["session"]["sdp"] == request.sdp  # byte for byte


# -- arbitrary responses ----------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "messaging_product": st.one_of(st.just("whatsapp"), json_values),
        "success": st.one_of(st.booleans(), json_values),
        "calls": st.one_of(st.just([{"id": "wacid.X"}]), json_values),
        "permission": st.one_of(
            st.just({"status": "temporary", "expiration_time": 1}), json_values
        ),
        "actions": json_values,
        "calling": st.one_of(st.just({"status": "ENABLED"}), json_values),
        "error": st.one_of(st.just({"message": "x", "code": 131009}), json_values),
    },
)
bodies = st.one_of(
    shaped.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60),
    st.text(max_size=60).map(str.encode),
)


@PROPERTIES
@given(
    status=st.one_of(
        st.sampled_from([200, 201, 204, 400, 401, 403, 404, 429, 500, 503]), st.integers(200, 599)
    ),
    body=bodies,
    method=st.sampled_from(["connect", "accept", "terminate", "permissions", "settings", "update"]),
)
def test_any_response_gives_a_model_or_a_typed_error(
    fake: FakeCallingAPI, client: Client, status: int, body: bytes, method: str
) -> None:
    fake.clear_faults()
    fake.inject(Fault(status=status, body=body), times=None)
    calls: dict[str, Callable[[], Any]] = {
        "connect": lambda: client.connect_call(USER, sample_offer()),
        "accept": lambda: client.accept_call("wacid.X", sample_answer()),
        "terminate": lambda: client.terminate_call("wacid.X"),
        "permissions": lambda: client.get_call_permissions(USER),
        "settings": lambda: client.get_settings(),
        "update": lambda: client.update_settings(SettingsUpdate.status("ENABLED")),
    }
    try:
        result = calls[method]()
    except D360Error as exc:
        rendered = f"{exc} {exc!r}"  # every error renders, and never with the key in it
        assert fake.api_key not in rendered
    else:
        assert 200 <= status < 300, f"HTTP {status} was taken as success"
        assert result is not None
    finally:
        fake.clear_faults()


def test_the_contract_check_can_fail() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": 5}, _schema("calling.CallActionRequest"))
