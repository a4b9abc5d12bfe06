"""The admin's door to the dashboard, on the daemon's socket: ``bungalow dashboard``."""

from __future__ import annotations

from fastapi import APIRouter

from bungalow.daemon.api.deps import Svc
from bungalow.daemon.api.schemas import DashboardInfo, DashboardToken

router = APIRouter(prefix="/v1/dashboard")


@router.post("")
async def open_dashboard(svc: Svc) -> DashboardInfo:
    """Open the dashboard's listener if it is not open (on its configured address), and a
    one-time login URL for the admin (400 with a sentence if the port is taken)."""
    base, fingerprint = await svc.dashboard.open()
    ticket = svc.sessions.issue_login()
    return DashboardInfo(url=f"{base}/login?ticket={ticket}", fingerprint=fingerprint)


@router.get("/token")
async def dashboard_token(svc: Svc) -> DashboardToken:
    """The admin's token, to log in to the dashboard from another browser."""
    return DashboardToken(token=svc.dashboard_token)
