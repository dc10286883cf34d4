"""The cluster's DNS names, computed from Services and Endpoints.

A pure index, rebuilt per Service when its Service or Endpoints change, so a
query is a dictionary lookup and the server never asks the API. The names are
Kubernetes' DNS specification for Services and Pods:

- ``<svc>.<ns>.svc.<domain>``: A of the ClusterIP; for a headless Service the
  ready endpoint IPs; for ExternalName a CNAME;
- ``<hostname>.<svc>.<ns>.svc.<domain>``: A of a headless Service's endpoint
  with a hostname (StatefulSet pods), else its dashed IP;
- ``_<port>._<proto>.<svc>.<ns>.svc.<domain>``: SRV per named port;
- ``<a-b-c-d>.<ns>.pod.<domain>``: A of that address (CoreDNS' "pods insecure");
- PTR for ClusterIPs and headless endpoints.

Names inside the domain that exist with no record of the asked type answer
NOERROR with no data; names that do not exist answer NXDOMAIN.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

from kubelite.api.core.v1 import generated_pb2 as core_v1

A, AAAA, CNAME, SRV, PTR = "A", "AAAA", "CNAME", "SRV", "PTR"


@dataclass(frozen=True)
class Record:
    """One answer: ``value`` is an address (A/AAAA), a name (CNAME/PTR) or a SrvValue."""

    name: str
    type: str
    value: object


@dataclass(frozen=True)
class SrvValue:
    priority: int
    weight: int
    port: int
    target: str


@dataclass
class _ServiceRecords:
    records: list[Record] = field(default_factory=list)
    # Every name this Service makes exist (for NODATA versus NXDOMAIN).
    names: set[str] = field(default_factory=set)


def _fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."


def reverse_name(ip: str) -> str:
    return _fqdn(ipaddress.ip_address(ip).reverse_pointer)


def _address_type(ip: str) -> str:
    return AAAA if ipaddress.ip_address(ip).version == 6 else A


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


class ClusterRecords:
    """Answers for the cluster domain; ``update`` per Service keeps it current."""

    def __init__(self, domain: str = "cluster.local") -> None:
        self.domain = _fqdn(domain)
        self._by_service: dict[tuple[str, str], _ServiceRecords] = {}
        self._answers: dict[tuple[str, str], list[Record]] = defaultdict(list)
        self._names: dict[str, int] = defaultdict(int)
        # Moves whenever an answer may have changed: the server's cache of packed answers keys on it.
        self.generation = 0

    def in_domain(self, qname: str) -> bool:
        name = _fqdn(qname)
        return name == self.domain or name.endswith("." + self.domain)

    # --- building ---------------------------------------------------------

    def update(self, namespace: str, name: str, svc: core_v1.Service | None,
               endpoints: core_v1.Endpoints | None) -> None:
        """Replaces what one Service contributes (None: the Service is gone)."""
        key = (namespace, name)
        new = self._build(namespace, name, svc, endpoints) if svc is not None else None
        old = self._by_service.get(key)
        if new is not None and old is not None and new == old:
            # Most events change nothing here (an Endpoints update of a Service with a cluster IP):
            # the answers, and the packed answers cached from them, stay valid.
            return
        self.generation += 1
        self._by_service.pop(key, None)
        if old is not None:
            for rec in old.records:
                self._answers[(rec.name, rec.type)].remove(rec)
                if not self._answers[(rec.name, rec.type)]:
                    del self._answers[(rec.name, rec.type)]
            for n in old.names:
                self._names[n] -= 1
                if not self._names[n]:
                    del self._names[n]
        if new is None:
            return
        self._by_service[key] = new
        for rec in new.records:
            self._answers[(rec.name, rec.type)].append(rec)
        for n in new.names:
            self._names[n] += 1

    def _build(self, namespace: str, name: str, svc: core_v1.Service,
               endpoints: core_v1.Endpoints | None) -> _ServiceRecords:
        out = _ServiceRecords()
        base = f"{name}.{namespace}.svc.{self.domain}"
        out.names.update({base, f"{namespace}.svc.{self.domain}", f"svc.{self.domain}"})
        spec = svc.spec
        if spec.type == "ExternalName":
            if spec.external_name:
                out.records.append(Record(base, CNAME, _fqdn(spec.external_name)))
            return out
        headless = spec.cluster_ip == "None"
        if not headless:
            for ip in list(spec.cluster_ips) or ([spec.cluster_ip] if spec.cluster_ip else []):
                out.records.append(Record(base, _address_type(ip), ip))
                out.records.append(Record(reverse_name(ip), PTR, base))
            for port in spec.ports:
                if port.name:
                    srv = f"_{port.name}._{(port.protocol or 'TCP').lower()}.{base}"
                    out.names.add(srv)
                    out.records.append(Record(srv, SRV, SrvValue(0, 100, port.port, base)))
            return out
        # Headless: the ready endpoints themselves.
        for subset in endpoints.subsets if endpoints is not None else ():
            for addr in subset.addresses:
                host = f"{addr.hostname or _dashed(addr.ip)}.{base}"
                kind = _address_type(addr.ip)
                out.records.append(Record(base, kind, addr.ip))
                out.records.append(Record(host, kind, addr.ip))
                out.names.add(host)
                if addr.hostname:
                    out.records.append(Record(reverse_name(addr.ip), PTR, host))
                for ep_port in subset.ports:
                    if ep_port.name:
                        srv = f"_{ep_port.name}._{(ep_port.protocol or 'TCP').lower()}.{base}"
                        out.names.add(srv)
                        out.records.append(Record(srv, SRV, SrvValue(0, 100, ep_port.port, host)))
        return out

    # --- answering --------------------------------------------------------

    def lookup(self, qname: str, qtype: str) -> tuple[list[Record], bool]:
        """(answers, exists): answers of that type, and whether the name exists at all."""
        name = _fqdn(qname)
        answers = list(self._answers.get((name, qtype), ()))
        if not answers and qtype != CNAME:
            answers = list(self._answers.get((name, CNAME), ()))
        if answers:
            return answers, True
        pod = self._pod_address(name)
        if pod is not None:
            return ([Record(name, qtype, pod)] if qtype == _address_type(pod) else []), True
        exists = name in self._names or name == self.domain or any(
            (name, t) in self._answers for t in (A, AAAA, CNAME, SRV, PTR))
        return [], exists

    def _pod_address(self, name: str) -> str | None:
        """``a-b-c-d.<ns>.pod.<domain>`` names the address a.b.c.d."""
        suffix = ".pod." + self.domain
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) != 2:
            return None
        dashed = labels[0]
        for candidate in (dashed.replace("-", "."), dashed.replace("-", ":")):
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                continue
        return None

    def additional(self, records: list[Record]) -> list[Record]:
        """A/AAAA records of SRV targets, sent along so clients need no second query."""
        out: list[Record] = []
        for rec in records:
            if rec.type == SRV:
                assert isinstance(rec.value, SrvValue)
                for t in (A, AAAA):
                    out.extend(self._answers.get((rec.value.target, t), ()))
        return out
