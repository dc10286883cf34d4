"""The pure parts of rollout, set, create deployment and expose: decisions as functions of objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from kubelite.api.apps.v1 import generated_pb2 as apps
from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli import generate, rollout, setcmd
from kubelite.cli.clientset import Connection, ConnectionOptions, Session, Streams
from kubelite.cli.errors import CliError
from kubelite.cli.workloads import Selection
from kubelite.client.client import ObjectList, WatchEvent
from kubelite.controllers import deploymentutil as du
from kubelite.machinery.kinds import SCHEME


def deployment(replicas: int = 3, image: str = "app:1", generation: int = 1, observed: int = 1) -> apps.Deployment:
    d = apps.Deployment(api_version="apps/v1", kind="Deployment")
    d.metadata.name = "web"
    d.metadata.namespace = "default"
    d.metadata.uid = "uid-web"
    d.metadata.generation = generation
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="app", image=image)
    d.status.observed_generation = observed
    return d


def replicaset(d: apps.Deployment, revision: int, image: str, **annotations: str) -> apps.ReplicaSet:
    rs = apps.ReplicaSet()
    template = apps.Deployment()
    template.CopyFrom(d)
    template.spec.template.spec.containers[0].image = image
    h = du.compute_hash(template.spec.template, None)
    rs.metadata.name = f"web-{h}"
    rs.metadata.annotations[du.REVISION] = str(revision)
    rs.metadata.annotations.update(annotations)
    rs.spec.template.CopyFrom(template.spec.template)
    rs.spec.template.metadata.labels[du.POD_TEMPLATE_HASH] = h
    return rs


# -- rollout status ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected", "done"), [
    ({"updated_replicas": 1, "replicas": 4, "available_replicas": 3},
     'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...', False),
    ({"updated_replicas": 3, "replicas": 4, "available_replicas": 3},
     'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...', False),
    ({"updated_replicas": 3, "replicas": 3, "available_replicas": 1},
     'Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...', False),
    ({"updated_replicas": 3, "replicas": 3, "available_replicas": 3}, 'deployment "web" successfully rolled out', True),
])
def test_status_messages_follow_kubectls_order_of_checks(status: dict[str, int], expected: str, done: bool) -> None:
    d = deployment()
    for key, value in status.items():
        setattr(d.status, key, value)
    assert rollout.status_message(d) == (expected, done)


def test_status_waits_for_the_spec_to_be_observed_and_fails_past_the_deadline() -> None:
    d = deployment(generation=2, observed=1)
    assert rollout.status_message(d) == ("Waiting for deployment spec update to be observed...", False)
    d = deployment()
    d.status.conditions.add(type="Progressing", status="False", reason="ProgressDeadlineExceeded")
    with pytest.raises(rollout.RolloutFailed, match='deployment "web" exceeded its progress deadline'):
        rollout.status_message(d)


def test_status_pinned_to_a_revision() -> None:
    d = deployment()
    d.metadata.annotations[du.REVISION] = "2"
    with pytest.raises(CliError, match=r"desired revision \(3\) is different from the running revision \(2\)"):
        rollout.status_message(d, 3)


def test_pod_failure_names_the_container_and_the_reason() -> None:
    pod = core.Pod()
    pod.status.container_statuses.add(name="app").state.waiting.reason = "ContainerCreating"
    assert rollout.pod_failure(pod) == ""
    pod.status.container_statuses[0].state.waiting.reason = "ErrImageNeverPull"
    pod.status.container_statuses[0].state.waiting.message = 'image "x" is not present'
    assert rollout.pod_failure(pod) == 'container "app": ErrImageNeverPull: image "x" is not present'
    pod.metadata.deletion_timestamp.GetCurrentTime()  # a pod on its way out is no news
    assert rollout.pod_failure(pod) == ""


def test_new_template_hash_is_the_controllers() -> None:
    d = deployment()
    assert rollout.new_template_hash(d) == du.compute_hash(d.spec.template, None)
    d.status.collision_count = 1
    assert rollout.new_template_hash(d) == du.compute_hash(d.spec.template, 1)


# -- history and undo ----------------------------------------------------------------------------------


def test_history_lists_revisions_with_their_change_cause() -> None:
    d = deployment()
    rss = [replicaset(d, 3, "app:1", **{rollout.CHANGE_CAUSE: "back to 1"}), replicaset(d, 2, "app:2")]
    by_revision = rollout.revisions(rss)
    assert sorted(by_revision) == [2, 3]
    assert rollout.history_table(by_revision) == ["REVISION  CHANGE-CAUSE", "2         <none>", "3         back to 1"]


def test_template_lines_describe_the_pod_template() -> None:
    d = deployment()
    lines = rollout.template_lines(replicaset(d, 1, "app:7").spec.template)
    assert lines[0] == "Pod Template:"
    assert any("app:7" in line for line in lines)


def test_choose_rollback_takes_the_previous_or_the_named_revision() -> None:
    d = deployment()
    rss = [replicaset(d, 1, "app:1"), replicaset(d, 3, "app:3"), replicaset(d, 2, "app:2")]
    assert rollout.choose_rollback(d, rss, 0).spec.template.spec.containers[0].image == "app:2"
    assert rollout.choose_rollback(d, rss, 1).spec.template.spec.containers[0].image == "app:1"
    with pytest.raises(CliError, match=r"unable to find specified revision 7 in history .*revisions: 1, 2, 3"):
        rollout.choose_rollback(d, rss, 7)
    with pytest.raises(CliError, match="unable to find specified revision -1"):
        rollout.choose_rollback(d, rss, -1)
    with pytest.raises(CliError, match='no rollout history found for deployment "web"'):
        rollout.choose_rollback(d, rss[:1], 0)


def test_rollback_copies_the_template_without_its_hash_and_the_revisions_annotations() -> None:
    d = deployment(image="app:2")
    d.metadata.annotations.update({du.REVISION: "2", du.LAST_APPLIED: "{}", "team": "b"})
    rs = replicaset(d, 1, "app:1", team="a", note="first")
    rolled = rollout.rollback_deployment(d, rs)
    assert rolled is not None
    assert rolled.spec.template.spec.containers[0].image == "app:1"
    assert du.POD_TEMPLATE_HASH not in rolled.spec.template.metadata.labels
    # The Deployment's own annotations stay; the rest come from the revision.
    assert dict(rolled.metadata.annotations) == {du.REVISION: "2", du.LAST_APPLIED: "{}", "team": "a",
                                                 "note": "first"}
    assert d.spec.template.spec.containers[0].image == "app:2"  # the input is not changed
    current = replicaset(d, 2, "app:2")
    assert rollout.rollback_deployment(d, current) is None


def test_restarted_at_is_rfc3339_utc() -> None:
    assert rollout.restarted_at(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


# -- set -----------------------------------------------------------------------------------------------


def spec(*names: str) -> core.PodSpec:
    s = core.PodSpec()
    s.init_containers.add(name="init", image="init:1")
    for n in names:
        s.containers.add(name=n, image=f"{n}:1")
    return s


def test_split_resources_refuses_a_resource_after_a_change() -> None:
    assert setcmd.split_resources(("deploy/a", "deploy/b", "x=y"), lambda a: "=" in a, "image") == \
        (["deploy/a", "deploy/b"], ["x=y"])
    with pytest.raises(CliError, match="all resources must be specified before image changes: deploy/b"):
        setcmd.split_resources(("deploy/a", "x=y", "deploy/b"), lambda a: "=" in a, "image")


def test_set_image() -> None:
    assert setcmd.parse_images(["app=app:2", "*=all:1"]) == {"app": "app:2", "*": "all:1"}
    for bad, message in [("app=", 'invalid image update "app="'), ("=img", 'invalid image update "=img"'),
                         ("app=a b", "no whitespace")]:
        with pytest.raises(CliError, match=message):
            setcmd.parse_images([bad])
    with pytest.raises(CliError, match="more than one image"):
        setcmd.parse_images(["app=a:1", "app=a:2"])
    s = spec("app", "side")
    assert setcmd.edit_images({"app": "app:2"})(s) is True
    assert [c.image for c in s.containers] == ["app:2", "side:1"]
    assert setcmd.edit_images({"app": "app:2"})(s) is False
    assert setcmd.edit_images({"init": "init:2"})(s) is True and s.init_containers[0].image == "init:2"
    with pytest.raises(CliError, match=r'unable to find container named "nope" \(containers: init, app, side\)'):
        setcmd.edit_images({"nope": "x:1"})(s)
    setcmd.edit_images({"*": "all:9"})(s)
    assert {c.image for c in [*s.init_containers, *s.containers]} == {"all:9"}


def test_set_env() -> None:
    changes = setcmd.parse_env(["A=1", "B=x=y", "C-"])
    assert changes.set == {"A": "1", "B": "x=y"} and changes.remove == ["C"]
    for bad, message in [("=1", 'invalid environment variable "=1"'), ("A", 'invalid environment variable "A"')]:
        with pytest.raises(CliError, match=message):
            setcmd.parse_env([bad])
    with pytest.raises(CliError, match="both set and removed"):
        setcmd.parse_env(["A=1", "A-"])
    s = spec("app", "side")
    s.containers[0].env.add(name="C", value="old")
    assert setcmd.edit_env(changes, "app", overwrite=True)(s) is True
    assert [(e.name, e.value) for e in s.containers[0].env] == [("A", "1"), ("B", "x=y")]
    assert not s.containers[1].env
    with pytest.raises(CliError, match=r"'A' already has a value \(1\), and --overwrite is false"):
        setcmd.edit_env(setcmd.parse_env(["A=2"]), "app", overwrite=False)(s)
    assert setcmd.edit_env(setcmd.parse_env(["A=1"]), "app", overwrite=False)(s) is False
    with pytest.raises(CliError, match='unable to find container named "db'):
        setcmd.edit_env(changes, "db*", overwrite=True)(s)
    assert setcmd.env_listing("Deployment", "web", s, "a*") == ["# deployment web, container app", "A=1", "B=x=y"]


def test_set_resources() -> None:
    assert setcmd.parse_resource_list("cpu=100m, memory=64Mi", "--limits") == {"cpu": "100m", "memory": "64Mi"}
    for bad, message in [("cpu", 'invalid --limits "cpu"'), ("cpu=lots", "'lots' is not a quantity"),
                         ("cpu=-1", "must not be negative")]:
        with pytest.raises(CliError, match=message):
            setcmd.parse_resource_list(bad, "--limits")
    s = spec("app", "side")
    assert setcmd.edit_resources({"cpu": "1"}, {"cpu": "500m"}, "side")(s) is True
    assert dict(s.containers[1].resources.limits) == {"cpu": "1"} and not s.containers[0].resources.limits
    assert setcmd.edit_resources({"cpu": "1"}, {}, "side")(s) is False


# -- create deployment, expose ------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "name"), [
    ("nginx", "nginx"), ("nginx:1.25", "nginx"), ("registry:5000/team/web_app:1", "web-app"),
    ("busybox@sha256:abc", "busybox"),
])
def test_container_names_come_from_the_image(image: str, name: str) -> None:
    assert generate.container_name(image) == name


def test_build_deployment() -> None:
    opts = generate.CreateDeploymentOptions(name="web", images=("nginx:1", "nginx:2"), replicas=2, port=80)
    d = generate.build_deployment(opts, "ns1")
    assert d.metadata.namespace == "ns1" and dict(d.metadata.labels) == {"app": "web"}
    assert dict(d.spec.selector.match_labels) == {"app": "web"} and d.spec.replicas == 2
    assert [(c.name, c.image) for c in d.spec.template.spec.containers] == [("nginx", "nginx:1"),
                                                                          ("nginx-2", "nginx:2")]
    assert [p.container_port for p in d.spec.template.spec.containers[0].ports] == [80]
    for bad, message in [({"images": ()}, 'required flag\\(s\\) "image" not set'),
                         ({"replicas": -1}, "--replicas must not be negative"),
                         ({"port": 70000}, "--port must be between 1 and 65535"),
                         ({"command": ("sleep", "1")}, "cannot specify multiple --image options and command")]:
        with pytest.raises(CliError, match=message):
            generate.build_deployment(generate.CreateDeploymentOptions(**{**opts.__dict__, **bad}), "ns1")


def test_build_service_from_a_deployment() -> None:
    d = deployment()
    d.metadata.labels["tier"] = "front"
    d.spec.template.spec.containers[0].ports.add(container_port=8080)
    d.spec.template.spec.containers[0].ports.add(container_port=9090, protocol="UDP")
    sel = Selection()
    svc = generate.build_service(d, generate.ExposeOptions(selection=sel), "default")
    assert dict(svc.spec.selector) == {"app": "web"} and dict(svc.metadata.labels) == {"tier": "front"}
    assert [(p.name, p.port, p.target_port, p.protocol) for p in svc.spec.ports] == [
        ("port-1", 8080, "8080", "TCP"), ("port-2", 9090, "9090", "UDP")]
    svc = generate.build_service(d, generate.ExposeOptions(selection=sel, port="80", target_port="http",
                                                           type="NodePort", name="front"), "default")
    assert svc.metadata.name == "front" and svc.spec.type == "NodePort"
    assert [(p.port, p.target_port) for p in svc.spec.ports] == [(80, "http")]
    for bad, message in [({"type": "Bogus"}, "--type must be one of"), ({"port": "x"}, "--port must be a number"),
                         ({"target_port": "80"}, "--target-port needs a single port"),
                         ({"selector": "a!=b"}, 'invalid --selector "a!=b"')]:
        with pytest.raises(CliError, match=message):
            generate.build_service(d, generate.ExposeOptions(selection=sel, **bad), "default")
    d.spec.selector.match_expressions.add(key="app", operator="Exists")
    with pytest.raises(CliError, match="matchExpressions"):
        generate.build_service(d, generate.ExposeOptions(selection=sel, port="80"), "default")
    del d.spec.template.spec.containers[0].ports[:]
    with pytest.raises(CliError, match="couldn't find port via --port flag or introspection"):
        generate.build_service(d, generate.ExposeOptions(selection=sel, selector="app=web"), "default")


# -- rollout status, driven through its watches -----------------------------------------------------------


class _FakeClient:
    """get/list answer from dicts; watches are queues the test feeds (see _session)."""

    def __init__(self, d: apps.Deployment, pods: list[core.Pod]) -> None:
        self.d = d
        self.pods = pods

    async def get(self, kind: type, name: str, namespace: str = "", **_: object) -> apps.Deployment:
        return self.d

    async def list(self, kind: type, namespace: str = "", **_: object) -> ObjectList[core.Pod]:
        return ObjectList(items=list(self.pods), resource_version="10")

    async def close(self) -> None:
        pass


def _session(client: _FakeClient, events: dict[str, list[WatchEvent[object]]]) -> tuple[Session, list[str]]:
    out: list[str] = []

    def watch(c: object, kind: type, namespace: str, label_selector: str, field_selector: str,
              resource_version: str) -> AsyncIterator[object]:
        name = "pods" if kind is core.Pod else "deployment"

        async def gen() -> AsyncIterator[object]:
            for event in events[name]:
                await asyncio.sleep(0.01 if name == "deployment" else 0)
                yield event
            await asyncio.Event().wait()  # a watch stays open

        return gen()

    session = Session(options=ConnectionOptions(), streams=Streams(out=out.append, err=out.append),
                      watch_factory=watch)
    session._connection = Connection(client=client)  # type: ignore[arg-type]
    return session, out


def _progressed(d: apps.Deployment, updated: int, replicas: int, available: int) -> apps.Deployment:
    nxt = apps.Deployment()
    nxt.CopyFrom(d)
    nxt.status.updated_replicas, nxt.status.replicas, nxt.status.available_replicas = updated, replicas, available
    return nxt


async def test_status_prints_each_change_once_until_done() -> None:
    d = _progressed(deployment(), 1, 4, 3)
    events = {"deployment": [WatchEvent("MODIFIED", d), WatchEvent("MODIFIED", d),
                             WatchEvent("MODIFIED", _progressed(d, 3, 4, 3)),
                             WatchEvent("BOOKMARK", apps.Deployment()),
                             WatchEvent("MODIFIED", _progressed(d, 3, 3, 3))],
              "pods": []}
    session, out = _session(_FakeClient(d, []), events)
    opts = rollout.StatusOptions(selection=Selection(args=("deployment/web",)))
    assert await rollout.run_status(session, opts, SCHEME) == 0
    assert out == ['Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
                   'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
                   'deployment "web" successfully rolled out']


async def test_status_gives_up_on_a_new_pod_that_cannot_pull_and_ignores_old_ones() -> None:
    d = _progressed(deployment(), 1, 4, 3)
    new_hash = rollout.new_template_hash(d)

    def pod(name: str, template_hash: str) -> core.Pod:
        p = core.Pod()
        p.metadata.name, p.metadata.uid = name, name
        p.metadata.labels[du.POD_TEMPLATE_HASH] = template_hash
        p.status.container_statuses.add(name="app").state.waiting.reason = "ImagePullBackOff"
        return p

    old = pod("web-old", "oldhash")
    events = {"deployment": [], "pods": [WatchEvent("ADDED", pod("web-new", new_hash))]}
    session, _ = _session(_FakeClient(d, [old]), events)
    opts = rollout.StatusOptions(selection=Selection(args=("deployment/web",)))
    with pytest.raises(rollout.RolloutFailed, match='rollout failed: pod "web-new" container "app": ImagePullBackOff'):
        await rollout.run_status(session, opts, SCHEME)


async def test_status_times_out_and_reports_a_deleted_deployment() -> None:
    d = _progressed(deployment(), 1, 4, 3)
    session, _ = _session(_FakeClient(d, []), {"deployment": [], "pods": []})
    opts = rollout.StatusOptions(selection=Selection(args=("deployment/web",)), timeout=0.05)
    with pytest.raises(CliError, match="timed out waiting for the condition"):
        await rollout.run_status(session, opts, SCHEME)
    session, _ = _session(_FakeClient(d, []), {"deployment": [WatchEvent("DELETED", d)], "pods": []})
    with pytest.raises(CliError, match="object has been deleted"):
        await rollout.run_status(session, rollout.StatusOptions(selection=Selection(args=("deploy", "web"))), SCHEME)
    session, out = _session(_FakeClient(d, []), {"deployment": [], "pods": []})
    opts = rollout.StatusOptions(selection=Selection(args=("deployment/web",)), watch=False)
    assert await rollout.run_status(session, opts, SCHEME) == 0 and len(out) == 1
