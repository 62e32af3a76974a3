"""griffe extension: geosynth's docstrings (reStructuredText roles) as the site's Markdown.

Docstrings name objects the Sphinx way, ``:func:`~geosynth.store.read.open_store``` and
write code as ````double backticks````. Once griffe has loaded the package, every
docstring is rewritten:

1. a role whose target is a public object of geosynth becomes a cross-reference that
   mkdocs-autorefs resolves (``[open_store][geosynth.store.read.open_store]``); the
   strict build then fails on any that no page renders;
2. a role naming something else (a private helper, another library) becomes code;
3. double backticks become single ones.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc):`(~?)([^`<>]+?)`")
LITERAL = re.compile(r"``([^`]+?)``")


class RstRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        if pkg.path != "geosynth":
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _markdown(obj.docstring.value, obj)


def _walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _markdown(text: str, context: griffe.Object) -> str:
    def role(match: re.Match) -> str:
        short, target = match.group(1), match.group(2).strip()
        path = _resolve(target, context)
        shown = target.rsplit(".", 1)[-1] if short else target
        if path is None:
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    return LITERAL.sub(r"`\1`", ROLE.sub(role, text))


def _resolve(target: str, context: griffe.Object) -> str | None:
    """The canonical path of a public geosynth object named ``target`` (absolute, or
    relative to ``context``'s module), or None."""
    module = context if context.is_module else context.module
    for candidate in (target, f"{module.path}.{target}"):
        if not candidate.startswith("geosynth"):
            continue
        try:
            obj = context.modules_collection[candidate]
        except (KeyError, ValueError, griffe.AliasResolutionError):
            continue
        try:
            path = obj.final_target.path if obj.is_alias else obj.path
        except griffe.AliasResolutionError:
            return None
        if any(part.startswith("_") for part in path.split(".")):
            return None
        return path
    return None
