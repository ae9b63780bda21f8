"""The halacha drain: registered with the drains runtime (filled in by the runtime issue)."""

from drains import registry


@registry.register
class HalachaDrain:
    name = "halacha"
