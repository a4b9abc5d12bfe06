"""The root command builds sub-commands on demand, and they are the ones typer builds."""

from __future__ import annotations

import click
import typer.main

from bungalow.cli.main import app, root_command


def _helps(group: click.Group) -> dict[str, str]:
    """Every command's help page, sub-commands of sub-groups included, by path."""
    pages = {}
    with click.Context(group, info_name="bungalow") as root:
        for name in group.list_commands(root):
            command = group.get_command(root, name)
            assert command is not None, name
            with click.Context(command, info_name=name, parent=root) as ctx:
                pages[name] = command.get_help(ctx)
                if isinstance(command, click.Group):
                    for sub in command.list_commands(ctx):
                        inner = command.get_command(ctx, sub)
                        assert inner is not None, f"{name} {sub}"
                        with click.Context(inner, info_name=sub, parent=ctx) as sub_ctx:
                            pages[f"{name} {sub}"] = inner.get_help(sub_ctx)
    return pages


def test_every_command_is_there_with_the_options_typer_gives_it() -> None:
    eager = typer.main.get_command(app)
    assert isinstance(eager, click.Group)
    assert _helps(root_command(app)) == _helps(eager)


def test_only_the_command_looked_up_is_built() -> None:
    group = root_command(app)
    with click.Context(group, info_name="bungalow") as ctx:
        assert "launch" in group.list_commands(ctx)
        assert group.commands == {}
        assert group.get_command(ctx, "exec") is not None
        assert group.get_command(ctx, "no-such-command") is None
    assert list(group.commands) == ["exec"]
