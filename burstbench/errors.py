"""Errors that name the parameter, not the spelling: the reader of a flag, a file or a plan renders the name.

Domain code (arrival processes, texts, traces, the load spec) raises ``ParameterError`` with ``{name}``
where a parameter is named; ``str()`` spells it as a flag (``--mean``), the common case, and a file's
reader asks for ``in_file(source)`` (``plan.toml: load.mean``).
"""
from __future__ import annotations

import re

_NAME = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


class ParameterError(ValueError):
    """A bad value of parameter(s) ``names``; ``template`` holds ``{name}`` where one is named."""

    def __init__(self, template: str, *names: str):
        self.template, self.names = template, names
        super().__init__(self.as_flags())

    def render(self, spell) -> str:
        return _NAME.sub(lambda m: spell(m.group(1)) if m.group(1) in self.names else m.group(0), self.template)

    def as_flags(self) -> str:
        return self.render(flag_of)

    def in_file(self, source: str, section_of=lambda name: "load") -> str:
        """Named as ``source``'s keys: ``section.name`` (``section_of`` maps a name to its table)."""
        return f"{source}: " + self.render(lambda n: f"{section_of(n)}.{n}")
