"""Options shared by several commands, defined once."""

from __future__ import annotations

import click


def progress_enabled(ctx: click.Context | None = None) -> bool:
    """Progress bars are shown unless ``-q`` was given."""
    ctx = ctx or click.get_current_context(silent=True)
    obj = (ctx.find_root().obj if ctx else None) or {}
    return obj.get("verbosity", 0) >= 0


store_argument = click.argument("store", type=click.Path(path_type=str))
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
