"""Bootstrap tokens: the format, the Secret, the authenticator (with a fake Secret lookup) and the CLI's
refusals of bad input before it talks to any server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from kubelite.api.core.v1 import generated_pb2 as core_v1
from kubelite.apiserver.authn import BearerTokenAuthentication, BootstrapTokenAuthenticator
from kubelite.apiserver.pipeline import RequestInfo
from kubelite.cli.app import CliDeps, cli
from kubelite.cli.join import server_url
from kubelite.machinery import bootstraptoken as bt

NOW = datetime(2026, 12, 2, 1, 0, 0, tzinfo=UTC)
TOKEN = bt.Token("abcdef", "0123456789abcdef")


def test_generated_tokens_have_the_kubeadm_form_and_differ() -> None:
    tokens = {str(bt.generate()) for _ in range(20)}
    assert len(tokens) == 20
    assert all(re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", t) for t in tokens)


@pytest.mark.parametrize("text", ["", "abcdef", "abcdef.0123456789abcde", "ABCDEF.0123456789abcdef",
                                  "abcdef-0123456789abcdef", "abcdef.0123456789abcdef0", " abcdef.0123456789abcdef"])
def test_malformed_tokens_are_refused_without_echoing_the_secret(text: str) -> None:
    with pytest.raises(bt.TokenFormatError, match="was not of the form") as exc:
        bt.parse(text)
    if "." in text:
        assert text.split(".", 1)[1] not in str(exc.value)


def test_delete_takes_an_id_or_a_whole_token() -> None:
    assert bt.parse_id("abcdef") == "abcdef"
    assert bt.parse_id("abcdef.0123456789abcdef") == "abcdef"
    with pytest.raises(bt.TokenFormatError, match="token id"):
        bt.parse_id("abc")


def test_the_secret_has_kubernetes_layout() -> None:
    s = bt.build_secret(TOKEN, ttl=timedelta(hours=2), description="for w1", now=NOW,
                        extra_groups=("system:bootstrappers:workers",))
    assert (s.metadata.namespace, s.metadata.name, s.type) == ("kube-system", "bootstrap-token-abcdef",
                                                               "bootstrap.kubernetes.io/token")
    assert dict(s.data) == {
        "token-id": b"abcdef", "token-secret": b"0123456789abcdef", "expiration": b"2026-12-02T03:00:00Z",
        "description": b"for w1", "usage-bootstrap-authentication": b"true", "usage-bootstrap-signing": b"true",
        "auth-extra-groups": b"system:bootstrappers:workers"}
    assert bt.human_ttl(s, NOW) == "2h" and bt.human_ttl(s, NOW + timedelta(hours=3)) == "<invalid>"
    forever = bt.build_secret(TOKEN, ttl=None)
    assert "expiration" not in forever.data and bt.human_ttl(forever) == "<forever>"
    with pytest.raises(bt.TokenFormatError, match="usages"):
        bt.build_secret(TOKEN, usages=("everything",))
    with pytest.raises(bt.TokenFormatError, match="groups"):
        bt.build_secret(TOKEN, extra_groups=("system:masters",))


def _secret(**changes: bytes) -> core_v1.Secret:
    s = bt.build_secret(TOKEN, ttl=timedelta(hours=1), now=NOW)
    for k, v in changes.items():
        if v:
            s.data[k.replace("_", "-")] = v
        else:
            del s.data[k.replace("_", "-")]
    return s


@pytest.mark.parametrize(("secret", "why"), [
    (_secret(token_secret=b"fedcba9876543210"), "token-secret does not match"),
    (_secret(token_id=b"zzzzzz"), "token-id does not match"),
    (_secret(expiration=b"2026-12-02T00:59:59Z"), "expired"),
    (_secret(expiration=b"yesterday"), "expired"),
    (_secret(usage_bootstrap_authentication=b""), "authentication"),
    (_secret(auth_extra_groups=b"system:masters"), "auth-extra-groups"),
])
def test_a_secret_that_does_not_vouch_for_the_token_says_why(secret: core_v1.Secret, why: str) -> None:
    assert why in bt.authenticates(secret, TOKEN, NOW)


def test_a_valid_secret_vouches() -> None:
    assert bt.authenticates(_secret(), TOKEN, NOW) == ""
    wrong_type = _secret()
    wrong_type.type = "Opaque"
    assert "type" in bt.authenticates(wrong_type, TOKEN, NOW)
    deleting = _secret()
    deleting.metadata.deletion_timestamp.seconds = 1
    assert "deleted" in bt.authenticates(deleting, TOKEN, NOW)


def _request(token: str) -> RequestInfo:
    return RequestInfo(metadata=(("authorization", f"Bearer {token}"),) if token else ())


async def test_the_authenticator_chain() -> None:
    stored = {("kube-system", "bootstrap-token-abcdef"): _secret(auth_extra_groups=b"system:bootstrappers:w")}
    asked: list[tuple[str, str]] = []

    async def lookup(namespace: str, name: str) -> core_v1.Secret | None:
        asked.append((namespace, name))
        return stored.get((namespace, name))

    authn = BearerTokenAuthentication([BootstrapTokenAuthenticator(lookup, clock=lambda: NOW)])
    user = await authn.authenticate(_request(str(TOKEN)))
    assert user is not None and user.name == "system:bootstrap:abcdef"
    assert user.groups == ("system:bootstrappers", "system:bootstrappers:w", "system:authenticated")
    # No credential: anonymous (allow-all until the security work), as before.
    assert await authn.authenticate(_request("")) is not None
    # A presented credential nobody accepts is refused, never downgraded to anonymous.
    for bad in ("abcdef.ffffffffffffffff", "zzzzzz.0123456789abcdef", "not-a-bootstrap-token"):
        assert await authn.authenticate(_request(bad)) is None
    # Only well-formed tokens cost a lookup.
    assert asked == [("kube-system", "bootstrap-token-abcdef")] * 2 + [("kube-system", "bootstrap-token-zzzzzz")]
    late = BearerTokenAuthentication([BootstrapTokenAuthenticator(lookup, clock=lambda: NOW + timedelta(hours=2))])
    assert await late.authenticate(_request(str(TOKEN))) is None


def test_join_endpoints() -> None:
    assert server_url("10.0.0.10:6443") == "http://10.0.0.10:6443"
    assert server_url("10.0.0.10") == "http://10.0.0.10:6443"
    assert server_url("http://cp:7443/") == "http://cp:7443"


@pytest.mark.parametrize(("args", "message"), [
    (["token", "create", "short.token"], "was not of the form"),
    (["token", "create", "--ttl", "soon"], '"--ttl" flag'),
    (["token", "create", "--ttl", "-1h"], "--ttl"),
    (["token", "create", "--usages", "root"], "usages"),
    (["token", "create", "--groups", "system:masters"], "groups"),
    (["token", "delete"], "token id"),
    (["token", "delete", "abc"], "token id"),
    (["join", "127.0.0.1:1", "--token", "abcdef.short"], "--token"),
    (["join", "127.0.0.1:port", "--token", "abcdef.0123456789abcdef"], "HOST:PORT"),
])
def test_bad_input_is_refused_before_any_request(args: list[str], message: str) -> None:
    # The server address is a closed port: a request would fail differently (cannot reach).
    r = CliRunner().invoke(cli, ["--server", "127.0.0.1:1", "--request-timeout", "2s", *args], obj=CliDeps())
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: ") and message in r.stderr, r.stderr
    assert "Traceback" not in r.output
