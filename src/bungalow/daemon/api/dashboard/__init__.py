"""The web dashboard's server side: its app on its own TCP listener (server/dashboard.py),
and ``router``, the admin's door to it on the daemon's socket (``POST /v1/dashboard``)."""

from bungalow.daemon.api.dashboard.control import router

__all__ = ["router"]
