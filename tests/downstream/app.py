"""Code a user writes against the installed package: CI type-checks it with ``mypy --strict``
in a fresh venv holding only the built wheel (so ``py.typed`` and the public names are what a
downstream project sees). Not run; only checked."""

from __future__ import annotations

from d360calling import AsyncClient, Client, NoCallPermissionError, SettingsUpdate
from d360calling.webhooks import CallConnectEvent, CallRecord, WebhookReceiver


async def answer(client: AsyncClient, event: CallConnectEvent, sdp: str) -> None:
    await event.pre_accept(client, sdp)
    await event.accept(client, sdp)


def receiver(client: AsyncClient) -> WebhookReceiver:
    async def on_connect(event: CallConnectEvent) -> None:
        if event.is_inbound and event.sdp is not None:
            await answer(client, event, event.sdp)

    return WebhookReceiver(on_connect=on_connect, signing_secret="app-secret")


async def state_of(hook: WebhookReceiver, call_id: str) -> str | None:
    record: CallRecord | None = await hook.call(call_id)
    return None if record is None else record.state


def place(user: str, offer: str) -> str | None:
    with Client() as client:
        client.update_settings(SettingsUpdate.call_icon_visibility("DEFAULT"))
        try:
            return client.connect_call(to=user, sdp=offer).call_id
        except NoCallPermissionError as error:
            return error.message
