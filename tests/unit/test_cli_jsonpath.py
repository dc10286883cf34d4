"""kubectl's JSONPath dialect, and ``get -o jsonpath|jsonpath-file|custom-columns|custom-columns-file``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelite.api.core.v1 import generated_pb2 as core
from kubelite.cli.jsonpath import ExecuteError, JSONPath, ParseError, go_float, relaxed_expression
from kubelite.client.client import Client
from tests.unit.inprocess import InProcessCluster, WatchHook

DATA: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"app.kubernetes.io/name": "web", "tier": "a"}},
            "spec": {"unschedulable": True},
            "status": {
                "capacity": {"cpu": "4", "pods": 110},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                              {"type": "Hostname", "address": "n1"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}],
            },
        },
        {
            "kind": "Node",
            "metadata": {"name": "n2"},
            "status": {
                "capacity": {"cpu": "8", "pods": 50},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                "conditions": [{"type": "Ready", "status": "False"}],
            },
        },
        {"kind": "Node", "metadata": {"name": "n3"}, "status": {"capacity": {"cpu": "2", "pods": 10}}},
    ],
}


@pytest.mark.parametrize(
    ("template", "output"),
    [
        ("{.kind}", "List"),
        ("kind is {.kind}!", "kind is List!"),
        ("no braces at all", "no braces at all"),
        ("{.items[*].metadata.name}", "n1 n2 n3"),
        ("{.items[0].metadata.name}", "n1"),
        ("{.items[-1].metadata.name}", "n3"),
        ("{.items[-2].metadata.name}", "n2"),
        ("{.items[1:3].metadata.name}", "n2 n3"),
        ("{.items[:2].metadata.name}", "n1 n2"),
        ("{.items[::2].metadata.name}", "n1 n3"),
        ("{.items[0,2].metadata.name}", "n1 n3"),
        ("{.items[2:2].metadata.name}", ""),
        ("{['kind']}", "List"),
        ("{.items[0].metadata.labels['app.kubernetes.io/name']}", "web"),
        (r"{.items[0].metadata.labels.app\.kubernetes\.io/name}", "web"),
        ("{.items[0].metadata.labels.*}", "web a"),
        ("{.items[*]['metadata.name', 'status.capacity.cpu']}", "n1 n2 n3 4 8 2"),
        ("{..address}", "10.0.0.1 n1 10.0.0.2"),
        ('{.items[*].status.addresses[?(@.type=="InternalIP")].address}', "10.0.0.1 10.0.0.2"),
        ("{.items[*].status.addresses[?(@.type!='InternalIP')].address}", "n1"),
        ('{.items[?(@.status.conditions[0].status=="True")].metadata.name}', "n1"),
        ("{.items[?(@.status.capacity.pods>50)].metadata.name}", "n1"),
        ("{.items[?(@.status.capacity.pods>=50)].metadata.name}", "n1 n2"),
        ("{.items[?(@.status.capacity.pods<50)].metadata.name}", "n3"),
        ("{.items[?(@.status.capacity.pods<=50)].metadata.name}", "n2 n3"),
        ('{.items[?(@.metadata.name<"n2")].metadata.name}', "n1"),
        ("{.items[?(@.spec.unschedulable==true)].metadata.name}", "n1"),
        ("{.items[?(@.spec)].metadata.name}", "n1"),
        ("{.items[?(@.status.conditions)].metadata.name}", "n1 n2"),
        ('{range .items[*]}{.metadata.name}{"\\t"}{.status.capacity.cpu}{"\\n"}{end}', "n1\t4\nn2\t8\nn3\t2\n"),
        ("{range .items[*]}[{.metadata.name}]{end} done", "[n1][n2][n3] done"),
        ("{range .items[*]}{range .status.addresses[*]}{.type},{end};{end}", "InternalIP,Hostname,;InternalIP,;;"),
        ("{range .items[*]}{@.metadata.name} {end}", "n1 n2 n3 "),
        ('{"{"}{.kind}{"}"}', "{List}"),
        ("{'single'}", "single"),
        # Scalars like kubectl: strings raw, numbers and booleans as in Go, maps and lists as compact JSON.
        ("{.items[0].status.capacity.pods}", "110"),
        ("{.items[0].spec.unschedulable}", "true"),
        ("{.items[0].status.capacity}", '{"cpu":"4","pods":110}'),
        ("{.items[1].status.addresses}", '[{"address":"10.0.0.2","type":"InternalIP"}]'),
        ("{.items[*].status.capacity.pods}", "110 50 10"),
        ("{$.kind}", "List"),
        # Missing keys print nothing by default.
        ("{.nope}", ""),
        ("a{.items[*].nope}b", "ab"),
        ("{.items[0].metadata.labels['missing.key']}", ""),
    ],
)
def test_templates(template: str, output: str) -> None:
    assert JSONPath(template).execute(DATA) == output


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{.nope}", "nope is not found"),
        ("{.items[*].status.nope}", "nope is not found"),
        ("{.items[5]}", "array index out of bounds: index 5, length 3"),
        ("{.items[-4]}", "array index out of bounds: index -1, length 3"),
        ("{.items[1:9]}", "array index out of bounds: index 8, length 3"),
        ("{.kind[0]}", "string is not array or slice"),
        ("{.items[0].metadata[0]}", "map[string]interface {} is not array or slice"),
        ('{.items[?(@.status.capacity.pods=="110")]}', "incompatible types for comparison"),
    ],
)
def test_execution_errors_when_keys_must_exist(template: str, error: str) -> None:
    with pytest.raises(ExecuteError) as exc:
        JSONPath(template).execute(DATA, allow_missing=False)
    assert str(exc.value) == error


def test_index_out_of_range_is_an_error_even_when_missing_keys_are_allowed() -> None:
    with pytest.raises(ExecuteError, match=r"^array index out of bounds: index 0, length 0$"):
        JSONPath("{.items[0].metadata.name}").execute({"items": []})
    assert JSONPath("{.items[*].metadata.name}").execute({"items": []}) == ""


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{.items[}", "unterminated array"),
        ("{.kind", "unclosed action"),
        ("{.items[?(@.x]}", "unterminated filter"),
        ("{.items[?(@.x)}", "unclosed array expect ]"),
        ('{"open}', "unterminated quoted string"),
        ("{.items[a]}", "invalid array index a"),
        ("{foo}", "unrecognized identifier foo"),
        ("{#}", "unrecognized character in action: U+0023 '#'"),
        ("{end}", "not in range, nothing to end"),
        ("{....a}", "invalid multiple recursive descent"),
        ("{.items[?(@.a=<1)]}", "unrecognized filter operator =<"),
    ],
)
def test_parse_errors(template: str, error: str) -> None:
    with pytest.raises(ParseError) as exc:
        JSONPath(template)
    assert str(exc.value) == error


def test_relaxed_expressions_and_go_floats() -> None:
    assert [relaxed_expression(p) for p in (".a.b", "a.b", "{a.b}", "{.a.b}", "")] == \
        ["{.a.b}", "{.a.b}", "{.a.b}", "{.a.b}", ""]
    with pytest.raises(ParseError):
        relaxed_expression("{.a}{.b}")
    assert [go_float(f) for f in (1.5, 0.0, 100000.0, 1e6, 1234567.0, 0.0001, 0.00001)] == \
        ["1.5", "0", "100000", "1e+06", "1.234567e+06", "0.0001", "1e-05"]


# --- through the command line -----------------------------------------------------------------------------


@pytest.fixture
def client(kl: InProcessCluster) -> InProcessCluster:
    """The real API server over in-memory storage (tests/unit/inprocess.py), holding two ConfigMaps."""
    for name, data, labels in (("a", {"k": "v", "k2": "w"}, {"app": "web"}), ("b", {}, {})):
        cm = core.ConfigMap(api_version="v1", kind="ConfigMap")
        cm.metadata.name = name
        cm.metadata.namespace = "default"
        cm.metadata.labels.update(labels)
        cm.data.update(data)
        kl.add(cm)
    return kl


def out(client: InProcessCluster, *args: str) -> str:
    result = client.cli(list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.stderr == ""
    text: str = result.stdout
    return text


def watched(client: InProcessCluster, change: WatchHook, *args: str) -> str:
    """Runs a watching command until it has seen the one event ``change`` causes after the command's list."""
    result = client.cli(list(args), on_watch=change, watch_events=1)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    text: str = result.stdout
    return text


def fails(client: InProcessCluster, *args: str) -> str:
    result = client.cli(list(args))
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    text: str = result.stderr
    return text


def test_get_jsonpath_on_a_list_and_on_one_object(client: InProcessCluster) -> None:
    assert out(client, "get", "cm", "-o", "jsonpath={.items[*].metadata.name}") == "a b\n"
    assert out(client, "get", "cm", "-o=jsonpath={.kind} {.apiVersion}") == "List v1\n"
    assert out(client, "get", "cm", "a", "-o", "jsonpath={.metadata.name}/{.kind}") == "a/ConfigMap\n"
    assert out(client, "get", "cm", "a", "b", "-o", "jsonpath={.kind}") == "List\n"
    assert out(client, "get", "cm", "--output=jsonpath={.items[?(@.data.k==\"v\")].metadata.name}") == "a\n"
    # A template that ends in a newline prints exactly once; no output at all prints nothing.
    template = '{range .items[*]}{.metadata.name}{"\\t"}{.metadata.labels.app}{"\\n"}{end}'
    assert out(client, "get", "cm", "-o", f"jsonpath={template}") == "a\tweb\nb\t\n"
    assert out(client, "get", "cm", "-o", "jsonpath={.items[*].nope}") == ""
    assert out(client, "get", "cm", "-n", "empty", "-o", "jsonpath=[{.items[*].metadata.name}]") == "[]\n"


def test_get_jsonpath_file(client: InProcessCluster, tmp_path: Path) -> None:
    f = tmp_path / "t.jsonpath"
    f.write_text('{range .items[*]}name={.metadata.name}{"\\n"}{end}')
    assert out(client, "get", "cm", "-o", f"jsonpath-file={f}") == "name=a\nname=b\n"
    missing = tmp_path / "nope"
    assert fails(client, "get", "cm", "-o", f"jsonpath-file={missing}") == \
        f"error: error reading --template {missing}, open {missing}: no such file or directory\n"


def test_missing_keys_and_allow_missing_template_keys(client: InProcessCluster) -> None:
    assert out(client, "get", "cm", "a", "-o", "jsonpath={.spec.x}") == ""
    assert fails(client, "get", "cm", "a", "-o", "jsonpath={.spec.x}", "--allow-missing-template-keys=false") == \
        'error: error executing jsonpath "{.spec.x}": Error executing template: spec is not found\n'
    assert out(client, "get", "cm", "a", "-o", "jsonpath={.data.k}", "--allow-missing-template-keys=false") == "v\n"
    assert out(client, "get", "cm", "a", "-o", "jsonpath={.spec.x}", "--allow-missing-template-keys") == ""


def test_bad_templates_and_formats(client: InProcessCluster) -> None:
    assert fails(client, "get", "cm", "-o", "jsonpath={.items[}") == \
        "error: error parsing jsonpath {.items[}, unterminated array\n"
    assert fails(client, "get", "cm", "-o", "jsonpath=") == "error: template format specified but no template given\n"
    assert fails(client, "get", "cm", "-o", "custom-columns=") == \
        "error: custom-columns format specified but no custom columns given\n"
    assert fails(client, "get", "cm", "-o", "custom-columns=NAME") == \
        "error: unexpected custom-columns spec: NAME, expected <header>:<json-path-expr>\n"
    assert fails(client, "get", "cm", "-o", "custom-columns=NAME:.items[") == \
        "error: error parsing jsonpath {.items[}, unterminated array\n"
    assert fails(client, "get", "cm", "-o", "xml") == (
        'error: unable to match a printer suitable for the output format "xml", allowed formats are: '
        "custom-columns,custom-columns-file,json,jsonpath,jsonpath-file,name,wide,yaml\n")
    assert client.calls == [], "a bad -o is reported before anything is fetched"


def test_get_custom_columns(client: InProcessCluster) -> None:
    assert out(client, "get", "cm", "-o", "custom-columns=NAME:.metadata.name,APP:{.metadata.labels.app},"
               "KIND:kind,DATA:.data") == (
        "NAME   APP      KIND        DATA\n"
        "a      web      ConfigMap   map[k:v k2:w]\n"
        "b      <none>   ConfigMap   <none>\n")
    assert out(client, "get", "cm", "a", "-o", "custom-columns=name:.metadata.name", "--no-headers") == "a\n"
    # Several values in one cell are joined by commas.
    assert out(client, "get", "cm", "-o", "custom-columns=X:.data.*,Y:.metadata.name") == \
        "X        Y\nv,w      a\n<none>   b\n"
    # An empty list still prints the header, as kubectl's generic printers do.
    assert out(client, "get", "cm", "-n", "empty", "-o", "custom-columns=NAME:.metadata.name") == "NAME\n"


def test_get_custom_columns_file(client: InProcessCluster, tmp_path: Path) -> None:
    f = tmp_path / "cols"
    f.write_text("NAME      LABEL\n.metadata.name   {.metadata.labels.app}\n")
    assert out(client, "get", "cm", "-o", f"custom-columns-file={f}") == "NAME   LABEL\na      web\nb      <none>\n"
    assert out(client, "get", "cm", "-o", f"custom-columns-file={f}", "--no-headers") == "a     web\nb     <none>\n"
    f.write_text("NAME LABEL\n.metadata.name\n")
    assert fails(client, "get", "cm", "-o", f"custom-columns-file={f}") == \
        "error: number of headers (2) and field specifications (1) don't match\n"
    f.write_text("NAME\n")
    assert fails(client, "get", "cm", "-o", f"custom-columns-file={f}") == (
        "error: invalid template, missing spec line. Expected format is one line of space separated headers, "
        "one line of space separated column specs.\n")


def test_watch_prints_each_event_through_the_template(client: InProcessCluster) -> None:
    async def add_later(api: Client) -> None:
        later = core.ConfigMap(api_version="v1", kind="ConfigMap")
        later.metadata.name = "c-long-name"
        later.metadata.namespace = "default"
        await api.create(later)

    assert watched(client, add_later, "get", "cm", "-w", "-o", "jsonpath={.metadata.name}") == "a\nb\nc-long-name\n"
    client.run(client.client.delete(core.ConfigMap, "c-long-name", "default"))
    # The rows printed before the watch set the column widths; a wider name later does not realign them.
    assert watched(client, add_later, "get", "cm", "-w", "-o", "custom-columns=NAME:.metadata.name,KIND:.kind") == (
        "NAME   KIND\n"
        "a      ConfigMap\n"
        "b      ConfigMap\n"
        "c-long-name   ConfigMap\n")
