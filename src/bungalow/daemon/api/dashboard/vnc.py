"""``/v1/vms/NAME/vnc/ws``: a VM's VNC server over a websocket, for noVNC in the browser.

RFB bytes go both ways as binary frames between the websocket and the VM's VNC Unix
socket (``RunFiles.vnc``), as websockify does; the subprotocol ``binary`` is accepted
when asked. The ticket (``POST /auth/tickets`` with purpose ``vnc``) came with a
one-time VNC password the daemon set over QMP (vms/screen.py, as ``bungalow vnc``
does); it is expired when the websocket ends, so it opens one viewer only.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from bungalow.daemon.api import bridge
from bungalow.daemon.api.access import refuse, see_vm
from bungalow.daemon.api.dashboard.auth import DashboardAuth
from bungalow.daemon.vms import screen
from bungalow.daemon.vms.manager import VmManager
from bungalow.errors import BungalowError, InvalidStateError


async def vnc_bridge(websocket: WebSocket, auth: DashboardAuth, vms: VmManager) -> None:
    """Check the ticket and Origin, then carry bytes until either side closes."""
    name = websocket.path_params["name"]
    try:
        session = auth.redeem(websocket.scope, "vnc", name)
        see_vm(auth.projects, name, session.project)
        path = screen.vnc_socket(vms, name)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            raise InvalidStateError(
                f"The VM {name} has no screen now; start it with `bungalow start {name}`."
            ) from None
    except BungalowError as exc:
        await refuse(websocket.scope, websocket.receive, websocket.send, exc)
        return
    wanted = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="binary" if "binary" in wanted else None)
    try:
        carried = bridge.carry(websocket, reader, writer)
        await auth.while_session_lasts(session, carried, websocket.send)
    finally:
        await screen.expire_vnc_password(vms, name)
