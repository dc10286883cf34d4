"""Every kind's strategy, built from one table per API group.

The API server builds its stores from ``build_strategies``: each module
(``core``, ``apps``, ``coordination``) contributes a table of
(group, resource) -> factory, and kinds without an entry get the plain
``Strategy``. Adding a kind with special rules is one entry in its group's
table; nothing here switches on kinds.
"""

from __future__ import annotations

from kubelite.apiserver.registry import apps, coordination, core, scheduling
from kubelite.apiserver.registry.core import Options, StrategyFactory
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.machinery.scheme import Scheme

FACTORIES: dict[tuple[str, str], StrategyFactory] = {
    **core.STRATEGIES,
    **apps.STRATEGIES,
    **coordination.STRATEGIES,
    **scheduling.STRATEGIES,
}


def build_strategies(
    scheme: Scheme,
    *,
    service_cidr: str = "10.96.0.0/16",
    node_port_range: tuple[int, int] = (30000, 32767),
) -> dict[tuple[str, str], Strategy]:
    """One strategy per kind in ``scheme``, keyed by (group, resource)."""
    options = Options(service_cidr=service_cidr, node_port_range=node_port_range)
    out: dict[tuple[str, str], Strategy] = {}
    for rt in scheme:
        factory = FACTORIES.get((rt.group, rt.resource))
        out[(rt.group, rt.resource)] = factory(rt, options) if factory is not None else Strategy(rt)
    return out
