"""Defaults and fixed names of the 360dialog Calling API, in one place."""

from __future__ import annotations

from typing import Final

__all__ = (
    "API_KEY_ENV",
    "API_KEY_HEADER",
    "BASE_URL_ENV",
    "BIZ_OPAQUE_CALLBACK_DATA_MAX",
    "CALLS_PATH",
    "DEFAULT_ANSWER_WINDOW",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "INITIAL_RETRY_DELAY",
    "MAX_ERROR_BODY_BYTES",
    "MAX_REDIRECTS",
    "MAX_RESPONSE_BYTES",
    "MAX_RETRIES_LIMIT",
    "MAX_RETRY_DELAY",
    "PERMISSIONS_PATH",
    "SETTINGS_PATH",
)

DEFAULT_BASE_URL: Final = "https://waba-v2.360dialog.io"
API_KEY_HEADER: Final = "D360-API-KEY"
API_KEY_ENV: Final = "D360_API_KEY"
BASE_URL_ENV: Final = "D360_BASE_URL"

CALLS_PATH: Final = "/calling/calls"
PERMISSIONS_PATH: Final = "/calling/permissions/"
SETTINGS_PATH: Final = "/calling/settings"

# Seconds for one attempt (connect, send, read). aiohttp's own default is 300 s.
DEFAULT_TIMEOUT: Final = 10.0
# Seconds to get a connection, including the wait for a free slot in the pool.
DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_MAX_RETRIES: Final = 2
MAX_RETRIES_LIMIT: Final = 10
DEFAULT_POOL_SIZE: Final = 100
# Below the idle timeout of common load balancers, so a pooled socket is dropped by us first.
DEFAULT_KEEPALIVE_TIMEOUT: Final = 10.0
# Meta gives a business 30-60 s after the connect webhook to answer; plan for the short end.
DEFAULT_ANSWER_WINDOW: Final = 30.0
# A Retry-After above this is not slept on: the error is raised for the caller to decide.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0
INITIAL_RETRY_DELAY: Final = 0.5
MAX_RETRY_DELAY: Final = 8.0
# The API's answers are a few KB; anything far larger is refused rather than buffered. The cap
# is on the decoded size: a compressed body is inflated only this far.
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024
# What an error keeps of a response body (errors outlive requests: logs, task queues).
MAX_ERROR_BODY_BYTES: Final = 64 * 1024
MAX_REDIRECTS: Final = 3

BIZ_OPAQUE_CALLBACK_DATA_MAX: Final = 512
