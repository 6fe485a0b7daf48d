"""The UI's router and the checks every page passes: a session, the key behind it, CSRF.

- A page without a valid session redirects to ``/ui/sign-in`` (``303``); a form post
  without one is a ``403``. The key in the session is checked on every request
  (:meth:`~gateway.auth.Authenticator.principal_of`): revoked, expired or gone, the session
  ends. Reading needs ``registry:read``, changing anything ``registry:write``.
- Every form post carries the session's CSRF token (``403`` without it or with another);
  its body is read only after the session is checked, within
  ``gateway.requests.max_body_bytes``, and must be ``application/x-www-form-urlencoded``.
- The UI needs keys: in open mode (no key exists) nobody can sign in, and the sign-in page
  says how to create one (docs/ui.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from lockgate.gateway.auth import Principal
from lockgate.gateway.body import read_body
from lockgate.gateway.clock import SYSTEM_CLOCK, Clock
from lockgate.gateway.config import ConfigError, LockgateSettings
from lockgate.gateway.errors import AuthenticationFailed
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.sessions import (
    COOKIE,
    COOKIE_PATH,
    MIN_SECRET_CHARS,
    Session,
    SessionSigner,
)
from lockgate.registry.errors import NotFound

log = logging.getLogger(__name__)
PREFIX = "/ui"
HERE = Path(__file__).parent
READ, WRITE = "registry:read", "registry:write"
MAX_FORM_FIELDS = 50
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}
T = TypeVar("T")


class UIError(Exception):
    """A page that says what went wrong: ``status``, a title and a message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class SignInRequired(Exception):
    """No valid session (or its key is no longer valid): sign in again."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in key and its session."""

    principal: Principal
    session: Session

    @property
    def can_write(self) -> bool:
        return self.principal.has_scope(WRITE)


class UI:
    """What the pages share: the session signer, the templates and the clock."""

    def __init__(self, settings: LockgateSettings, clock: Clock = SYSTEM_CLOCK) -> None:
        ui = settings.ui
        if ui.session_secret is not None:
            secret = ui.session_secret.get_secret_value()
            if len(secret) < MIN_SECRET_CHARS:
                raise ConfigError(
                    f"ui.session_secret_env names {ui.session_secret_env}, whose value has "
                    f"{len(secret)} characters; use at least {MIN_SECRET_CHARS} "
                    "(openssl rand -hex 32)"
                )
        elif ui.session_secret_env:
            raise ConfigError(
                f"ui.session_secret_env names {ui.session_secret_env}, but it is unset or "
                f"empty: set it (export {ui.session_secret_env}=$(openssl rand -hex 32)) or "
                "remove ui.session_secret_env"
            )
        else:
            # `lockgate serve` says so at start-up (serve.startup_report), once per server
            secret = secrets.token_urlsafe(32)
        self.signer = SessionSigner(secret.encode(), ui.session_ttl_s)
        self.clock = clock
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = _when

    # -- sessions ------------------------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        return self.signer.loads(request.cookies.get(COOKIE), self.clock.time())

    def set_session(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.signer.dumps(session),
            max_age=max(1, int(session.expires_at - self.clock.time())),
            path=_root(request) + COOKIE_PATH,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def new_session(self, key_id: str | None) -> Session:
        return self.signer.new(key_id, self.clock.time())

    # -- responses -----------------------------------------------------------------------

    def page(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        viewer = context.pop("viewer", None)
        html = self.templates.get_template(template).render(
            base=_root(request) + PREFIX,
            viewer=viewer,
            csrf=viewer.session.csrf if viewer is not None else context.pop("csrf", ""),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def redirect(self, request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(_root(request) + path, status_code=303, headers=SECURITY_HEADERS)

    # -- request checks ------------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer:
        """The signed-in key with ``registry:read``; :class:`SignInRequired` otherwise."""
        session = self.session_of(request)
        if session is None or session.key_id is None:
            raise SignInRequired()
        state: GatewayState = request.app.state.gateway
        principal = await state.auth.principal_of(session.key_id)
        if principal is None:
            raise SignInRequired("Your key was revoked or has expired: sign in with another.")
        if not principal.has_scope(READ):
            raise SignInRequired(f"Key {principal.name!r} lacks the {READ} scope.")
        return Viewer(principal, session)

    async def form(self, request: Request, session: Session | None) -> dict[str, str]:
        """The form a post sent, once its CSRF token is the session's; 403 otherwise."""
        origin = request.headers.get("origin")
        if origin is not None and _authority(origin) != request.headers.get("host"):
            raise UIError(403, "Refused", "This form was sent from another site.")
        if session is None:
            raise UIError(403, "Session expired", "Your session has ended: sign in again.")
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise UIError(415, "Unsupported form", "Forms are sent URL-encoded.")
        state: GatewayState = request.app.state.gateway
        raw = await read_body(request, state.settings.gateway.requests)
        try:
            parsed = parse_qs(
                raw.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            raise UIError(400, "Bad form", "The form could not be read.") from None
        fields = {name: values[0] for name, values in parsed.items()}
        if not session.token_matches(fields.get("csrf")):
            raise UIError(
                403, "Refused", "This form's security token is missing or stale: reload the "
                "page and send it again.",
            )  # fmt: skip
        return fields

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A registry call, off the event loop; a missing record is a 404 page."""
        try:
            return await anyio.to_thread.run_sync(lambda: func(*args, **kwargs))
        except NotFound as exc:
            raise UIError(404, "Not found", str(exc)) from None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _authority(origin: str) -> str | None:
    parts = urlsplit(origin)
    return parts.netloc or None


def safe_next(target: str | None) -> str:
    """A path under /ui to go back to after signing in; anything else: the prompt list."""
    if (
        target
        and target.startswith(PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and "//" not in target
        and not target.startswith(PREFIX + "/sign-")
    ):
        return target
    return PREFIX + "/prompts"


def get_ui(request: Request) -> UI:
    ui: UI = request.app.state.ui
    return ui


UIDep = Annotated[UI, Depends(get_ui)]
router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("")
@router.get("/")
async def home(request: Request, ui: UIDep) -> Response:
    return ui.redirect(request, PREFIX + "/prompts")


@router.get("/sign-in")
async def sign_in_page(request: Request, ui: UIDep) -> Response:
    session = ui.session_of(request)
    if session is not None and session.key_id is not None:
        try:
            await ui.viewer(request)
            return ui.redirect(request, safe_next(request.query_params.get("next")))
        except SignInRequired:
            session = None
    return await _sign_in_form(request, ui, session)


async def _sign_in_form(
    request: Request, ui: UI, session: Session | None, error: str = "", status: int = 200,
    next_page: str | None = None,
) -> Response:  # fmt: skip
    if session is None or session.key_id is not None:
        session = ui.new_session(None)
    state: GatewayState = request.app.state.gateway
    try:
        open_mode = await state.auth.is_open()
    except Exception:  # boundary: the registry is down; the form still shows
        open_mode = False
    params = request.query_params
    response = ui.page(
        request, "sign_in.html", status, csrf=session.csrf, error=error,
        notice=params.get("reason", "")[:200], signed_out="signed_out" in params,
        open_mode=open_mode, next=safe_next(next_page or params.get("next")),
    )  # fmt: skip
    ui.set_session(request, response, session)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, ui: UIDep) -> Response:
    session = ui.session_of(request)
    if session is None:
        raise UIError(
            403, "Refused", "The sign-in form expired or cookies are off: reload the page."
        )
    fields = await ui.form(request, session)
    secret = fields.get("key", "").strip()
    state: GatewayState = request.app.state.gateway
    back = fields.get("next")
    if not secret:
        return await _sign_in_form(request, ui, session, "Enter an API key.", 400, back)
    try:
        principal = await state.auth.authenticate({"authorization": f"Bearer {secret}"})
    except AuthenticationFailed:
        return await _sign_in_form(
            request, ui, session, "That key is unknown, revoked or expired.", 401, back
        )
    if principal.key_id is None:
        message = (
            "This gateway has no API keys (open mode), and the UI needs one: create a key "
            "with lockgate keys create --name NAME --scopes registry:read,registry:write"
        )
        return await _sign_in_form(request, ui, session, message, 403, back)
    if not principal.has_scope(READ):
        message = f"Key {principal.name!r} lacks the {READ} scope, which the UI needs."
        return await _sign_in_form(request, ui, session, message, 403, back)
    response = ui.redirect(request, safe_next(back))
    ui.set_session(request, response, ui.new_session(principal.key_id))  # a new token
    log.info("ui: key %s signed in", principal.key_id)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, ui: UIDep) -> Response:
    await ui.form(request, ui.session_of(request))
    response = ui.redirect(request, PREFIX + "/sign-in?signed_out=1")
    ui.set_session(request, response, ui.new_session(None))
    return response


async def _ui_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UIError)
    ui: UI = request.app.state.ui
    viewer = None
    try:
        viewer = await ui.viewer(request)
    except Exception:  # boundary: an error page shows even without a session
        viewer = None
    return ui.page(
        request, "error.html", exc.status, viewer=viewer, title=exc.title, message=exc.message
    )


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    ui: UI = request.app.state.ui
    if request.method not in ("GET", "HEAD"):
        message = exc.reason or "Your session has ended: sign in again."
        return ui.page(request, "error.html", 403, title="Sign in again", message=message)
    target = request.url.path[len(_root(request)) :]
    if request.url.query:
        target += "?" + request.url.query
    location = f"{PREFIX}/sign-in?next={quote(safe_next(target), safe='/')}"
    if exc.reason:
        location += "&reason=" + quote(exc.reason)
    response = ui.redirect(request, location)
    ui.set_session(request, response, ui.new_session(None))
    return response


def mount(app: FastAPI, settings: LockgateSettings) -> None:
    """Serve the UI at /ui on ``app`` (unless ``ui.enabled`` is false)."""
    if not settings.ui.enabled:
        return
    from lockgate.gateway.ui import calls, jobs, models, monitoring, prompts

    app.state.ui = UI(settings)
    app.add_exception_handler(UIError, _ui_error)
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.include_router(router)
    app.include_router(prompts.router)
    from lockgate.gateway.ui import evidence, labels, playground

    for prompt_pages in (labels, playground, evidence):  # label control, playground, evidence
        app.include_router(prompt_pages.router)
    for pages in (calls, models, jobs, monitoring):  # read-only pages
        app.include_router(pages.router)
    app.mount(PREFIX + "/static", StaticFiles(directory=HERE / "static"), name="ui-static")
