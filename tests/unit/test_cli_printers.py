"""Tables, AGE and the -o formats of the kubelite command line, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from kubelite.cli.printers import TableOptions, TablePrinter, format_table, to_yaml
from kubelite.machinery.tables import TABLES, format_endpoints, human_duration, node_roles, node_status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (4 * 3600 + 30 * 60, "4h30m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400, "2d"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_age_is_formatted_like_kubectl(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_columns_are_padded_by_three_and_last_column_is_not_padded() -> None:
    lines = format_table([["NAME", "READY", "STATUS"], ["nginx-abc", "1/1", "Running"]])
    assert lines == ["NAME        READY   STATUS", "nginx-abc   1/1     Running"]
    # Narrow columns still take six characters, as kubectl's tabwriter does.
    assert format_table([["A", "B"], ["x", "y"]]) == ["A     B", "x     y"]


def pod(**status: object) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": ts(200),
                     "labels": {"app": "web", "tier": "fe"}},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], "nodeName": "n1"},
        "status": status,
    }


def render(kind: str, group: str, objs: list[dict[str, Any]], **opts: Any) -> list[str]:
    printer = TablePrinter(TABLES.lookup(group, kind), TableOptions(**opts), now=NOW)
    return printer.render(objs)


def test_pod_table_counts_ready_containers_and_restarts() -> None:
    running: dict[str, Any] = {"running": {}}
    p = pod(phase="Running", podIP="10.244.1.5", containerStatuses=[
        {"name": "a", "ready": True, "restartCount": 2, "state": running,
         "lastState": {"terminated": {"finishedAt": ts(60)}}},
        {"name": "b", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
    ])
    lines = render("Pod", "", [p])
    assert lines[0] == "NAME    READY   STATUS             RESTARTS      AGE"
    assert lines[1] == "web-1   1/2     CrashLoopBackOff   2 (60s ago)   3m20s"


def test_pod_wide_adds_ip_node_and_placeholders() -> None:
    lines = render("Pod", "", [pod(phase="Pending", podIP="10.244.1.5")], wide=True)
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                                "READINESS", "GATES"]
    assert lines[1].split() == ["web-1", "0/2", "Pending", "0", "3m20s", "10.244.1.5", "n1", "<none>", "<none>"]


def test_pod_terminating_and_init_states() -> None:
    p = pod(phase="Running")
    p["metadata"]["deletionTimestamp"] = ts(1)
    assert render("Pod", "", [p])[1].split()[2] == "Terminating"
    waiting = {"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}
    init = pod(phase="Pending", initContainerStatuses=[waiting])
    init["spec"]["initContainers"] = [{"name": "i"}]
    assert render("Pod", "", [init])[1].split()[2] == "Init:0/1"


def test_all_namespaces_and_labels_columns() -> None:
    lines = render("Pod", "", [pod(phase="Running")], all_namespaces=True, show_labels=True)
    assert lines[0].split()[0] == "NAMESPACE" and lines[0].split()[-1] == "LABELS"
    assert lines[1].split()[0] == "default" and lines[1].split()[-1] == "app=web,tier=fe"


def test_no_headers_and_label_columns() -> None:
    lines = render("Pod", "", [pod(phase="Running")], no_headers=True, label_columns=("app",))
    assert len(lines) == 1 and lines[0].split()[-1] == "web"


def test_deployment_and_replicaset_tables() -> None:
    d = {"metadata": {"name": "web", "creationTimestamp": ts(7200)},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:local"}]}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert render("Deployment", "apps", [d]) == [
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE",
        "web    2/3     3            2           120m",
    ]
    assert render("Deployment", "apps", [d], wide=True)[1].split()[-3:] == ["nginx", "nginx:local", "app=web"]
    rs = {"metadata": {"name": "web-5d4f", "creationTimestamp": ts(30)}, "spec": {"replicas": 3},
          "status": {"replicas": 3, "readyReplicas": 1}}
    assert render("ReplicaSet", "apps", [rs])[1].split() == ["web-5d4f", "3", "3", "1", "30s"]


def test_service_table() -> None:
    svc = {"metadata": {"name": "web", "creationTimestamp": ts(5)},
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.12",
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    assert render("Service", "", [svc]) == [
        "NAME   TYPE       CLUSTER-IP   EXTERNAL-IP   PORT(S)               AGE",
        "web    NodePort   10.96.0.12   <none>        80:30080/TCP,53/UDP   5s",
    ]
    lb = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.2"}}
    assert render("Service", "", [lb])[1].split()[3] == "<pending>"


def test_node_status_roles_and_version() -> None:
    node = {"metadata": {"name": "n1", "creationTimestamp": ts(3 * 86400),
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v0.1.0"}}}
    assert node_status(node) == "Ready,SchedulingDisabled"
    assert node_roles(node) == "control-plane"
    assert render("Node", "", [node])[1].split() == ["n1", "Ready,SchedulingDisabled", "control-plane", "3d",
                                                     "v0.1.0"]
    assert node_status({"status": {}}) == "Unknown"


def test_endpoints_are_shortened_after_three() -> None:
    ep = {"subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}]}
    assert format_endpoints(ep) == "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more..."
    assert format_endpoints({}) == "<none>"


def test_small_kinds() -> None:
    cm = {"metadata": {"name": "cfg", "creationTimestamp": ts(1)}, "data": {"a": "1", "b": "2"}}
    assert render("ConfigMap", "", [cm])[1].split() == ["cfg", "2", "1s"]
    secret = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}}
    assert render("Secret", "", [secret])[1].split() == ["s", "Opaque", "1", "<unknown>"]
    ns = {"metadata": {"name": "dev", "creationTimestamp": ts(90)}, "status": {"phase": "Active"}}
    assert render("Namespace", "", [ns]) == ["NAME   STATUS   AGE", "dev    Active   90s"]
    lease = {"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "a"}}
    assert render("Lease", "coordination.k8s.io", [lease])[0].split() == ["NAME", "HOLDER", "AGE"]
    sa = {"metadata": {"name": "default"}}
    assert render("ServiceAccount", "", [sa])[1].split()[:2] == ["default", "0"]


def test_events_are_sorted_by_last_seen_and_show_the_object() -> None:
    older = {"metadata": {"name": "e1"}, "type": "Normal", "reason": "Scheduled", "lastTimestamp": ts(100),
             "involvedObject": {"kind": "Pod", "name": "web-1"}, "message": "assigned"}
    newer = {"metadata": {"name": "e2"}, "type": "Warning", "reason": "BackOff", "lastTimestamp": ts(5),
             "involvedObject": {"kind": "Pod", "name": "web-1"}, "message": "back-off restarting"}
    lines = render("Event", "", [newer, older])
    assert lines[0] == "LAST SEEN   TYPE      REASON      OBJECT      MESSAGE"
    assert lines[1] == "100s        Normal    Scheduled   pod/web-1   assigned"
    assert lines[2] == "5s          Warning   BackOff     pod/web-1   back-off restarting"


def test_unknown_kind_falls_back_to_name_and_age() -> None:
    assert render("Widget", "example.com", [{"metadata": {"name": "w", "creationTimestamp": ts(3)}}]) == [
        "NAME   AGE", "w      3s"]


def test_yaml_is_sorted_quoted_like_kubectl_and_round_trips() -> None:
    data = {"metadata": {"resourceVersion": "101", "name": "x", "annotations": {"a": "line1\nline2\n"}},
            "apiVersion": "v1", "spec": {"ports": [{"port": 80}]}}
    text = to_yaml(data)
    assert text.splitlines()[0] == "apiVersion: v1"
    assert 'resourceVersion: "101"' in text
    assert "  ports:\n  - port: 80" in text
    assert "a: |\n      line1\n      line2" in text
    assert yaml.safe_load(text) == data
