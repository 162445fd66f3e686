"""ARI REST calls over httpx, each with a timeout, errors mapped onto the AriError tree.

httpx.TimeoutException, httpx.TransportError  -> AriUnavailable
401 / 403                                      -> AriAuthError
404                                            -> AriNotFound (the channel or bridge is gone)
other 4xx / 5xx                                -> AriRequestError
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from ivr_server.errors import (
    AriAuthError,
    AriError,
    AriNotFound,
    AriRequestError,
    AriUnavailable,
    ConfigError,
    MediaError,
)
from ivr_server.telephony.ari_events import Channel, parse_channel

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Application:
    name: str
    channel_ids: frozenset[str]
    bridge_ids: frozenset[str]


@dataclass(frozen=True)
class ExternalMediaChannel:
    channel: Channel
    local_host: str  # where Asterisk sends from and expects our RTP
    local_port: int


class AriRestClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        connect_timeout_s: float,
        request_timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/ari"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(username, password.get_secret_value()),
            timeout=httpx.Timeout(request_timeout_s, connect=connect_timeout_s),
            transport=transport,
            verify=ssl_context if ssl_context is not None else True,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        try:
            resp = await self._http.request(method, path, params=clean, json=json)
        except httpx.TimeoutException as err:
            raise AriUnavailable(f"ARI {method} {path} timed out ({type(err).__name__})") from err
        except httpx.TransportError as err:
            untrusted = _cert_error(err)
            if untrusted is not None:  # not a passing outage: retrying will not help
                raise ConfigError(
                    f"IVR_ARI_URL {self.base_url}: Asterisk's TLS certificate is not trusted "
                    f"({untrusted.verify_message}); set IVR_ARI_TLS_CA_FILE to the certificate that signed it"
                ) from err
            raise AriUnavailable(f"ARI {method} {path} failed: {err or type(err).__name__}") from err
        if resp.status_code in (401, 403):
            raise AriAuthError(
                f"ARI refused the credentials ({resp.status_code}) at {self.base_url}: check "
                "IVR_ARI_USERNAME / IVR_ARI_PASSWORD against ari.conf"
            )
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("message", resp.text))
            except ValueError:
                message = resp.text
            kind = AriNotFound if resp.status_code == 404 else AriRequestError
            raise kind(method, path, resp.status_code, message[:200])
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as err:
            raise AriRequestError(method, path, resp.status_code, "answer is not JSON") from err

    # --- Asterisk and the application ---------------------------------------------------------
    async def asterisk_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.request("GET", "/asterisk/info")
        return info

    async def application(self, app: str) -> Application:
        data = await self.request("GET", f"/applications/{app}")
        return Application(
            name=str(data.get("name", app)),
            channel_ids=frozenset(map(str, data.get("channel_ids", []))),
            bridge_ids=frozenset(map(str, data.get("bridge_ids", []))),
        )

    async def channel_ids(self) -> frozenset[str]:
        return frozenset(str(c["id"]) for c in await self.request("GET", "/channels"))

    async def bridges(self) -> dict[str, str]:
        """Bridge id -> name."""
        return {str(b["id"]): str(b.get("name", "")) for b in await self.request("GET", "/bridges")}

    async def bridge_members(self) -> dict[str, frozenset[str]]:
        """Bridge id -> the ids of the channels in it."""
        return {
            str(b["id"]): frozenset(map(str, b.get("channels", [])))
            for b in await self.request("GET", "/bridges")
        }

    # --- Channels ---------------------------------------------------------------------------
    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        await self.request("DELETE", f"/channels/{channel_id}", params={"reason": reason})

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/variable", params={"variable": name, "value": value}
        )

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Leave the app: the next dialplan step, or ``context,extension,priority``."""
        params = {"context": context, "extension": extension, "priority": priority}
        given = {k: v for k, v in params.items() if v is not None}
        await self.request("POST", f"/channels/{channel_id}/continue", params=given or None)

    async def originate(
        self, *, endpoint: str, channel_id: str, app: str, app_args: str, timeout_s: int, caller_id: str = ""
    ) -> None:
        """Dial ``endpoint``; the channel enters ``app`` (StasisStart with ``app_args``) once it
        is answered, or is destroyed with the cause (busy, no answer, rejected)."""
        params = {"endpoint": endpoint, "app": app, "appArgs": app_args, "channelId": channel_id,
                  "timeout": timeout_s, "callerId": caller_id or None}  # fmt: skip
        await self.request("POST", "/channels", params=params)

    async def external_media(
        self, *, app: str, channel_id: str, external_host: str, media_format: str
    ) -> ExternalMediaChannel:
        data = await self.request(
            "POST",
            "/channels/externalMedia",
            params={
                "app": app,
                "channelId": channel_id,
                "external_host": external_host,
                "format": media_format,
                "encapsulation": "rtp",
                "transport": "udp",
                "connection_type": "client",
                "direction": "both",
            },
        )
        channel = parse_channel(data, "externalMedia answer")
        host = channel.channelvars.get("UNICASTRTP_LOCAL_ADDRESS")
        port = channel.channelvars.get("UNICASTRTP_LOCAL_PORT", "")
        if not host or not port.isdigit():
            raise MediaError(
                "Asterisk's externalMedia answer lacks UNICASTRTP_LOCAL_ADDRESS/PORT "
                f"(channelvars: {sorted(channel.channelvars)})"
            )
        return ExternalMediaChannel(channel, host, int(port))

    # --- Bridges ----------------------------------------------------------------------------
    async def create_bridge(self, bridge_id: str, name: str) -> None:
        await self.request("POST", "/bridges", params={"type": "mixing", "bridgeId": bridge_id, "name": name})

    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel", params={"channel": ",".join(channel_ids)}
        )

    async def remove_from_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        await self.request(
            "POST", f"/bridges/{bridge_id}/removeChannel", params={"channel": ",".join(channel_ids)}
        )

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")


async def best_effort(work: Awaitable[object], step: str) -> bool:
    """Await an ARI call whose target may already be gone (cleanup, reconciliation).

    A 404 means the goal is reached; any other ARI failure is logged, not raised, so the steps
    after it still run. Returns whether the step is done.
    """
    try:
        await work
    except AriNotFound:
        return True
    except AriError as err:
        log.warning("ari.step_failed", step=step, error=str(err))
        return False
    return True


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cert_error(err: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
