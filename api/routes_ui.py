"""The browser pages: sign-in, review queue, camera wall, zone editor, statistics.

Pages are thin Jinja2 shells; the scripts in `static/` fetch everything through the REST API,
so the browser and a machine see the same rules. No page loads anything from another origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from citypatrol.api import i18n
from citypatrol.api.auth import ANYONE, Principal
from citypatrol.api.state import AppState, app_state
from citypatrol.pipeline.config.models import ZoneKind
from citypatrol.pipeline.types import CaseStatus

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
PAGES = {"review": "review.html", "cameras": "cameras.html", "zones": "zones.html", "stats": "stats.html"}


def _lang(request: Request) -> str:
    lang = request.cookies.get("cp_lang", i18n.DEFAULT)
    return lang if lang in i18n.LANGS else i18n.DEFAULT


def _page(request: Request, state: AppState, who: Principal | None, page: str) -> HTMLResponse:
    lang = _lang(request)
    t = i18n.strings(lang)
    boot = {
        "lang": lang, "t": t, "timezone": state.config.site.timezone, "categories": i18n.categories(state.config.categories),
        "statuses": [s.value for s in CaseStatus], "zone_kinds": list(dict.fromkeys([*(k.value for k in ZoneKind), *(c.zone_kind for c in state.config.categories)])),
        "user": {"name": who.name, "role": who.role.value} if who else None,
    }
    context = {"t": t, "lang": lang, "page": page, "user": who, "boot": boot, "site": state.config.site.name}
    response = templates.TemplateResponse(request, PAGES.get(page, f"{page}.html"), context)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, state: Annotated[AppState, Depends(app_state)]) -> HTMLResponse:
    return _page(request, state, None, "login")


@router.get("/", response_class=HTMLResponse)
def review_page(request: Request, state: Annotated[AppState, Depends(app_state)],
                who: Annotated[Principal, Depends(ANYONE)]) -> HTMLResponse:
    return _page(request, state, who, "review")


@router.get("/cameras", response_class=HTMLResponse)
def cameras_page(request: Request, state: Annotated[AppState, Depends(app_state)],
                 who: Annotated[Principal, Depends(ANYONE)]) -> HTMLResponse:
    return _page(request, state, who, "cameras")


@router.get("/zones", response_class=HTMLResponse)
def zones_page(request: Request, state: Annotated[AppState, Depends(app_state)],
               who: Annotated[Principal, Depends(ANYONE)]) -> HTMLResponse:
    return _page(request, state, who, "zones")


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request, state: Annotated[AppState, Depends(app_state)],
               who: Annotated[Principal, Depends(ANYONE)]) -> HTMLResponse:
    return _page(request, state, who, "stats")
