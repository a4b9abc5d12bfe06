"""config.toml: defaults, and one sentence for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bungalow.daemon.server.config import DEFAULT_POOL, DEFAULT_POOL_IDLE, Config, load_config
from bungalow.errors import UserError


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "config.toml") == Config()
    assert Config().sandbox_pool == DEFAULT_POOL == 1
    assert Config().sandbox_pool_idle == DEFAULT_POOL_IDLE == 600.0  # a pool lapses in 10m


def test_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[sandboxes]\npool = 3\ntimeout = "90s"\npool_idle = "1h"\n')
    assert load_config(path) == Config(
        sandbox_pool=3, sandbox_timeout=90.0, sandbox_pool_idle=3600.0
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[sandboxes\n", "not valid TOML"),
        ("[sandboxes]\npool = -1\n", "sandboxes.pool"),
        ("[sandboxes]\npool = 99\n", "from 0 to 16"),
        ('[sandboxes]\ntimeout = "soon"\n', "not a duration"),
        ('[sandboxes]\ntimeout = "0s"\n', "must be positive"),
        ('[sandboxes]\npool_idle = "0s"\n', r"sandboxes\.pool_idle .* positive.* pool = 0"),
        ('[sandboxes]\npool_idle = "a while"\n', "not a duration"),
        ("[prices]\nvcpu_hour = -1\n", r"prices\.vcpu_hour .* 0 or more"),
        ('[prices]\ndisk_gib_month = "cheap"\n', r"prices\.disk_gib_month"),
        ("[prices]\nvcpu_hours = 1\n", "not a setting"),
        ('[prices]\ncurrency = "US dollars"\n', r"prices\.currency"),
        ("[dashboard]\nenabled = 1\n", r"dashboard\.enabled .* true or false"),
        ('[dashboard]\nlisten = "8250"\n', r"dashboard\.listen .* host:port"),
        ('[dashboard]\nlisten = "127.0.0.1:99999"\n', r"dashboard\.listen"),
        ('[dashboard]\ntls_cert = "/etc/hostname"\n', "go together"),
        ('[dashboard]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n', "absolute path"),
        ('[dashboard]\ntls_cert = "/nope.pem"\ntls_key = "/nope.key"\n', "not a file"),
        ("[dashboard]\nsession_minutes = 0\n", r"dashboard\.session_minutes"),
        ('[dashboard]\norigins = "https://a"\n', r"dashboard\.origins"),
        ("[dashboard]\nport = 1\n", r"dashboard\.port .* not a setting"),
    ],
)
def test_bad_values_are_one_sentence(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=words):
        load_config(path)


def test_allocation_ratios_are_read_and_checked(tmp_path: Path) -> None:
    from bungalow.host.allocation import Ratios

    path = tmp_path / "config.toml"
    path.write_text("[allocation]\ncpu = 2\nmemory = 1.5\n")
    assert load_config(path).ratios == Ratios(cpu=2.0, memory=1.5, disk=1.0)
    path.write_text("[allocation]\nmemory = 0\n")
    with pytest.raises(UserError, match=r"allocation\.memory"):
        load_config(path)


def test_prices_are_read(tmp_path: Path) -> None:
    from bungalow.daemon.state.records import Rates

    path = tmp_path / "config.toml"
    path.write_text('[prices]\nvcpu_hour = 0.05\ndisk_gib_month = 0\ncurrency = "EUR"\n')
    config = load_config(path)
    assert config.rates == Rates(vcpu_hour=0.05, memory_gib_hour=Rates().memory_gib_hour,
                                 disk_gib_month=0.0)  # fmt: skip
    assert config.currency == "EUR"


def test_the_dashboard_is_opt_in_on_loopback_and_tls_beyond(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    dashboard = load_config(path).dashboard
    assert not dashboard.enabled and (dashboard.host, dashboard.port) == ("127.0.0.1", 8250)
    assert dashboard.host_now() == "127.0.0.1" and not dashboard.tls("127.0.0.1")
    path.write_text('[dashboard]\nlisten = "[::]:9000"\norigins = ["https://vms.example/"]\n')
    dashboard = load_config(path).dashboard
    assert (dashboard.host, dashboard.port, dashboard.origins) == (
        "::",
        9000,
        ("https://vms.example",),
    )
    assert dashboard.host_now() == "127.0.0.1"  # not enabled: bungalow dashboard opens loopback
    assert dashboard.tls("::") and not dashboard.tls("::1")
    path.write_text('[dashboard]\nenabled = true\nlisten = "0.0.0.0:8250"\n')
    assert load_config(path).dashboard.host_now() == "0.0.0.0"
