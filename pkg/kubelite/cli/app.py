"""The ``kubelite`` command group: kubectl's verbs, flags, messages and exit codes.

click is only the front: each command turns its flags into an options
dataclass and hands a ``run_*`` coroutine to ``run_command``; those functions
never see click, so tests can drive them directly or through CliRunner
(pass ``CliDeps`` as ``obj`` to replace stdin, the editor or the watch).

Two kubectl habits need help from the parser:
- global flags (``-n``, ``--server``, ...) work before or after the verb, so
  every command also accepts them and they override the group's values;
- boolean flags take ``--flag`` or ``--flag=false`` and some value flags have
  a bare form (``--dry-run`` = client, ``--cascade`` = background), as in
  pflag. ``normalize_args`` spells the bare forms out before click parses, so
  a bare flag never swallows the next argument.
Usage errors are reported as ``error: ...`` with exit code 1, like kubectl.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import click

from kubelite.cli import apply as apply_mod
from kubelite.cli import delete as delete_mod
from kubelite.cli import describe as describe_mod
from kubelite.cli import discovery, nodecmds, patchcmd, podcmds
from kubelite.cli import edit as edit_mod
from kubelite.cli import generate as generate_mod
from kubelite.cli import get as get_mod
from kubelite.cli import join as join_mod
from kubelite.cli import label as label_mod
from kubelite.cli import rollout as rollout_mod
from kubelite.cli import setcmd as set_mod
from kubelite.cli import token as token_mod
from kubelite.cli.clientset import ConnectionOptions, Session, Streams, WatchFactory, default_watch_factory
from kubelite.cli.cluster import cluster_cmd
from kubelite.cli.errors import CliError
from kubelite.cli.printers import to_json, to_yaml
from kubelite.cli.resources import default_scheme
from kubelite.cli.runner import run_command
from kubelite.cli.workloads import Selection
from kubelite.cluster import node
from kubelite.machinery import bootstraptoken, codec, duration
from kubelite.machinery.scheme import Scheme

# Bare boolean flags (and short aliases) → explicit form, so ``--flag=false`` can share one option.
BOOL_FLAGS: dict[str, str] = {
    "-A": "--all-namespaces",
    "--all-namespaces": "--all-namespaces",
    "-w": "--watch",
    "--watch": "--watch",
    "--watch-only": "--watch-only",
    "-R": "--recursive",
    "--recursive": "--recursive",
    "--show-labels": "--show-labels",
    "--show-managed-fields": "--show-managed-fields",
    "--no-headers": "--no-headers",
    "--all": "--all",
    "--overwrite": "--overwrite",
    "--ignore-not-found": "--ignore-not-found",
    "--wait": "--wait",
    "--now": "--now",
    "--force": "--force",
    "--save-config": "--save-config",
    "--server-side": "--server-side",
    "--force-conflicts": "--force-conflicts",
    "--show-events": "--show-events",
    "--namespaced": "--namespaced",
    "--client": "--client",
    "--allow-missing-template-keys": "--allow-missing-template-keys",
    "--list": "--list",
}
# Value flags whose bare form means a default value, as in kubectl.
OPTIONAL_VALUES: dict[str, str] = {
    "--dry-run": "client",
    "--cascade": "background",
}


def normalize_args(args: Sequence[str]) -> list[str]:
    """Spells out bare boolean and optional-value flags (see module docstring); stops at ``--``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        if arg in BOOL_FLAGS:
            out.append(f"{BOOL_FLAGS[arg]}=true")
        elif arg in OPTIONAL_VALUES:
            out.append(f"{arg}={OPTIONAL_VALUES[arg]}")
        elif arg.startswith("-o="):  # pflag accepts -o=yaml
            out.append("-o" + arg[3:])
        else:
            out.append(arg)
    return out


def parse_duration(text: str, flag: str) -> float:
    """``30s``, ``1m30s``, ``500ms``, ``2h`` or bare seconds → seconds."""
    try:
        return duration.parse_duration(text)
    except ValueError:
        raise CliError(f'invalid argument "{text}" for "{flag}" flag: must be a duration such as 30s, 5m or 1h'
                       ) from None


_ERROR_PREFIXES = ("error:", "Error from server", "The connection to the server", "Unable to connect")


def echo_err(line: str) -> None:
    """stderr, with errors in red when a person is watching (a TTY, NO_COLOR unset); plain when piped."""
    stream = sys.stderr
    if line.startswith(_ERROR_PREFIXES) and stream.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console
        from rich.text import Text

        Console(file=stream, highlight=False, soft_wrap=True).print(Text(line, style="red"))
        return
    click.echo(line, err=True)


@dataclass
class CliDeps:
    """What tests replace: the watch factory, the scheme, stdin and the editor."""

    watch_factory: WatchFactory = default_watch_factory
    scheme_factory: Callable[[], Scheme] = default_scheme
    stdin: Callable[[], str] | None = None
    editor: edit_mod.Editor | None = None


@dataclass
class CliState:
    deps: CliDeps
    options: ConnectionOptions = field(default_factory=ConnectionOptions)
    request_timeout: str = ""

    def session(self) -> Session:
        streams = Streams(out=click.echo, err=echo_err)
        options = self.options
        if self.request_timeout:
            options = replace(options, request_timeout=parse_duration(self.request_timeout, "--request-timeout"))
        return Session(options=options, streams=streams, watch_factory=self.deps.watch_factory,
                       field_manager=command_field_manager(click.get_current_context(silent=True)))

    @property
    def scheme(self) -> Scheme:
        return self.deps.scheme_factory()


def command_field_manager(ctx: click.Context | None) -> str:
    """The owner of a command's writes, named after its verb as kubectl names its own (kubectl-create...).

    Client-side apply is "kubelite-client-side-apply", as kubectl's; server-side
    apply names its manager itself (--field-manager, default "kubelite").
    """
    words = ctx.command_path.split() if ctx is not None else []
    if len(words) < 2:
        return ""
    verb = words[1]
    return "kubelite-client-side-apply" if verb == "apply" else f"kubelite-{verb}"


def _state() -> CliState:
    ctx = click.get_current_context()
    state = ctx.find_object(CliState)
    assert state is not None
    return state


def execute(body: Callable[[Session, CliState], Any]) -> None:
    """Runs a command body in its own event loop and exits with its code (see runner)."""
    state = _state()
    # Building the session parses --request-timeout; a bad value is a client error like any other.
    streams = Streams(out=click.echo, err=echo_err)
    try:
        session = state.session()
    except CliError as exc:
        streams.err(f"error: {exc}")
        click.get_current_context().exit(1)
    code = run_command(session, lambda s: body(s, state))
    click.get_current_context().exit(code)


# --- global flags (accepted before and after the verb) ----------------------------------------------------


def _set_option(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or value == "" or value == ():
            return
        state = ctx.find_object(CliState)
        if state is None:
            return
        if name == "request_timeout":
            state.request_timeout = str(value)
        elif name == "verbosity":
            _configure_logging(int(value))
        else:
            state.options = replace(state.options, **{name: value})

    return callback


def global_options(hidden: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    specs = [
        click.option("--kubeconfig", default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("kubeconfig"), help="Path to the kubeconfig file to use."),
        click.option("--server", "-s", default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("server"), help="The address of the API server (host:port)."),
        click.option("--context", default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("context"), help="The kubeconfig context to use."),
        click.option("--token", default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("token"), help="Bearer token for authentication to the API server."),
        click.option("--namespace", "-n", default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("namespace"), help="The namespace scope for this request."),
        click.option("--request-timeout", default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("request_timeout"),
                     help="How long to wait for a single request (e.g. 5s, 1m); 0 = no limit."),
        click.option("--v", "-v", "verbosity", type=int, default=None, hidden=hidden, expose_value=False,
                     callback=_set_option("verbosity"), help="Log level of the client libraries."),
    ]

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for spec in reversed(specs):
            f = spec(f)
        return f

    return decorate


def _configure_logging(verbosity: int) -> None:
    if verbosity > 0:
        logging.basicConfig(level=logging.DEBUG if verbosity >= 4 else logging.INFO, stream=sys.stderr,
                            format="%(levelname).1s %(name)s: %(message)s")


def bool_option(*names: str, default: bool = False, help: str = "") -> Callable[[Callable[..., Any]], Any]:
    """A kubectl boolean flag: ``--x``, ``--x=true`` or ``--x=false`` (see normalize_args)."""
    # Short aliases (-A, -w, -R) are listed for --help; normalize_args rewrites them to the long form.
    return click.option(*names, type=click.BOOL, default=default, metavar="[=true|false]",
                        help=f"{help} (default {str(default).lower()})")


def flag_option(*names: str, help: str = "") -> Callable[[Callable[..., Any]], Any]:
    """A plain switch whose short form combines with others (``-it``), for verbs where kubectl users do that."""
    return click.option(*names, is_flag=True, default=False, help=help)


def output_option(help: str = "Output format.") -> Callable[[Callable[..., Any]], Any]:
    return click.option("--output", "-o", default="", help=help)


def dry_run_option() -> Callable[[Callable[..., Any]], Any]:
    return click.option("--dry-run", default="none", metavar="[=none|client|server]",
                        help='"client" only prints what would be sent; "server" submits without persisting.')


def filename_options(required: bool = False) -> Callable[[Callable[..., Any]], Any]:
    def decorate(f: Callable[..., Any]) -> Any:
        f = click.option("--filename", "-f", "filenames", multiple=True,
                         help="A file, directory or - (stdin) holding manifests; repeatable.")(f)
        f = bool_option("-R", "--recursive", help="Process directories given with -f recursively.")(f)
        return f

    return decorate


def split_columns(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c.strip() for v in values for c in v.split(",") if c.strip())


# --- the group --------------------------------------------------------------------------------------------


def _report_usage_error(exc: click.UsageError) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
        # Bare `kubelite` (or a bare group): help, successfully, as kubectl does.
        click.echo(exc.ctx.get_help())
        return 0
    if isinstance(exc, click.NoSuchOption):
        click.echo(f"error: unknown flag: {exc.option_name}", err=True)
    else:
        click.echo(f"error: {exc.format_message()}", err=True)
    if exc.ctx is not None:
        click.echo(f"See '{exc.ctx.command_path} --help' for usage.", err=True)
    return 1


class KubeliteGroup(click.Group):
    """kubectl's error conventions around click: ``error: ...`` and exit 1 for usage mistakes."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            # Always "kubelite" (not the module or runner's name): hints tell users what to type.
            result = super().main(normalize_args(argv), prog_name="kubelite",
                                  complete_var=complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            code = _report_usage_error(exc)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            code = 1
        except click.exceptions.Abort:
            code = 1
        else:
            code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        # The global flags' callbacks run while the group parses its own arguments, before any
        # callback of ours: the state they write into must exist by then. Tests pass CliDeps as obj.
        if parent is None:
            deps = extra.get("obj")
            extra["obj"] = CliState(deps if isinstance(deps, CliDeps) else CliDeps())
        return super().make_context(info_name, args, parent, **extra)


@click.group(cls=KubeliteGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options(hidden=False)
def cli() -> None:
    """kubelite controls a kubelite cluster, the way kubectl controls Kubernetes."""


# --- verbs ------------------------------------------------------------------------------------------------


@cli.command("get")
@click.argument("args", nargs=-1)
@output_option("Output format: wide, yaml, json, name, jsonpath=TEMPLATE, jsonpath-file=FILE, "
               "custom-columns=HEADER:PATH,... or custom-columns-file=FILE.")
@bool_option("--allow-missing-template-keys", default=True,
             help="With -o jsonpath, print nothing for a missing field or key instead of failing.")
@bool_option("-A", "--all-namespaces", help="List across all namespaces.")
@click.option("--selector", "-l", default="", help="Label selector (e.g. app=web,tier!=db).")
@click.option("--field-selector", default="", help="Field selector (e.g. spec.nodeName=n1).")
@bool_option("--show-labels", help="Add a LABELS column.")
@click.option("--label-columns", "-L", multiple=True, help="Labels to show as columns.")
@bool_option("--no-headers", help="Leave out the header row.")
@bool_option("-w", "--watch", help="After listing, keep printing changes.")
@bool_option("--watch-only", help="Print changes only, not the initial list.")
@bool_option("--ignore-not-found", help="Treat missing named objects as success.")
@bool_option("--show-managed-fields", help="Keep metadata.managedFields in -o yaml and -o json.")
@global_options(hidden=True)
def get_cmd(args: tuple[str, ...], output: str, allow_missing_template_keys: bool, all_namespaces: bool,
            selector: str, field_selector: str, show_labels: bool, label_columns: tuple[str, ...], no_headers: bool,
            watch: bool, watch_only: bool, ignore_not_found: bool, show_managed_fields: bool) -> None:
    """Display one or many resources."""
    opts = get_mod.GetOptions(args=args, output=output, all_namespaces=all_namespaces, label_selector=selector,
                              field_selector=field_selector, show_labels=show_labels,
                              label_columns=split_columns(label_columns), no_headers=no_headers, watch=watch,
                              watch_only=watch_only, ignore_not_found=ignore_not_found,
                              allow_missing_template_keys=allow_missing_template_keys,
                              show_managed_fields=show_managed_fields)
    execute(lambda s, st: get_mod.run_get(s, opts, st.scheme))


@cli.command("describe")
@click.argument("args", nargs=-1)
@bool_option("-A", "--all-namespaces", help="Describe across all namespaces.")
@click.option("--selector", "-l", default="", help="Label selector.")
@bool_option("--show-events", default=True, help="Show the Events section.")
@global_options(hidden=True)
def describe_cmd(args: tuple[str, ...], all_namespaces: bool, selector: str, show_events: bool) -> None:
    """Show details of a resource or group of resources."""
    opts = describe_mod.DescribeOptions(args=args, all_namespaces=all_namespaces, label_selector=selector,
                                        show_events=show_events)
    execute(lambda s, st: describe_mod.run_describe(s, opts, st.scheme))


@cli.command("apply")
@filename_options()
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@bool_option("--server-side", help="Apply on the server, which merges and tracks which manager owns each field.")
@bool_option("--force-conflicts", help="With --server-side: take over fields other managers own.")
@click.option("--field-manager", default="", help="With --server-side: the name of the manager (default kubelite).")
@global_options(hidden=True)
def apply_cmd(filenames: tuple[str, ...], recursive: bool, dry_run: str, output: str, server_side: bool,
              force_conflicts: bool, field_manager: str) -> None:
    """Apply a configuration to resources from files or stdin (client-side, or with --server-side)."""
    opts = apply_mod.ManifestOptions(filenames, recursive, dry_run, output, server_side=server_side,
                                     force_conflicts=force_conflicts, field_manager=field_manager)
    execute(lambda s, st: apply_mod.run_apply(s, opts, st.scheme, st.deps.stdin))


@cli.group("create", invoke_without_command=True)
@filename_options()
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@bool_option("--save-config", help="Store the manifest for later kubelite apply.")
@global_options(hidden=True)
@click.pass_context
def create_cmd(ctx: click.Context, filenames: tuple[str, ...], recursive: bool, dry_run: str, output: str,
               save_config: bool) -> None:
    """Create resources from files or stdin (or: create namespace NAME)."""
    if ctx.invoked_subcommand is not None:
        ctx.meta["create"] = (dry_run, output)
        return
    opts = apply_mod.ManifestOptions(filenames, recursive, dry_run, output, save_config)
    execute(lambda s, st: apply_mod.run_create(s, opts, st.scheme, st.deps.stdin))


@create_cmd.command("namespace")
@click.argument("name")
@global_options(hidden=True)
@click.pass_context
def create_namespace_cmd(ctx: click.Context, name: str) -> None:
    """Create a namespace with the given name."""
    dry_run, output = ctx.meta.get("create", ("none", ""))
    text = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name!r}\n"
    opts = apply_mod.ManifestOptions(("-",), False, dry_run, output)
    execute(lambda s, st: apply_mod.run_create(s, opts, st.scheme, lambda: text))


create_cmd.add_command(create_namespace_cmd, "ns")


@create_cmd.command("deployment")
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--image", "images", multiple=True, help="The image of a container; repeat for several containers.")
@click.option("--replicas", "-r", type=int, default=1, help="How many pods.")
@click.option("--port", type=int, default=-1, help="The port the (first) container exposes.")
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@global_options(hidden=True)
@click.pass_context
def create_deployment_cmd(ctx: click.Context, name: str, command: tuple[str, ...], images: tuple[str, ...],
                          replicas: int, port: int, dry_run: str, output: str) -> None:
    """Create a Deployment: kubelite create deployment NAME --image=IMAGE [--replicas=N] [--port=P] [-- CMD...]."""
    group_dry_run, group_output = ctx.meta.get("create", ("none", ""))
    opts = generate_mod.CreateDeploymentOptions(name=name, images=images, replicas=replicas, port=port,
                                                command=command, dry_run=dry_run if dry_run != "none" else
                                                group_dry_run, output=output or group_output)
    execute(lambda s, st: generate_mod.run_create_deployment(s, opts))


create_cmd.add_command(create_deployment_cmd, "deploy")


@cli.command("replace")
@filename_options()
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@bool_option("--save-config", help="Store the manifest for later kubelite apply.")
@global_options(hidden=True)
def replace_cmd(filenames: tuple[str, ...], recursive: bool, dry_run: str, output: str, save_config: bool) -> None:
    """Replace existing resources with the manifests given."""
    opts = apply_mod.ManifestOptions(filenames, recursive, dry_run, output, save_config)
    execute(lambda s, st: apply_mod.run_replace(s, opts, st.scheme, st.deps.stdin))


@cli.command("delete")
@click.argument("args", nargs=-1)
@filename_options()
@click.option("--selector", "-l", default="", help="Label selector.")
@click.option("--field-selector", default="", help="Field selector.")
@bool_option("--all", help="Delete every object of the given types in the namespace.")
@bool_option("-A", "--all-namespaces", help="With --all or -l: across all namespaces.")
@bool_option("--ignore-not-found", help="Treat missing objects as success.")
@bool_option("--wait", default=True, help="Wait until the objects are gone.")
@click.option("--timeout", default="0", help="How long to wait for deletion (0 = as long as it takes).")
@click.option("--cascade", default="background", metavar="[=background|foreground|orphan]",
              help="How dependents are deleted.")
@click.option("--grace-period", type=int, default=-1, help="Seconds given to terminate gracefully (-1 = default).")
@bool_option("--now", help="Terminate immediately (grace period 1).")
@bool_option("--force", help="With --grace-period=0: remove at once, without waiting for termination.")
@dry_run_option()
@output_option("Output format: name.")
@global_options(hidden=True)
def delete_cmd(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str,
               field_selector: str, all: bool, all_namespaces: bool, ignore_not_found: bool, wait: bool,
               timeout: str, cascade: str, grace_period: int, now: bool, force: bool, dry_run: str,
               output: str) -> None:
    """Delete resources by name, file, label selector or --all."""
    def body(s: Session, st: CliState) -> Any:
        opts = delete_mod.DeleteOptions(args=args, filenames=filenames, recursive=recursive,
                                        label_selector=selector, field_selector=field_selector, all=all,
                                        all_namespaces=all_namespaces, ignore_not_found=ignore_not_found,
                                        wait=wait, timeout=parse_duration(timeout, "--timeout"), cascade=cascade,
                                        grace_period=grace_period, now=now, force=force, dry_run=dry_run,
                                        output=output)
        return delete_mod.run_delete(s, opts, st.scheme, st.deps.stdin)

    execute(body)


@cli.command("edit")
@click.argument("args", nargs=-1)
@click.option("--output", "-o", default="yaml", help="Edit as yaml or json.")
@global_options(hidden=True)
def edit_cmd(args: tuple[str, ...], output: str) -> None:
    """Edit a resource in $KUBE_EDITOR or $EDITOR (default vi)."""
    opts = edit_mod.EditOptions(args=args, output=output)
    execute(lambda s, st: edit_mod.run_edit(s, opts, st.scheme, st.deps.editor))


def _meta_command(name: str, verb: Any, doc: str) -> click.Command:
    @click.argument("args", nargs=-1)
    @bool_option("--overwrite", help="Allow replacing existing values.")
    @bool_option("--all", help="Every object of the given types in the namespace.")
    @bool_option("-A", "--all-namespaces", help="With --all or -l: across all namespaces.")
    @click.option("--selector", "-l", default="", help="Label selector.")
    @click.option("--field-selector", default="", help="Field selector.")
    @click.option("--resource-version", default="", help="Only update if the object is at this version.")
    @dry_run_option()
    @output_option("Output format: name.")
    @global_options(hidden=True)
    def command(args: tuple[str, ...], overwrite: bool, all: bool, all_namespaces: bool, selector: str,
                field_selector: str, resource_version: str, dry_run: str, output: str) -> None:
        opts = label_mod.MetaOptions(args=args, overwrite=overwrite, all=all, all_namespaces=all_namespaces,
                                     label_selector=selector, field_selector=field_selector,
                                     resource_version=resource_version, dry_run=dry_run, output=output)
        execute(lambda s, st: label_mod.run_meta_update(s, opts, st.scheme, verb))

    command.__doc__ = doc
    return click.command(name)(command)


cli.add_command(_meta_command("label", label_mod.LABEL, "Update the labels on resources (k=v sets, k- removes)."))
cli.add_command(_meta_command("annotate", label_mod.ANNOTATE,
                              "Update the annotations on resources (k=v sets, k- removes)."))


@cli.command("patch")
@click.argument("args", nargs=-1)
@click.option("--patch", "-p", default="", help="The patch, as JSON or YAML.")
@click.option("--patch-file", default="", help="A file holding the patch.")
@click.option("--type", "patch_type", default="strategic", help="strategic (default), merge or json.")
@click.option("--filename", "-f", "filenames", multiple=True, help="Identify the objects from manifests.")
@click.option("--subresource", default="", help='"status" to patch the status.')
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@global_options(hidden=True)
def patch_cmd(args: tuple[str, ...], patch: str, patch_file: str, patch_type: str, filenames: tuple[str, ...],
              subresource: str, dry_run: str, output: str) -> None:
    """Update fields of a resource with a strategic merge, JSON merge or JSON patch."""
    opts = patchcmd.PatchOptions(args=args, patch=patch, patch_file=patch_file, patch_type=patch_type,
                                 filenames=filenames, subresource=subresource, dry_run=dry_run, output=output)
    execute(lambda s, st: patchcmd.run_patch(s, opts, st.scheme, st.deps.stdin))


def _printer(output: str, s: Session) -> Callable[[Any], None]:
    def show(obj: Any) -> None:
        data = codec.encode(obj)
        if output == "json":
            s.streams.out(to_json(data).rstrip("\n"))
        elif output == "name":
            s.streams.out(f"pod/{obj.metadata.name}")
        else:
            s.streams.out(to_yaml(data).rstrip("\n"))
    return show


@cli.command("logs")
@click.argument("args", nargs=-1)
@click.option("--container", "-c", default="", help="The container to print the logs of.")
@flag_option("-f", "--follow", help="Keep streaming the logs.")
@flag_option("-p", "--previous", help="The logs of the previous, terminated instance of the container.")
@flag_option("--timestamps", help="Prefix each line with its RFC3339 timestamp.")
@click.option("--tail", default=-1, type=int, help="Lines of recent log to show (-1: all).")
@click.option("--since", default="", help="Only logs newer than this duration (5s, 2m, 3h).")
@click.option("--limit-bytes", default=0, type=int, help="Stop after this many bytes.")
@click.option("--selector", "-l", default="", help="Print the logs of every pod matching this selector.")
@flag_option("--prefix", help="Prefix each line with the pod and container name.")
@flag_option("--all-containers", help="The logs of every container of the pod.")
@global_options(hidden=True)
def logs_cmd(args: tuple[str, ...], container: str, follow: bool, previous: bool, timestamps: bool, tail: int,
             since: str, limit_bytes: int, selector: str, prefix: bool, all_containers: bool) -> None:
    """Print the logs of a container in a pod."""
    def body(s: Session, st: CliState) -> Any:
        opts = podcmds.LogsOptions(args=args, container=container, follow=follow, previous=previous,
                                   timestamps=timestamps, tail=tail, since_seconds=parse_duration(since, "--since"),
                                   limit_bytes=limit_bytes, selector=selector, prefix=prefix,
                                   all_containers=all_containers)
        return podcmds.run_logs(s, opts, podcmds.Terminal.real())

    execute(body)


def _exec_like(attach: bool) -> click.Command:
    @click.argument("pod")
    @click.argument("command", nargs=-1, type=click.UNPROCESSED)
    @click.option("--container", "-c", default="", help="The container to run in (default: the first).")
    @flag_option("-i", "--stdin", help="Pass stdin to the container.")
    @flag_option("-t", "--tty", help="Stdin is a TTY.")
    @flag_option("-q", "--quiet", help="Print only what the command prints.")
    @global_options(hidden=True)
    def command(pod: str, command: tuple[str, ...], container: str, stdin: bool, tty: bool, quiet: bool) -> None:
        opts = podcmds.ExecOptions(pod=pod, command=command, container=container, stdin=stdin, tty=tty,
                                   attach=attach, quiet=quiet)
        execute(lambda s, st: podcmds.run_exec(s, opts, podcmds.Terminal.real()))

    command.__doc__ = ("Attach to the main process of a running container." if attach else
                       "Run a command in a container: kubelite exec POD [-c C] [-i] [-t] -- COMMAND [args...]")
    return click.command("attach" if attach else "exec", context_settings={"ignore_unknown_options": False})(
        command)


cli.add_command(_exec_like(False))
cli.add_command(_exec_like(True))


@cli.command("port-forward")
@click.argument("pod")
@click.argument("ports", nargs=-1, required=True)
@click.option("--address", default="127.0.0.1", help="The local address to listen on.")
@global_options(hidden=True)
def port_forward_cmd(pod: str, ports: tuple[str, ...], address: str) -> None:
    """Forward local ports to a pod: kubelite port-forward POD LOCAL:REMOTE [...]."""
    opts = podcmds.PortForwardOptions(pod=pod, ports=ports, address=address)
    execute(lambda s, st: podcmds.run_port_forward(s, opts, podcmds.Terminal.real()))


@cli.command("run")
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--image", default="", help="The container image.")
@flag_option("--command", help="Use the extra arguments as the command instead of the image's arguments.")
@click.option("--env", multiple=True, help="NAME=VALUE; repeatable.")
@click.option("--labels", "-L", "labels", default="", help="k=v,k2=v2 (default: run=NAME).")
@click.option("--port", default=0, type=int, help="The port the container exposes.")
@click.option("--restart", default="Always", help="Always, OnFailure or Never.")
@click.option("--image-pull-policy", default="", help="Always, IfNotPresent or Never.")
@flag_option("-i", "--stdin", help="Keep stdin open and attach to it.")
@flag_option("-t", "--tty", help="Allocate a TTY.")
@flag_option("--rm", help="Delete the pod when the attached session ends.")
@flag_option("--attach", help="Wait for the pod and attach to it.")
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@global_options(hidden=True)
def run_cmd(name: str, args: tuple[str, ...], image: str, command: bool, env: tuple[str, ...], labels: str,
            port: int, restart: str, image_pull_policy: str, stdin: bool, tty: bool, rm: bool, attach: bool,
            dry_run: str, output: str) -> None:
    """Create and run a pod: kubelite run NAME --image=IMAGE [--rm -it] [-- COMMAND args...]."""
    opts = podcmds.RunOptions(name=name, image=image, args=args, command=command, env=env, labels=labels,
                              port=port, restart=restart, image_pull_policy=image_pull_policy, stdin=stdin,
                              tty=tty, rm=rm, attach=attach, dry_run=dry_run, output=output)
    execute(lambda s, st: podcmds.run_run(s, opts, podcmds.Terminal.real(), _printer(output or "yaml", s)))


@cli.command("scale")
@click.argument("args", nargs=-1, required=True)
@click.option("--replicas", type=int, default=-1, help="The new number of replicas.")
@click.option("--current-replicas", type=int, default=-1, help="Only scale if the current count is this.")
@click.option("--resource-version", default="", help="Only scale if the object is at this version.")
@global_options(hidden=True)
def scale_cmd(args: tuple[str, ...], replicas: int, current_replicas: int, resource_version: str) -> None:
    """Set the replica count of Deployments and ReplicaSets (the scale subresource)."""
    opts = nodecmds.ScaleOptions(args=args, replicas=replicas, current_replicas=current_replicas,
                                 resource_version=resource_version)
    execute(lambda s, st: nodecmds.run_scale(s, opts, st.scheme))


@cli.command("cordon")
@click.argument("nodes", nargs=-1)
@global_options(hidden=True)
def cordon_cmd(nodes: tuple[str, ...]) -> None:
    """Mark nodes unschedulable."""
    execute(lambda s, st: nodecmds.set_unschedulable(s, nodes, True))


@cli.command("uncordon")
@click.argument("nodes", nargs=-1)
@global_options(hidden=True)
def uncordon_cmd(nodes: tuple[str, ...]) -> None:
    """Mark nodes schedulable again."""
    execute(lambda s, st: nodecmds.set_unschedulable(s, nodes, False))


@cli.command("drain")
@click.argument("node")
@flag_option("--ignore-daemonsets", help="Leave DaemonSet-managed pods.")
@flag_option("--delete-emptydir-data", help="Evict pods with emptyDir volumes (their data is lost).")
@flag_option("--force", help="Also evict pods no controller would recreate.")
@flag_option("--disable-eviction", help="Delete pods instead of evicting them (skips PodDisruptionBudgets).")
@click.option("--timeout", default="0", help="Give up after this long (0: no limit).")
@click.option("--grace-period", type=int, default=-1, help="Seconds each pod gets to terminate (-1: its own).")
@click.option("--pod-selector", default="", help="Only pods matching this label selector.")
@global_options(hidden=True)
def drain_cmd(node: str, ignore_daemonsets: bool, delete_emptydir_data: bool, force: bool, disable_eviction: bool,
              timeout: str, grace_period: int, pod_selector: str) -> None:
    """Cordon a node and evict its pods, honouring PodDisruptionBudgets."""
    def body(s: Session, st: CliState) -> Any:
        opts = nodecmds.DrainOptions(node=node, ignore_daemonsets=ignore_daemonsets,
                                     delete_emptydir_data=delete_emptydir_data, force=force,
                                     timeout=parse_duration(timeout, "--timeout"), grace_period=grace_period,
                                     pod_selector=pod_selector, disable_eviction=disable_eviction)
        return nodecmds.run_drain(s, opts)

    execute(body)


@cli.command("api-resources")
@output_option("Output format: wide or name.")
@click.option("--namespaced", type=click.BOOL, default=None, metavar="[=true|false]",
              help="Only namespaced (true) or cluster-scoped (false) resources.")
@click.option("--api-group", default=None, help="Only resources of this group (\"\" for core).")
@bool_option("--no-headers", help="Leave out the header row.")
@click.option("--sort-by", default="", help="name or kind.")
@click.option("--verbs", multiple=True, help="Only resources supporting these verbs.")
@global_options(hidden=True)
def api_resources_cmd(output: str, namespaced: bool | None, api_group: str | None, no_headers: bool, sort_by: str,
                      verbs: tuple[str, ...]) -> None:
    """Print the resource types the server supports."""
    opts = discovery.ApiResourcesOptions(output=output, namespaced=namespaced, api_group=api_group,
                                         no_headers=no_headers, sort_by=sort_by, verbs=split_columns(verbs))
    execute(lambda s, st: discovery.run_api_resources(s, opts))


@cli.command("version")
@bool_option("--client", help="Only the client version; do not contact the server.")
@output_option("Output format: yaml or json.")
@global_options(hidden=True)
def version_cmd(client: bool, output: str) -> None:
    """Print the client and server versions."""
    opts = discovery.VersionOptions(client_only=client, output=output)
    execute(lambda s, st: discovery.run_version(s, opts))


# --- rollout ---------------------------------------------------------------------------------------------


def selection_options(selector: bool = True, all_flag: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """TYPE NAME... / TYPE/NAME... arguments, -f (and -R), and optionally -l and --all (see cli.workloads)."""
    def decorate(f: Callable[..., Any]) -> Any:
        f = click.argument("args", nargs=-1)(f)
        f = filename_options()(f)
        if selector:
            f = click.option("--selector", "-l", default="", help="Label selector (e.g. app=web).")(f)
        if all_flag:
            f = bool_option("--all", help="Every object of the given type in the namespace.")(f)
        return f

    return decorate


def _selection(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str = "",
               all: bool = False) -> Selection:
    return Selection(args=args, filenames=filenames, recursive=recursive, label_selector=selector,
                                 all=all)


@cli.group("rollout")
def rollout_cmd() -> None:
    """Manage the rollout of Deployments: status, history, undo, restart, pause, resume."""


@rollout_cmd.command("status")
@selection_options()
@bool_option("-w", "--watch", default=True, help="Keep watching until the rollout is done.")
@click.option("--timeout", default="0s", help="Give up after this long (0: wait forever), e.g. 5m.")
@click.option("--revision", type=int, default=0, help="Wait for this revision (fail if another is running).")
@global_options(hidden=True)
def rollout_status_cmd(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str,
                       watch: bool, timeout: str, revision: int) -> None:
    """Show the status of a rollout; with --watch (the default) until it finishes or fails."""
    def body(s: Session, st: CliState) -> Any:
        opts = rollout_mod.StatusOptions(selection=_selection(args, filenames, recursive, selector), watch=watch,
                                         timeout=parse_duration(timeout, "--timeout"), revision=revision)
        return rollout_mod.run_status(s, opts, st.scheme, st.deps.stdin)

    execute(body)


@rollout_cmd.command("history")
@selection_options()
@click.option("--revision", type=int, default=0, help="Show the pod template of this revision.")
@output_option("Output format: yaml or json (the ReplicaSets of the revisions).")
@global_options(hidden=True)
def rollout_history_cmd(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str,
                        revision: int, output: str) -> None:
    """List the revisions of a Deployment, or show one with --revision."""
    opts = rollout_mod.HistoryOptions(selection=_selection(args, filenames, recursive, selector),
                                      revision=revision, output=output)
    execute(lambda s, st: rollout_mod.run_history(s, opts, st.scheme, st.deps.stdin))


@rollout_cmd.command("undo")
@selection_options()
@click.option("--to-revision", type=int, default=0, help="The revision to go back to (0: the previous one).")
@dry_run_option()
@global_options(hidden=True)
def rollout_undo_cmd(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str,
                     to_revision: int, dry_run: str) -> None:
    """Roll back to a previous revision (its pod template becomes the Deployment's again)."""
    opts = rollout_mod.UndoOptions(selection=_selection(args, filenames, recursive, selector),
                                   to_revision=to_revision, dry_run=dry_run)
    execute(lambda s, st: rollout_mod.run_undo(s, opts, st.scheme, st.deps.stdin))


@rollout_cmd.command("restart")
@selection_options()
@global_options(hidden=True)
def rollout_restart_cmd(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str) -> None:
    """Replace every pod of a Deployment through a rolling update."""
    opts = rollout_mod.MarkOptions(selection=_selection(args, filenames, recursive, selector))
    execute(lambda s, st: rollout_mod.run_restart(s, opts, st.scheme, st.deps.stdin))


def _pause_command(paused: bool) -> click.Command:
    @selection_options()
    @global_options(hidden=True)
    def command(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str) -> None:
        opts = rollout_mod.MarkOptions(selection=_selection(args, filenames, recursive, selector))
        execute(lambda s, st: rollout_mod.run_pause(s, opts, st.scheme, paused, st.deps.stdin))

    command.__doc__ = ("Pause a Deployment: template changes wait until it is resumed." if paused else
                       "Resume a paused Deployment.")
    return click.command("pause" if paused else "resume")(command)


rollout_cmd.add_command(_pause_command(True))
rollout_cmd.add_command(_pause_command(False))


# --- set, expose -----------------------------------------------------------------------------------------


def _set_command(name: str, doc: str, extra: list[Callable[[Callable[..., Any]], Any]],
                 body: Callable[..., Any]) -> click.Command:
    def command(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, selector: str, all: bool,
                dry_run: str, output: str, **rest: Any) -> None:
        body(args, Selection(filenames=filenames, recursive=recursive, label_selector=selector, all=all),
             dry_run, output, **rest)

    command.__doc__ = doc
    f: Any = command
    for deco in [*extra, global_options(hidden=True), output_option("Output format: name, yaml or json."),
                 dry_run_option(), selection_options(all_flag=True)]:
        f = deco(f)
    return click.command(name)(f)


def _set_image(args: tuple[str, ...], sel: Selection, dry_run: str, output: str) -> None:
    def body(s: Session, st: CliState) -> Any:
        resources, pairs = set_mod.split_resources(args, lambda a: "=" in a, "image")
        images = set_mod.parse_images(pairs)
        sel.args = tuple(resources)
        return set_mod.run_edit(s, set_mod.SetOptions(sel, dry_run, output), st.scheme, set_mod.edit_images(images),
                                "image updated", "set image", st.deps.stdin)

    execute(body)


def _set_env(args: tuple[str, ...], sel: Selection, dry_run: str, output: str, containers: str, env: tuple[str, ...],
             list_: bool, overwrite: bool) -> None:
    def body(s: Session, st: CliState) -> Any:
        resources, specs = set_mod.split_resources(args, set_mod.is_env_change, "environment")
        sel.args = tuple(resources)
        opts = set_mod.SetOptions(sel, dry_run, output)
        if list_:
            if specs or env:
                raise CliError("--list cannot be combined with environment changes")
            return set_mod.run_env_list(s, opts, st.scheme, containers, st.deps.stdin)
        changes = set_mod.parse_env([*env, *specs])
        if not changes.set and not changes.remove:
            raise CliError("at least one environment variable must be provided (KEY=VALUE or KEY-)")
        return set_mod.run_edit(s, opts, st.scheme, set_mod.edit_env(changes, containers, overwrite), "env updated",
                                "set env", st.deps.stdin)

    execute(body)


def _set_resources(args: tuple[str, ...], sel: Selection, dry_run: str, output: str, containers: str, limits: str,
                   requests: str) -> None:
    def body(s: Session, st: CliState) -> Any:
        parsed_limits = set_mod.parse_resource_list(limits, "--limits")
        parsed_requests = set_mod.parse_resource_list(requests, "--requests")
        if not parsed_limits and not parsed_requests:
            raise CliError("you must specify an update to requests or limits (in the form of --requests/--limits)")
        sel.args = args
        return set_mod.run_edit(s, set_mod.SetOptions(sel, dry_run, output), st.scheme,
                                set_mod.edit_resources(parsed_limits, parsed_requests, containers),
                                "resource requirements updated", "set resources", st.deps.stdin)

    execute(body)


@cli.group("set")
def set_cmd() -> None:
    """Change the containers of Deployments, ReplicaSets and Pods: image, env, resources."""


set_cmd.add_command(_set_command(
    "image", "Update container images: kubelite set image deployment/NAME CONTAINER=IMAGE [...] ('*' = all).",
    [], _set_image))
set_cmd.add_command(_set_command(
    "env", "Update environment variables: kubelite set env deployment/NAME KEY=VALUE [KEY2-] [--list].",
    [click.option("--containers", "-c", default="*", help="The containers to change (wildcards allowed)."),
     click.option("--env", "-e", multiple=True, help="KEY=VALUE; repeatable."),
     bool_option("--list", "list_", help="Print the environment instead of changing it."),
     bool_option("--overwrite", default=True, help="Allow replacing existing values.")],
    _set_env))
set_cmd.add_command(_set_command(
    "resources", "Update resource requests and limits: kubelite set resources deployment/NAME --limits=cpu=200m.",
    [click.option("--containers", "-c", default="*", help="The containers to change (wildcards allowed)."),
     click.option("--limits", default="", help="Resource limits, e.g. cpu=200m,memory=512Mi."),
     click.option("--requests", default="", help="Resource requests, e.g. cpu=100m,memory=256Mi.")],
    _set_resources))


@cli.command("expose")
@selection_options(selector=False)
@click.option("--port", default="", help="The port the Service serves on (default: the container ports).")
@click.option("--target-port", default="", help="The container port (number or name) traffic goes to.")
@click.option("--protocol", default="", help="TCP (default), UDP or SCTP.")
@click.option("--type", "service_type", default="", help="ClusterIP (default), NodePort or LoadBalancer.")
@click.option("--name", default="", help="The Service's name (default: the object's).")
@click.option("--selector", "-l", default="", help="The Service's selector (default: the object's).")
@click.option("--labels", default="", help="The Service's labels (default: the object's).")
@click.option("--cluster-ip", default="", help="The ClusterIP to ask for (None: headless).")
@dry_run_option()
@output_option("Output format: name, yaml or json.")
@global_options(hidden=True)
def expose_cmd(args: tuple[str, ...], filenames: tuple[str, ...], recursive: bool, port: str, target_port: str,
               protocol: str, service_type: str, name: str, selector: str, labels: str, cluster_ip: str,
               dry_run: str, output: str) -> None:
    """Expose a Deployment, ReplicaSet, Pod or Service as a new Service."""
    opts = generate_mod.ExposeOptions(selection=Selection(args=args, filenames=filenames, recursive=recursive),
                                      port=port, target_port=target_port, protocol=protocol, type=service_type,
                                      name=name, selector=selector, labels=labels, cluster_ip=cluster_ip,
                                      dry_run=dry_run, output=output)
    execute(lambda s, st: generate_mod.run_expose(s, opts, st.scheme, st.deps.stdin))


@cli.group("token")
def token_cmd() -> None:
    """Bootstrap tokens for joining nodes (Secrets bootstrap-token-ID in kube-system)."""


@token_cmd.command("create")
@click.argument("token_value", metavar="[TOKEN]", required=False, default="")
@click.option("--ttl", default="24h", show_default=True,
              help="How long the token is valid (e.g. 2h, 30m); 0 means it never expires.")
@click.option("--description", default="", help="A human-friendly description of what the token is for.")
@click.option("--usages", default=",".join(bootstraptoken.USAGES), show_default=True,
              help="What the token may be used for: authentication, signing.")
@click.option("--groups", default="", help="Extra groups (system:bootstrappers:...) the token authenticates as.")
@flag_option("--print-join-command", help="Print the command a new worker runs to join, instead of the token.")
@global_options(hidden=True)
def token_create_cmd(token_value: str, ttl: str, description: str, usages: str, groups: str,
                     print_join_command: bool) -> None:
    """Create a bootstrap token (random unless TOKEN is given) and print it."""
    def body(s: Session, st: CliState) -> Any:
        opts = token_mod.CreateOptions(token=token_value, ttl_seconds=parse_duration(ttl, "--ttl"),
                                       description=description, usages=split_columns((usages,)),
                                       groups=split_columns((groups,)), print_join_command=print_join_command)
        return token_mod.run_create(s, opts)

    execute(body)


@token_cmd.command("list")
@global_options(hidden=True)
def token_list_cmd() -> None:
    """List the bootstrap tokens."""
    execute(lambda s, st: token_mod.run_list(s))


@token_cmd.command("delete")
@click.argument("ids", metavar="TOKEN_ID|TOKEN...", nargs=-1)
@global_options(hidden=True)
def token_delete_cmd(ids: tuple[str, ...]) -> None:
    """Delete bootstrap tokens, by id or by whole token."""
    execute(lambda s, st: token_mod.run_delete(s, ids))


@cli.command("join")
@click.argument("endpoint", metavar="HOST:PORT")
@click.option("--token", "join_token", required=True, help="The bootstrap token (kubelite token create).")
@click.option("--node-name", default="", help="This node's name (default: the hostname).")
@click.option("--node-ip", default="", help="This host's address (default: the one it reaches the API server from).")
@click.option("--cluster-cidr", default="10.244.0.0/16", show_default=True)
@click.option("--cluster-dns", default="10.96.0.10", show_default=True)
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@flag_option("--no-start", help="Enable the units without starting them.")
def join_cmd(endpoint: str, join_token: str, node_name: str, node_ip: str, cluster_cidr: str, cluster_dns: str,
             cluster_domain: str, no_start: bool) -> None:
    """Join THIS host to a cluster as a worker: check the token, write /etc/kubelite, start the units."""
    opts = join_mod.JoinOptions(endpoint=endpoint, token=join_token, node_name=node_name, node_ip=node_ip,
                                cluster_cidr=cluster_cidr, cluster_dns=cluster_dns, cluster_domain=cluster_domain,
                                start=not no_start)
    execute(lambda s, st: join_mod.run_join(opts, s.streams, node.LocalHost()))


cli.add_command(cluster_cmd)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry: runs the group and exits with its code."""
    # The client libraries log watch reconnects as warnings; a CLI user sees only what -v asks for.
    logging.getLogger("kubelite").addHandler(logging.NullHandler())
    cli.main(args=list(argv) if argv is not None else None, prog_name="kubelite")
