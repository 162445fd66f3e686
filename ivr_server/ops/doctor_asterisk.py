"""Doctor's checks of Asterisk, through ARI: credentials and version, the Stasis app, the
modules the server needs, the dialplan (only with an Asterisk CLI: ARI cannot list it), the
endpoints' codecs, and the clock against Asterisk's ``Date`` header."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime

import httpx

from ivr_server.config import Settings, ari_ssl_context
from ivr_server.errors import AriAuthError, AriError, AriNotFound, ConfigError
from ivr_server.ops.doctor import Check, DoctorOptions, Finding, fail, ok, warn
from ivr_server.telephony.admission import overload_prompt
from ivr_server.telephony.ari_rest import AriRestClient

# Without these ExternalMedia calls cannot work; res_ari_* answer the REST calls the server makes.
REQUIRED_MODULES = (
    "res_ari",
    "res_stasis",
    "app_stasis",
    "res_pjsip",
    "chan_pjsip",
    "chan_rtp",
    "res_ari_channels",
    "res_ari_bridges",
    "res_ari_applications",
)
CODEC_MODULES = {"ulaw": ("codec_ulaw",), "slin16": ("codec_ulaw", "codec_resample")}
SKEW_WARN_S = 1.0
SKEW_FAIL_S = 30.0


@asynccontextmanager
async def _rest(s: Settings, options: DoctorOptions) -> AsyncIterator[AriRestClient]:
    rest = AriRestClient(
        s.ari_url,
        s.ari_username,
        s.ari_password,
        connect_timeout_s=min(s.ari_connect_timeout_s, options.timeout_s),
        request_timeout_s=min(s.ari_request_timeout_s, options.timeout_s),
        ssl_context=ari_ssl_context(s),
    )
    try:
        yield rest
    finally:
        await rest.aclose()


async def check_asterisk(s: Settings, options: DoctorOptions) -> list[Finding]:
    """ARI first: when it does not answer, the checks that need it say so instead of repeating
    the same error."""
    async with _rest(s, options) as rest:
        try:
            info = await rest.asterisk_info()
        except AriAuthError:
            return _unchecked(
                fail(
                    "ari",
                    f"Asterisk at {s.ari_url} refused user {s.ari_username!r}",
                    "check IVR_ARI_USERNAME/IVR_ARI_PASSWORD against ari.conf",
                )
            )
        except ConfigError as err:  # an untrusted TLS certificate
            return _unchecked(fail("ari", str(err).split(";")[0], str(err).split("; ")[-1]))
        except AriError as err:
            return _unchecked(
                fail(
                    "ari",
                    f"ARI at {s.ari_url} does not answer: {err}",
                    "start Asterisk, or set IVR_ARI_URL to its http.conf address "
                    "(res_ari and http.conf enabled=yes)",
                )
            )
        version = str(info.get("system", {}).get("version", "unknown"))
        findings = [ok("ari", f"Asterisk {version} at {s.ari_url}, user {s.ari_username!r}")]
        findings.append(await _app(rest, s.ari_app))
        modules = {str(m["name"]).removesuffix(".so") for m in await rest.request("GET", "/asterisk/modules")}
        findings.append(_modules(modules))
        findings.append(await _codecs(rest, s, modules))
        findings.append(overload_prompt_finding(s, modules))
        findings.append(await _dialplan(s, options))
    findings.append(await _clock(s, options))
    return findings


def _unchecked(first: Finding) -> list[Finding]:
    why = "not checked: ARI does not answer"
    return [first] + [warn(name, why) for name in ("stasis app", "modules", "codecs", "dialplan")]


async def _app(rest: AriRestClient, app: str) -> Finding:
    try:
        application = await rest.application(app)
    except AriNotFound:  # Asterisk knows an app only while a client holds its WebSocket
        return warn(
            "stasis app",
            f"no ivr-server is connected as Stasis app {app!r}",
            "start it: systemctl start ivr-server (or ivr-server run); IVR_ARI_APP must "
            "match the dialplan's Stasis(<app>,...)",
        )
    calls = len(application.channel_ids)
    return ok("stasis app", f"an ivr-server is connected as {app!r} ({calls} channels in it)")


def _modules(loaded: set[str]) -> Finding:
    missing = [m for m in REQUIRED_MODULES if m not in loaded]
    if missing:
        return fail(
            "modules",
            f"not loaded: {', '.join(missing)}",
            f"load them in modules.conf (load = {missing[0]}.so) and restart Asterisk",
        )
    return ok("modules", f"loaded: {', '.join(REQUIRED_MODULES)}")


def overload_prompt_finding(s: Settings, modules: set[str]) -> Finding:
    """A call declined for load hears the server's prompt only if Asterisk can fetch its URL."""
    url = overload_prompt(s) if s.admission == "load" else ""
    if not url.startswith(("http://", "https://")):
        return ok("overload prompt", f"IVR_OVERLOAD_PROMPT: {url!r}" if url else "none played")
    missing = [m for m in ("res_curl", "res_http_media_cache") if m not in modules]
    if missing:
        return warn(
            "overload prompt",
            f"calls declined for load get {url}, but Asterisk lacks {', '.join(missing)} to fetch it",
            f"load {missing[0]}.so in modules.conf, or set IVR_OVERLOAD_PROMPT_URL to a sound Asterisk has",
        )
    return ok("overload prompt", f"Asterisk fetches {url}")


async def _codecs(rest: AriRestClient, s: Settings, modules: set[str]) -> Finding:
    """The media format's translators are loaded, and which PJSIP endpoints would transcode."""
    missing = [m for m in CODEC_MODULES[s.media_format] if m not in modules]
    if missing:
        return fail(
            "codecs",
            f"IVR_MEDIA_FORMAT={s.media_format} needs {', '.join(missing)}",
            f"load {missing[0]}.so in modules.conf, or set IVR_MEDIA_FORMAT=ulaw",
        )
    allows: dict[str, str] = {}
    for endpoint in await rest.request("GET", "/endpoints"):
        if endpoint.get("technology") != "PJSIP":
            continue
        name = str(endpoint["resource"])
        try:
            attrs = await rest.request("GET", f"/asterisk/config/dynamic/res_pjsip/endpoint/{name}")
        except AriError:  # the sorcery config is not exposed on this Asterisk: say what was seen
            break
        allows[name] = next((str(a["value"]) for a in attrs if a["attribute"] == "allow"), "")
    seen = (
        ", ".join(f"{n} allow={a}" for n, a in sorted(allows.items())) or "no PJSIP endpoint config visible"
    )
    if s.media_format == "ulaw":
        transcoding = sorted(n for n, a in allows.items() if "ulaw" not in a)
        if transcoding:
            return warn(
                "codecs",
                f"IVR_MEDIA_FORMAT=ulaw; {seen}",
                f"add allow=ulaw to {', '.join(transcoding)} (else Asterisk transcodes)",
            )
    return ok("codecs", f"IVR_MEDIA_FORMAT={s.media_format}; {seen}")


_CONTEXT = re.compile(r"^\[ Context '([^']+)' created by '([^']+)' \]")
_EXTEN = re.compile(r"^\s+'([^']+)' =>")
_STASIS = re.compile(r"Stasis\(([^,)]+)(?:,([^,)]*))?")


def stasis_routes(dialplan: str, app: str) -> list[tuple[str, str, str]]:
    """(context, extension, flow) of each Stasis(app[,flow]) in `dialplan show`'s output."""
    routes: list[tuple[str, str, str]] = []
    context = exten = ""
    for line in dialplan.splitlines():
        if m := _CONTEXT.match(line):
            context = m.group(1) if m.group(2) != "res_stasis" else ""  # the app's own, not a route
            continue
        if m := _EXTEN.match(line):
            exten = m.group(1)
        if context and (m := _STASIS.search(line)) and m.group(1).strip() == app:
            routes.append((context, exten, (m.group(2) or "").strip()))
    return routes


async def _dialplan(s: Settings, options: DoctorOptions) -> Finding:
    if not options.asterisk_cli:
        return ok("dialplan", 'not read: ARI cannot list it (--asterisk-cli "asterisk -rx" reads it)')
    argv = [*options.asterisk_cli, "dialplan show"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), options.timeout_s / 2)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return fail(
            "dialplan",
            f"{shlex.join(argv)} did not finish",
            "check that Asterisk runs and its control socket answers",
        )
    except OSError as e:
        return fail(
            "dialplan",
            f"{shlex.join(argv)}: {e}",
            "give --asterisk-cli a command that runs `asterisk -rx`",
        )
    if proc.returncode != 0:
        said = (err or out).decode(errors="replace").strip().splitlines()[:1]
        return fail(
            "dialplan",
            f"{shlex.join(argv)} exited {proc.returncode}: {' '.join(said)}",
            "run doctor as a user allowed to use the Asterisk CLI (group asterisk)",
        )
    routes = stasis_routes(out.decode(errors="replace"), s.ari_app)
    if not routes:
        return fail(
            "dialplan",
            f"no extension runs Stasis({s.ari_app},...)",
            f"add e.g. exten => 100,1,Stasis({s.ari_app},digits) to extensions.conf, then `dialplan reload`",
        )
    known = _known_flows(s)
    unknown = sorted({f"{e}@{c}:{f}" for c, e, f in routes if f and f not in known})
    shown = ", ".join(f"{e}@{c}->{f or s.default_flow}" for c, e, f in routes)
    if unknown:
        return warn(
            "dialplan",
            f"routes {shown}; no such flow: {', '.join(unknown)}",
            f"add the flow to {s.flows_dir} or fix the Stasis() argument",
        )
    return ok("dialplan", f"routes {shown}")


def _known_flows(s: Settings) -> set[str]:
    from ivr_server.dialog.flows import FLOWS
    from ivr_server.dialog.spec.loader import check_file

    names = set(FLOWS)
    for path in sorted(s.flows_dir.glob("*.yaml")) if s.flows_dir.is_dir() else []:
        flow, _ = check_file(path)
        if flow is not None:
            names.add(flow.name)
    return names


async def _clock(s: Settings, options: DoctorOptions) -> Finding:
    """Skew against the Date header of Asterisk's HTTP server (any answer carries one, a 401 too);
    Date has whole seconds, so a clock within that second counts as no skew."""
    url = s.ari_url.rstrip("/") + "/ari/asterisk/info"
    ssl = ari_ssl_context(s)
    try:
        async with httpx.AsyncClient(timeout=min(options.timeout_s, 5.0), verify=ssl or True) as http:
            before = time.time()
            resp = await http.get(url)
            after = time.time()
    except httpx.HTTPError as err:
        return warn("clock", f"not checked: {url}: {err or type(err).__name__}")
    header = resp.headers.get("date")
    if not header:
        return warn("clock", "not checked: Asterisk's answer has no Date header")
    theirs = parsedate_to_datetime(header).timestamp()
    ours = (before + after) / 2
    skew = 0.0 if theirs <= ours < theirs + 1 else min(abs(ours - theirs), abs(ours - theirs - 1))
    return skew_finding("clock", skew, "Asterisk")


def skew_finding(check: str, skew_s: float, other: str) -> Finding:
    fix = "run NTP on both hosts (systemctl enable --now systemd-timesyncd or chrony)"
    if skew_s > SKEW_FAIL_S:
        return fail(check, f"this host's clock is {skew_s:.1f} s off {other}'s", fix)
    if skew_s > SKEW_WARN_S:
        return warn(check, f"this host's clock is {skew_s:.1f} s off {other}'s", fix)
    return ok(check, f"within {SKEW_WARN_S:g} s of {other}'s")


ASTERISK_CHECKS: list[tuple[str, Check]] = [("ari", check_asterisk)]
