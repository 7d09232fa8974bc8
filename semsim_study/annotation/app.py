"""The annotation web app (Flask; served by waitress, see cli.py).

One page (templates/index.html + static/app.js) talks to a small JSON API:

- ``POST /api/session {"token"}``: checks a per-annotator token (made by ``tokens``) and keeps
  it in an HttpOnly, SameSite=Strict cookie, so the annotator can stop and come back;
  ``GET /api/session`` says who is signed in (or null); ``DELETE /api/session`` forgets it;
- ``GET /api/next``: the item to answer now (the same one until answered) and progress;
- ``POST /api/answer {"ref", "answer", "lead_time"?}``: stores the answer (and the seconds the
  person spent on the item, if sent) at once, returns the next item;
- ``GET /img/<ref>/<kind>``: an image of the item this annotator is being shown, looked up
  by an opaque ref (never a path); protocol A serves no original.
- ``GET /admin`` (a page) and ``GET /api/admin/status`` (JSON): the campaign's state
  (status.py), for the admin token only (``tokens --admin``; as a cookie set by
  ``POST /api/admin/session {"token"}``, or ``Authorization: Bearer``): 401 without it, 403 for
  an annotator's token.

Gold items (gold.py, at ``gold_rate``) are served exactly like study items, under opaque refs;
their answers are checked against their known answer and stored apart (store.py).

An item reaches the client as ``{ref, protocol, question, candidates, images}``: no item id
(it names the model and attack), no truth. Every input is checked; a bad one gets a JSON
error with a 4xx status and changes nothing. POSTs must be JSON from the app's own origin.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, jsonify, render_template, request, send_file
from werkzeug.exceptions import HTTPException

from . import gold, status
from .catalog import Catalog
from .store import AlreadyAnswered, ItemComplete, NotOffered, Pool, Store

COOKIE = "semsim_annotator"
ADMIN_COOKIE = "semsim_admin"
COOKIE_MAX_AGE = 30 * 24 * 3600
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


#: Host names the app answers to unless told otherwise (``allowed_hosts``): a page on another
#: site that resolves its own name to 127.0.0.1 (DNS rebinding) is refused.
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def hostname(netloc: str) -> str:
    """'Example.org:8765' -> 'example.org', '[::1]:80' -> '::1' (lower case, no port)."""
    name = urlsplit("//" + netloc).hostname
    return (name or "").lower()


def with_token_cookie(resp: Response, name: str, token: str) -> Response:
    """The sign-in cookie: HttpOnly, same-site only, Secure when served over HTTPS."""
    resp.set_cookie(name, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict",
                    secure=request.is_secure, path="/")
    return resp


def create_app(catalog: Catalog, store: Store, annotators_per_item: int, seed: int = 0,
               lease_seconds: float = 900.0, allowed_hosts: tuple[str, ...] = DEFAULT_HOSTS,
               max_views_per_original: int | None = None, gold_rate: float = 0.0) -> Flask:
    """The app; ``max_views_per_original`` None lets a person judge every reconstruction of an
    original (``serve`` passes ``annotate.app.max_views_per_original``, 1 by default)."""
    if annotators_per_item < 1:
        raise ValueError("annotators_per_item must be at least 1")
    hosts = frozenset(h.lower().strip("[]") for h in allowed_hosts)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=4096)
    golden = gold.build(catalog, store.ref, seed) if gold_rate > 0 else []
    by_ref = {**catalog.by_ref, **{e.ref: e for e in golden}}
    if len(by_ref) != len(catalog.by_ref) + len(golden):
        raise ValueError("a gold item got the ref of another item; regenerate the database secret")
    pool = Pool(catalog.item_ids, seed, groups=[gold.exposure_key(e.task) for e in catalog.entries],
                max_views=max_views_per_original, gold_rate=gold_rate,
                gold={e.task.item_id: (e.task.kind, gold.exposure_key(e.task) if e.task.shows_original else None)
                      for e in golden})
    app.config["POOL"] = pool  # serve prints what K needs under the exposure rule
    tasks = {e.task.item_id: e.task for e in catalog.entries}
    k = annotators_per_item

    # ------------------------------------------------------------------ helpers

    def annotator() -> str:
        token = request.cookies.get(COOKIE, "")
        who = store.authenticate(token) if token else None
        if who is None:
            raise ApiError(401, "not signed in: enter the token the organiser gave you")
        return who

    def json_body(keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
        if not request.is_json:
            raise ApiError(415, "send application/json")
        try:
            body = request.get_json(silent=True)
        except (RecursionError, ValueError):  # e.g. 2,000 nested brackets: malformed, not a server error
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        if not set(keys) <= set(body) <= set(keys) | set(optional):
            raise ApiError(400, f"the body must have exactly the fields {', '.join(keys)}"
                                + (f" (and optionally {', '.join(optional)})" if optional else ""))
        for key in keys:
            if not isinstance(body[key], str) or not 0 < len(body[key]) <= 200:
                raise ApiError(400, f"{key} must be a non-empty string of at most 200 characters")
        return body

    def admin() -> None:
        """The admin token, from the Authorization header or the admin cookie; else 401, or 403
        when what was sent (or the annotator cookie) is an annotator's token."""
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else request.cookies.get(ADMIN_COOKIE, "")
        if token and store.is_admin(token):
            return
        if (token and store.authenticate(token)) or store.authenticate(request.cookies.get(COOKIE, "")):
            raise ApiError(403, "an annotator's token does not open the status page; use the admin token")
        raise ApiError(401, "the status page needs the admin token (python -m semsim_study.annotation tokens --admin)")

    def item_json(item_id: str | None) -> dict | None:
        if item_id is None:
            return None
        entry = catalog.by_item.get(item_id) or by_ref[store.ref(item_id)]
        task = entry.task
        return {
            "ref": entry.ref,
            "protocol": task.protocol,
            "question": catalog.question(task),
            "candidates": list(task.candidates),
            "images": {kind: f"/img/{entry.ref}/{kind}" for kind in entry.images},
        }

    def payload(who: str, item: str | None, progress: dict, **extra: Any) -> Response:
        return jsonify({**extra, "annotator": who, "item": item_json(item), "progress": progress})

    # ------------------------------------------------------------------ guards

    @app.before_request
    def known_host_and_same_origin():
        if hostname(request.host) not in hosts:
            raise ApiError(400, f"host {hostname(request.host)!r} is not served here (allowed: {', '.join(sorted(hosts))}; "
                                "serve --allowed-host adds one)")
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            # Host only, not scheme: behind an HTTPS proxy the page's origin is https:// while
            # the app sees http://. Browsers send Origin on every cross-site POST. Both Origin and
            # Host are client-sent, so the Origin must also name an allowed host.
            origin = request.headers.get("Origin")
            if origin is not None and (urlsplit(origin).netloc != request.host
                                       or hostname(urlsplit(origin).netloc) not in hosts):
                raise ApiError(403, "cross-origin request refused")

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify({"error": exc.message}), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/") or request.path.startswith("/img/"):
            return jsonify({"error": exc.description}), exc.code
        return exc

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # ------------------------------------------------------------------ routes

    @app.get("/")
    def index():
        return render_template("index.html")

    @app.get("/favicon.ico")
    def favicon():
        return Response(status=204)

    @app.post("/api/session")
    def sign_in():
        body = json_body(("token",))
        who = store.authenticate(body["token"])
        if who is None:
            raise ApiError(401, "unknown token")
        return with_token_cookie(jsonify({"annotator": who}), COOKIE, body["token"])

    @app.get("/api/session")
    def who_am_i():
        token = request.cookies.get(COOKIE, "")
        return jsonify({"annotator": store.authenticate(token) if token else None})

    @app.delete("/api/session")
    def sign_out():
        resp = jsonify({"signed_out": True})
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
        return resp

    @app.get("/api/next")
    def next_item():
        who = annotator()
        return payload(who, *store.next_item(who, pool, k, lease_seconds))

    @app.post("/api/answer")
    def answer():
        who = annotator()
        body = json_body(("ref", "answer"), optional=("lead_time",))
        lead_time = body.get("lead_time")
        if lead_time is not None and (isinstance(lead_time, bool) or not isinstance(lead_time, (int, float))
                                      or not 0 <= lead_time < float("inf")):
            raise ApiError(400, "lead_time must be the seconds spent on the item, a number >= 0")
        if lead_time is not None and lead_time > 86400:
            lead_time = None  # a page left open for over a day: the answer counts, its time does not
        entry = by_ref.get(body["ref"])
        if entry is None:
            raise ApiError(404, "unknown item")
        if body["answer"] not in entry.task.candidates:
            raise ApiError(400, "the answer is not one of this item's choices")
        correct = entry.task.correct(body["answer"]) if isinstance(entry.task, gold.GoldItem) else None
        try:
            stored, item, progress = store.answer(who, entry.task.item_id, entry.task.protocol, body["answer"],
                                                  pool, k, lease_seconds,
                                                  None if lead_time is None else round(float(lead_time), 3), correct)
        except NotOffered:
            raise ApiError(409, "this item is not the one you are being shown; reload the page") from None
        except AlreadyAnswered:
            raise ApiError(409, "you already answered this item differently; answers are final") from None
        except ItemComplete:
            raise ApiError(409, "this image got all its answers while you were away; here is the next one") from None
        return payload(who, item, progress, stored=stored)

    @app.get("/img/<ref>/<kind>")
    def image(ref: str, kind: str):
        who = annotator()
        entry = by_ref.get(ref)
        if entry is None or kind not in entry.images:
            abort(404)
        if store.current_offer(who) != entry.task.item_id:
            raise ApiError(403, "this image is not part of the item you are being shown")
        source = entry.images[kind]  # a resolved file, or the PNG bytes of a gold noise image
        source = io.BytesIO(source) if isinstance(source, bytes) else source
        resp = send_file(source, mimetype="image/png", conditional=False, etag=False, max_age=0)
        resp.headers["Cache-Control"] = "private, no-store"
        return resp

    @app.post("/api/admin/session")
    def admin_sign_in():
        body = json_body(("token",))
        if not store.is_admin(body["token"]):
            if store.authenticate(body["token"]):
                raise ApiError(403, "an annotator's token does not open the status page; use the admin token")
            raise ApiError(401, "unknown admin token")
        return with_token_cookie(jsonify({"admin": True}), ADMIN_COOKIE, body["token"])

    @app.get("/api/admin/status")
    def admin_status():
        admin()
        return jsonify(status.status(store, tasks, k))

    @app.get("/admin")
    def admin_page():
        try:
            admin()
        except ApiError as exc:
            return render_template("admin.html", state=None, exposure=None, error=exc.message), exc.status
        state = status.status(store, tasks, k)
        exposure = status.exposure_line(state["campaign"]) if state["campaign"] else None
        return render_template("admin.html", state=state, exposure=exposure, error=None)

    return app
