"""Every kind's strategy, built from one table per API group.

The API server builds its stores from ``build_strategies``: each module
(``core``, ``apps``, ``coordination``) contributes a table of
(group, resource) -> factory, and kinds without an entry get the plain
``Strategy``. Adding a kind with special rules is one entry in its group's
table; nothing here switches on kinds.
"""

from __future__ import annotations

from kubelite.apiserver.registry import apps, coordination, core, policy, scheduling
from kubelite.apiserver.registry.core import Options, StrategyFactory
from kubelite.apiserver.registry.strategy import Strategy
from kubelite.apiserver.registry.subresource import StoreLookup, Subresource, SubresourceFactory, with_status
from kubelite.machinery.scheme import Scheme

FACTORIES: dict[tuple[str, str], StrategyFactory] = {
    **core.STRATEGIES,
    **apps.STRATEGIES,
    **coordination.STRATEGIES,
    **policy.STRATEGIES,
    **scheduling.STRATEGIES,
}

# Subresource routes of each group, beside the status route every kind with a status has.
_SUBRESOURCE_TABLES = (core.SUBRESOURCES, apps.SUBRESOURCES, policy.SUBRESOURCES)


def build_strategies(
    scheme: Scheme,
    *,
    service_cidr: str = "10.96.0.0/16",
    node_port_range: tuple[int, int] = (30000, 32767),
    event_ttl_seconds: int = 3600,
) -> dict[tuple[str, str], Strategy]:
    """One strategy per kind in ``scheme``, keyed by (group, resource)."""
    options = Options(service_cidr=service_cidr, node_port_range=node_port_range,
                      event_ttl_seconds=event_ttl_seconds)
    out: dict[tuple[str, str], Strategy] = {}
    for rt in scheme:
        factory = FACTORIES.get((rt.group, rt.resource))
        out[(rt.group, rt.resource)] = factory(rt, options) if factory is not None else Strategy(rt)
    return out


def build_subresources(scheme: Scheme, lookup: StoreLookup) -> dict[tuple[str, str], dict[str, Subresource]]:
    """Every kind's subresource routes, keyed by (group, resource) and then by subresource name."""
    tables: dict[tuple[str, str], dict[str, SubresourceFactory]] = with_status(list(scheme))
    for table in _SUBRESOURCE_TABLES:
        for key, routes in table.items():
            tables.setdefault(key, {}).update(routes)
    return {key: {name: factory(lookup) for name, factory in routes.items()} for key, routes in tables.items()}
