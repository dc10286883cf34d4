"""The verbs that talk to running containers: logs, exec, attach, port-forward, run.

They go through the API server's pod streams (the server forwards them to
the pod's kubelet), so they need nothing but the kubeconfig. Output is binary
and written as it arrives; `exec` and `attach` pass the remote exit code
through as kubelite's own, and with `-t` put the local terminal in raw mode
and forward its size, so that an interactive shell behaves like one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.cli.clientset import Session
from kubelite.cli.errors import CliError, ExitError
from kubelite.client.streams import ExecSession
from kubelite.machinery import codec
from kubelite.machinery.errors import StatusError

# How long `run -it` and `port-forward` wait for a pod to be running.
POD_RUNNING_TIMEOUT = 60.0


@dataclass
class Terminal:
    """The local ends of a command: binary output streams and, for -i, input."""

    stdout: BinaryIO
    stderr: BinaryIO
    stdin: BinaryIO | None = None

    @staticmethod
    def real() -> Terminal:
        return Terminal(sys.stdout.buffer, sys.stderr.buffer, sys.stdin.buffer)


def pod_name(arg: str) -> str:
    """``web`` or ``pod/web`` (``po/``, ``pods/``); other kinds are refused with kubectl's words."""
    kind, sep, name = arg.partition("/")
    if not sep:
        return arg
    if kind not in ("pod", "pods", "po"):
        raise CliError(f'cannot attach to {kind}: only pods are supported here; name a pod (pod/NAME)')
    return name


# --- logs ---------------------------------------------------------------------------------------


@dataclass
class LogsOptions:
    args: tuple[str, ...]
    container: str = ""
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail: int = -1
    since_seconds: float = 0.0
    limit_bytes: int = 0
    selector: str = ""
    prefix: bool = False
    all_containers: bool = False


async def run_logs(session: Session, opts: LogsOptions, term: Terminal) -> int:
    client = session.client
    ns = session.namespace
    if opts.selector:
        if opts.args:
            raise CliError("only one of a pod name or a selector (-l) may be given")
        pods = (await client.list(core_v1.Pod, ns, label_selector=opts.selector)).items
        targets = [(p.metadata.name, c) for p in pods for c in _containers(p, opts)]
        prefix = True if len(targets) > 1 else opts.prefix
    else:
        if len(opts.args) != 1:
            raise CliError("expected exactly one pod name (or -l SELECTOR)")
        name = pod_name(opts.args[0])
        if opts.all_containers:
            pod = await client.get(core_v1.Pod, name, ns)
            targets = [(name, c) for c in _containers(pod, opts)]
        else:
            targets = [(name, opts.container)]
        prefix = opts.prefix
    streams = [_log_stream(session, name, container, opts) for name, container in targets]
    if len(streams) == 1 and not prefix:
        async for data in streams[0]:
            _write(term.stdout, data)
        return 0
    # Several streams: lines, each prefixed with where it came from, in arrival order.
    labels = [f"[pod/{name}/{container or '*'}] ".encode() for name, container in targets]
    await asyncio.gather(*(_copy_lines(s, term.stdout, label) for s, label in zip(streams, labels, strict=True)))
    return 0


def _containers(pod: core_v1.Pod, opts: LogsOptions) -> list[str]:
    if opts.all_containers:
        return [c.name for c in pod.spec.init_containers] + [c.name for c in pod.spec.containers]
    return [opts.container or pod.spec.containers[0].name] if pod.spec.containers else []


def _log_stream(session: Session, name: str, container: str, opts: LogsOptions) -> AsyncIterator[bytes]:
    return session.client.logs(
        session.namespace, name, container=container, follow=opts.follow, previous=opts.previous,
        timestamps=opts.timestamps, tail_lines=opts.tail if opts.tail >= 0 else None,
        since_seconds=int(opts.since_seconds) if opts.since_seconds else None,
        limit_bytes=opts.limit_bytes or None)


async def _copy_lines(stream: AsyncIterator[bytes], out: BinaryIO, label: bytes) -> None:
    pending = b""
    async for data in stream:
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _write(out, label + line + b"\n")
    if pending:
        _write(out, label + pending + b"\n")


def _write(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


# --- exec and attach ----------------------------------------------------------------------------


@dataclass
class ExecOptions:
    pod: str
    command: tuple[str, ...]
    container: str = ""
    stdin: bool = False
    tty: bool = False
    attach: bool = False
    quiet: bool = False


async def run_exec(session: Session, opts: ExecOptions, term: Terminal) -> int:
    if not opts.attach and not opts.command:
        raise CliError("you must specify at least one command for the container")
    name = pod_name(opts.pod)
    width, height = _terminal_size(term) if opts.tty else (0, 0)
    exec_session = await session.client.exec(session.namespace, name, opts.command, container=opts.container,
                                             stdin=opts.stdin, tty=opts.tty, width=width, height=height,
                                             attach=opts.attach)
    with _raw_terminal(term, opts.tty and opts.stdin):
        code = await _drive(exec_session, opts, term)
    if code and not opts.quiet:
        term.stderr.write(f"command terminated with exit code {code}\n".encode())
        term.stderr.flush()
    return code


async def _drive(exec_session: ExecSession, opts: ExecOptions, term: Terminal) -> int:
    pump: asyncio.Task[None] | None = None
    if opts.stdin and term.stdin is not None:
        pump = asyncio.create_task(_send_stdin(exec_session, term.stdin), name="exec-stdin")
    restore_winch = _forward_resizes(exec_session, term) if opts.tty else None
    try:
        async for piece in exec_session.output():
            _write(term.stdout if piece.stream == "stdout" else term.stderr, piece.data)
    finally:
        if restore_winch is not None:
            restore_winch()
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, StatusError):
                await pump
    return exec_session.exit_code


async def _send_stdin(exec_session: ExecSession, stdin: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    while True:
        data = await loop.run_in_executor(None, _read_some, stdin)
        if not data:
            await exec_session.close_stdin()
            return
        await exec_session.send(data)


def _read_some(stdin: BinaryIO) -> bytes:
    try:
        return os.read(stdin.fileno(), 4096)
    except (OSError, ValueError, AttributeError):
        return stdin.read(4096) or b""


def _terminal_size(term: Terminal) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(term.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return size.columns, size.lines


def _forward_resizes(exec_session: ExecSession, term: Terminal) -> Callable[[], None] | None:
    """Sends the terminal's new size on SIGWINCH; returns the undo."""
    loop = asyncio.get_running_loop()
    sending: set[asyncio.Task[None]] = set()

    def changed() -> None:
        width, height = _terminal_size(term)
        task = loop.create_task(exec_session.resize(width, height), name="exec-resize")
        sending.add(task)
        task.add_done_callback(sending.discard)

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGWINCH)
        for task in list(sending):
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGWINCH, changed)
    except (ValueError, RuntimeError, NotImplementedError):
        return None
    return undo


@contextlib.contextmanager
def _raw_terminal(term: Terminal, wanted: bool) -> Any:
    """Raw mode on a local TTY for the session (keys go to the remote shell as typed)."""
    fd = -1
    if wanted and term.stdin is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = term.stdin.fileno()
    if fd < 0 or not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# --- port-forward -------------------------------------------------------------------------------


@dataclass
class PortForwardOptions:
    pod: str
    ports: tuple[str, ...]
    address: str = "127.0.0.1"
    # Test hook: called with the bound (local, remote) ports once listening.
    on_listening: Callable[[list[tuple[int, int]]], None] | None = None
    # Stops after this many connections (0: until interrupted); for tests.
    max_connections: int = 0


def parse_port_pairs(specs: Sequence[str]) -> list[tuple[int, int]]:
    """``8080:80``, ``8080`` (same both sides) or ``:80`` (any local port)."""
    out: list[tuple[int, int]] = []
    for spec in specs:
        local, sep, remote = spec.partition(":")
        if not sep:
            remote = local
        try:
            lp = int(local) if local else 0
            rp = int(remote)
        except ValueError:
            raise CliError(f'invalid port "{spec}": use LOCAL:REMOTE, PORT or :REMOTE') from None
        if not (0 <= lp < 65536 and 0 < rp < 65536):
            raise CliError(f'invalid port "{spec}": ports are 1-65535')
        out.append((lp, rp))
    if not out:
        raise CliError("at least one port is required (LOCAL:REMOTE)")
    return out


async def run_port_forward(session: Session, opts: PortForwardOptions, term: Terminal) -> int:
    name = pod_name(opts.pod)
    client, ns = session.client, session.namespace
    pod = await client.get(core_v1.Pod, name, ns)
    if pod.status.phase != "Running":
        raise CliError(f"unable to forward port because pod is not running. Current status={pod.status.phase}")
    pairs = parse_port_pairs(opts.ports)
    served = 0
    finished = asyncio.Event()
    servers: list[asyncio.Server] = []
    bound: list[tuple[int, int]] = []

    for local, remote in pairs:
        def handler(remote_port: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                nonlocal served
                _write(term.stdout, f"Handling connection for {remote_port}\n".encode())
                try:
                    await client.forward_connection(ns, name, remote_port, reader, writer)
                except StatusError as exc:
                    _write(term.stderr, f"E forwarding to {remote_port}: {exc.message}\n".encode())
                served += 1
                if opts.max_connections and served >= opts.max_connections:
                    finished.set()
            return handle

        server = await asyncio.start_server(handler(remote), opts.address, local)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        bound.append((port, remote))
        _write(term.stdout, f"Forwarding from {opts.address}:{port} -> {remote}\n".encode())
    if opts.on_listening is not None:
        opts.on_listening(bound)
    try:
        await finished.wait()
    finally:
        for server in servers:
            server.close()
    return 0


# --- run ----------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    name: str
    image: str
    args: tuple[str, ...] = ()
    command: bool = False
    env: tuple[str, ...] = ()
    labels: str = ""
    port: int = 0
    restart: str = "Always"
    image_pull_policy: str = ""
    stdin: bool = False
    tty: bool = False
    rm: bool = False
    attach: bool = False
    dry_run: str = "none"
    output: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


def build_run_pod(opts: RunOptions, namespace: str) -> core_v1.Pod:
    """The Pod `kubelite run` creates, shaped as kubectl run's."""
    if not opts.image:
        raise CliError("--image is required")
    if opts.restart not in ("Always", "OnFailure", "Never"):
        raise CliError(f'invalid restart policy: {opts.restart}')
    labels = {"run": opts.name}
    if opts.labels:
        labels = {}
        for item in opts.labels.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CliError(f'invalid label spec "{item}": use key=value')
            labels[key] = value
    container: dict[str, Any] = {"name": opts.name, "image": opts.image}
    if opts.args:
        container["command" if opts.command else "args"] = list(opts.args)
    if opts.env:
        env = []
        for item in opts.env:
            key, sep, value = item.partition("=")
            if not sep:
                raise CliError(f'invalid env "{item}": use NAME=VALUE')
            env.append({"name": key, "value": value})
        container["env"] = env
    if opts.port:
        container["ports"] = [{"containerPort": opts.port}]
    if opts.image_pull_policy:
        container["imagePullPolicy"] = opts.image_pull_policy
    if opts.stdin:
        container["stdin"] = True
        container["stdinOnce"] = True
    if opts.tty:
        container["tty"] = True
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": opts.name, "namespace": namespace,
                                                           "labels": labels},
           "spec": {"containers": [container], "restartPolicy": opts.restart}}
    pod = codec.decode_into(doc, core_v1.Pod)
    assert isinstance(pod, core_v1.Pod)
    return pod


async def run_run(session: Session, opts: RunOptions, term: Terminal, printer: Callable[[Any], None]) -> int:
    pod = build_run_pod(opts, session.namespace)
    if opts.dry_run == "client":
        printer(pod)
        return 0
    client = session.client
    created = await client.create(pod, dry_run=opts.dry_run == "server")
    if not (opts.attach or opts.stdin or opts.tty):
        if opts.output:
            printer(created)
        else:
            session.streams.out(f"pod/{opts.name} created")
        return 0
    try:
        await _wait_running(session, opts.name)
        try:
            code = await run_exec(session, ExecOptions(pod=opts.name, command=(), stdin=opts.stdin, tty=opts.tty,
                                                       attach=True, quiet=True), term)
            if opts.restart == "Never":
                # The attach can end as stdin closes, before the command does: the pod's status has
                # the command's own exit code, which is what kubelite run returns (as kubectl run).
                final = await _exit_code(session, opts.name)
                code = code if final is None else final
        except StatusError as exc:
            # The command finished before we could attach (kubectl does the same): its output from the
            # log, its exit code from the pod's status. A stream cut as the container exits leaves the
            # output already shown: only the exit code is still to learn.
            code = await _finished(session, opts.name, term, show_log="not running" in exc.message, cause=exc)
    finally:
        if opts.rm:
            await client.delete(core_v1.Pod, opts.name, session.namespace, grace_period_seconds=0)
            session.streams.out(f'pod "{opts.name}" deleted')
    if code:
        raise ExitError(code)
    return 0


async def _exit_code(session: Session, name: str, attempts: int = 40) -> int | None:
    """The container's exit code once the kubelet reports it terminated (None if it keeps running)."""
    for _ in range(attempts):
        pod = await session.client.get(core_v1.Pod, name, session.namespace)
        for status in pod.status.container_statuses:
            if status.state.HasField("terminated"):
                return int(status.state.terminated.exit_code)
        await asyncio.sleep(0.25)  # the kubelet reports the exit a moment after the stream ends
    return None


async def _finished(session: Session, name: str, term: Terminal, *, show_log: bool, cause: StatusError) -> int:
    code = await _exit_code(session, name, attempts=1 if show_log else 40)
    if code is None:
        raise cause
    if show_log:
        async for data in session.client.logs(session.namespace, name):
            _write(term.stdout, data)
    return code


async def _wait_running(session: Session, name: str) -> None:
    """Waits for the pod to run (or to finish, for a short command) through a watch."""
    ns = session.namespace

    def started(pod: core_v1.Pod) -> bool:
        if pod.status.phase in ("Running", "Succeeded", "Failed"):
            return True
        for status in pod.status.container_statuses:
            reason = status.state.waiting.reason
            if reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "CreateContainerConfigError",
                          "InvalidImageName"):
                raise CliError(f"pod {ns}/{name} cannot start: {reason}: {status.state.waiting.message}")
        return False

    async def watch() -> None:
        pod = await session.client.get(core_v1.Pod, name, ns)
        if started(pod):
            return
        async for event in session.watch(core_v1.Pod, ns, "", f"metadata.name={name}",
                                         pod.metadata.resource_version):
            if started(event.object):
                return

    try:
        await asyncio.wait_for(watch(), POD_RUNNING_TIMEOUT)
    except TimeoutError:
        raise CliError(f"timed out waiting for pod {ns}/{name} to be running") from None
