"""The sentence a dashboard listener gives when it cannot bind: the cause and its remedy."""

from __future__ import annotations

import errno
import os
import socket

from bungalow.daemon.server.dashboard import bind_refusal


def _refused(host: str, port: int) -> OSError:
    try:  # as DashboardListener._bind does
        socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
        socket.create_server((host, port)).close()
    except OSError as exc:
        return exc
    raise AssertionError(f"{host}:{port} could be bound")


def test_a_taken_port_says_to_free_it_or_choose_another() -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        sentence = bind_refusal("127.0.0.1", port, _refused("127.0.0.1", port))
    assert sentence == (
        f"The dashboard cannot listen on 127.0.0.1:{port} (Address already in use); free that "
        "port, or set another with listen in the [dashboard] section of config.toml and "
        "restart bungalowd."
    )


def test_an_address_of_another_host_says_so_not_that_the_port_is_taken() -> None:
    sentence = bind_refusal("192.0.2.7", 8250, _refused("192.0.2.7", 8250))  # TEST-NET-1
    assert sentence.startswith(
        f"The dashboard cannot listen on 192.0.2.7:8250 ({os.strerror(errno.EADDRNOTAVAIL)}): "
        "192.0.2.7 is not one of this host's addresses; set listen in the [dashboard]"
    )
    assert "free that port" not in sentence


def test_a_name_that_does_not_resolve_says_it_is_not_an_address() -> None:
    sentence = bind_refusal("no-such-host.invalid", 8250, _refused("no-such-host.invalid", 8250))
    assert sentence.startswith(
        "The dashboard cannot listen on no-such-host.invalid:8250: no-such-host.invalid is not "
        "an address this host can find ("
    )
    assert sentence.endswith("to one of this host's addresses.")


def test_an_ipv6_address_is_bracketed() -> None:
    exc = OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
    assert bind_refusal("::1", 8250, exc).startswith("The dashboard cannot listen on [::1]:8250 (")
