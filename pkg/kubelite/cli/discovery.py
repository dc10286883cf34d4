"""``api-resources`` and ``version``: what the server serves, and which builds are talking.

api-resources prints the server's discovery answer rather than the client's
scheme, so that it shows what this particular server can do.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError
from kubelite.cli.printers import format_table, to_json, to_yaml


@dataclass
class ApiResourcesOptions:
    output: str = ""
    namespaced: bool | None = None
    api_group: str | None = None
    no_headers: bool = False
    sort_by: str = ""
    verbs: tuple[str, ...] = ()


def _api_version(r: Any) -> str:
    return f"{r.group}/{r.version}" if r.group else str(r.version)


async def run_api_resources(session: Session, opts: ApiResourcesOptions) -> int:
    if opts.output not in ("", "wide", "name"):
        raise CliError(f'--output {opts.output} is not available')
    if opts.sort_by not in ("", "name", "kind"):
        raise CliError(f'--sort-by accepts only name or kind, not "{opts.sort_by}"')
    # Subresources ("pods/status") are routes, not resources one lists, as kubectl shows them.
    resources: list[Any] = [r for r in await session.client.server_resources() if "/" not in r.name]
    if opts.namespaced is not None:
        resources = [r for r in resources if bool(r.namespaced) == opts.namespaced]
    if opts.api_group is not None:
        resources = [r for r in resources if r.group == opts.api_group]
    if opts.verbs:
        resources = [r for r in resources if set(opts.verbs) <= set(r.verbs)]
    if opts.sort_by == "name":
        resources.sort(key=lambda r: str(r.name))
    elif opts.sort_by == "kind":
        resources.sort(key=lambda r: str(r.kind))
    else:
        # kubectl's default order: the core group first, then groups by name; names within a group.
        resources.sort(key=lambda r: (r.group != "", str(r.group), str(r.name)))
    if opts.output == "name":
        for r in resources:
            session.streams.out(f"{r.name}.{r.group}" if r.group else str(r.name))
        return 0
    rows = [] if opts.no_headers else [["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]]
    if opts.output == "wide" and not opts.no_headers:
        rows[0].append("VERBS")
    for r in resources:
        row = [str(r.name), ",".join(r.short_names), _api_version(r), "true" if r.namespaced else "false",
               str(r.kind)]
        if opts.output == "wide":
            row.append("[" + " ".join(sorted(r.verbs)) + "]")
        rows.append(row)
    for line in format_table(rows):
        session.streams.out(line)
    return 0


def client_version() -> dict[str, str]:
    try:
        version = metadata.version("kubelite")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return {
        "gitVersion": f"v{version}",
        "pythonVersion": platform.python_version(),
        "platform": f"{sys.platform}/{platform.machine().lower() or 'unknown'}",
    }


@dataclass
class VersionOptions:
    client_only: bool = False
    output: str = ""


async def run_version(session: Session, opts: VersionOptions) -> int:
    if opts.output not in ("", "yaml", "json"):
        raise CliError("--output must be 'yaml' or 'json'")
    data: dict[str, Any] = {"clientVersion": client_version()}
    error: Exception | None = None
    if not opts.client_only:
        try:
            info = await session.client.version()
            data["serverVersion"] = {"gitVersion": info.git_version, "pythonVersion": info.python_version,
                                     "platform": info.platform}
        except Exception as exc:  # printed after what is known, as kubectl does
            error = exc
    if opts.output == "json":
        session.streams.out(to_json(data))
    elif opts.output == "yaml":
        session.streams.out(to_yaml(data).rstrip("\n"))
    else:
        session.streams.out(f"Client Version: {data['clientVersion']['gitVersion']}")
        if "serverVersion" in data:
            session.streams.out(f"Server Version: {data['serverVersion']['gitVersion']}")
    if error is not None:
        raise error
    return 0
