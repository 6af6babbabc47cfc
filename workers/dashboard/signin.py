"""Sign-in with an API token (into a session cookie) and sign-out."""

from __future__ import annotations

import secrets

from aiohttp import web

import projections
from workers.dashboard import context, render, session


def add_routes(app: web.Application) -> None:
    """Register the sign-in routes."""
    app.router.add_get("/signin", show, name="signin")
    app.router.add_post("/signin", sign_in, name="signin_post")
    app.router.add_post("/signout", sign_out, name="signout")


def _safe_next(value: object) -> str:
    """Where to go after sign-in: a path on this site, never another site."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return value
    return "/"


async def show(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    """GET /signin: the form (a fresh sign-in nonce in its own cookie, for its CSRF token)."""
    dash = context.dashboard_of(request)
    nonce = secrets.token_urlsafe(16)
    values = {
        "signin_csrf": session.csrf_token(dash.key, nonce, "signin"),
        "next": _safe_next(request.query.get("next")),
        "error": error,
    }
    response = render.page(request, "signin.html", values, status=status)
    session.set_cookie(response, request, session.SIGNIN_COOKIE, nonce)
    return response


async def sign_in(request: web.Request) -> web.StreamResponse:
    """POST /signin: a valid token opens a session; anything else shows the form again."""
    dash = context.dashboard_of(request)
    form = await request.post()
    nonce = request.cookies.get(session.SIGNIN_COOKIE, "")
    if not nonce or not session.check_csrf(dash.key, nonce, form.get("csrf"), "signin"):
        return await show(request, "the form expired; sign in again", 403)
    given = form.get("token")
    found = projections.authenticate(
        dash.tokens, f"Bearer {given if isinstance(given, str) else ''}"
    )
    if found is None:
        return await show(request, "that token is not one this host accepts", 401)
    response = render.redirect(_safe_next(form.get("next")))
    session.set_cookie(response, request, session.COOKIE, session.issue(dash.key, found))
    response.del_cookie(session.SIGNIN_COOKIE, path="/")
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """POST /signout: end the session in this browser."""
    response = render.redirect("/signin")
    response.del_cookie(session.COOKIE, path="/")
    return response
