"""Name and metadata validation shared by every kind.

Kubernetes users know its naming rules (DNS-1123 names, qualified label keys,
IANA port names) and the shape of its complaints, so the helpers here follow
the same rules and return human-readable reasons in the same spirit: each
``is_*`` function returns a list of reasons (empty when the value is fine),
and ``validate_object_meta`` turns them into FieldErrors with JSON paths that
the API server folds into an Invalid (422) error. Per-kind validation lives
with each kind's server-side strategy and builds on these helpers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

from kubelite.api.meta.v1 import generated_pb2 as metav1
from kubelite.machinery.errors import FieldError

# --------------------------------------------------------------------------------------------
# String formats
# --------------------------------------------------------------------------------------------

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = f"{_DNS1123_LABEL}(\\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = f"({_QUALIFIED_NAME})?"
_C_IDENTIFIER = "[A-Za-z_][A-Za-z0-9_]*"

_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN}$")
_DNS1035_LABEL_RE = re.compile(f"^{_DNS1035_LABEL}$")
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE}$")
_C_IDENTIFIER_RE = re.compile(f"^{_C_IDENTIFIER}$")
_PORT_NAME_CHARS_RE = re.compile("^[-a-z0-9]+$")
_HAS_LETTER_RE = re.compile("[a-z]")

DNS1123_LABEL_MAX_LENGTH = 63
DNS1123_SUBDOMAIN_MAX_LENGTH = 253
DNS1035_LABEL_MAX_LENGTH = 63
QUALIFIED_NAME_MAX_LENGTH = 63
LABEL_VALUE_MAX_LENGTH = 63
PORT_NAME_MAX_LENGTH = 15
# Kubernetes' limit on the sum of all annotation keys and values of one object.
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _format_msg(what: str, rule: str, regex: str, examples: tuple[str, ...]) -> str:
    shown = ", ".join(f"'{e}'" for e in examples)
    return f"{what} must {rule} (for example {shown}; checked against the regex '{regex}')"


def is_dns1123_label(value: str) -> list[str]:
    """A DNS label (RFC 1123): namespaces, most object names, container names."""
    errs: list[str] = []
    if len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(_too_long(DNS1123_LABEL_MAX_LENGTH))
    if not _DNS1123_LABEL_RE.match(value):
        errs.append(_format_msg(
            "a lowercase RFC 1123 label",
            "contain only lowercase letters, digits and '-', and begin and end with a letter or digit",
            _DNS1123_LABEL, ("my-name", "123-abc"),
        ))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """A DNS subdomain (RFC 1123): the default rule for object names."""
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(_too_long(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append(_format_msg(
            "a lowercase RFC 1123 subdomain",
            "contain only lowercase letters, digits, '-' and '.', and begin and end with a letter or digit",
            _DNS1123_SUBDOMAIN, ("example.com",),
        ))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    """A DNS label that begins with a letter (RFC 1035): Service names, which become DNS names."""
    errs: list[str] = []
    if len(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(_too_long(DNS1035_LABEL_MAX_LENGTH))
    if not _DNS1035_LABEL_RE.match(value):
        errs.append(_format_msg(
            "a DNS-1035 label",
            "contain only lowercase letters, digits and '-', begin with a letter "
            "and end with a letter or digit",
            _DNS1035_LABEL, ("my-name", "abc-123"),
        ))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """A label key, annotation key or finalizer: ``[prefix/]name``, the prefix a DNS subdomain."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("the prefix part must not be empty")
        else:
            errs.extend(f"the prefix part {e}" for e in is_dns1123_subdomain(prefix))
    else:
        return [_format_msg(
            "a qualified name", "be a name optionally preceded by a DNS subdomain prefix and '/'",
            _QUALIFIED_NAME, ("MyName", "my.name", "example.com/MyName"),
        )]
    if not name:
        errs.append("the name part must not be empty")
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append(f"the name part {_too_long(QUALIFIED_NAME_MAX_LENGTH)}")
    if name and not _QUALIFIED_NAME_RE.match(name):
        errs.append("the name part " + _format_msg(
            "of a qualified name",
            "contain only letters, digits, '-', '_' and '.', and begin and end with a letter or digit",
            _QUALIFIED_NAME, ("MyName", "my.name", "123-abc"),
        ).removeprefix("of a qualified name "))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """A label value: empty, or up to 63 letters, digits, '-', '_', '.' framed by letters or digits."""
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(_too_long(LABEL_VALUE_MAX_LENGTH))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_format_msg(
            "a label value",
            "be empty or contain only letters, digits, '-', '_' and '.', "
            "and begin and end with a letter or digit",
            _LABEL_VALUE, ("MyValue", "my_value", "12345"),
        ))
    return errs


def is_c_identifier(value: str) -> list[str]:
    if _C_IDENTIFIER_RE.match(value):
        return []
    return [_format_msg(
        "a C identifier", "contain only letters, digits and '_', and not begin with a digit",
        _C_IDENTIFIER, ("my_name", "MY_NAME", "MyName"),
    )]


def is_env_var_name(value: str) -> list[str]:
    """Environment variable names: Kubernetes has relaxed these to any printable ASCII but '='."""
    if not value:
        return ["an environment variable name must not be empty"]
    if all(" " <= c <= "~" and c != "=" for c in value):
        return []
    return ["an environment variable name must contain only printable ASCII characters other than '='"]


def is_valid_port_num(port: int) -> list[str]:
    if 1 <= port <= 65535:
        return []
    return ["must be between 1 and 65535, inclusive"]


def is_valid_port_name(name: str) -> list[str]:
    """An IANA service name (RFC 6335), used for named container and service ports."""
    errs: list[str] = []
    if len(name) > PORT_NAME_MAX_LENGTH:
        errs.append(_too_long(PORT_NAME_MAX_LENGTH))
    if not _PORT_NAME_CHARS_RE.match(name):
        errs.append("must contain only lowercase letters, digits and '-'")
    if not _HAS_LETTER_RE.search(name):
        errs.append("must contain at least one letter")
    if "--" in name:
        errs.append("must not contain two '-' in a row")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with '-'")
    return errs


def is_valid_ip(value: str) -> list[str]:
    """An IPv4 or IPv6 address in canonical-enough form (no leading zeros in IPv4 octets)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return ["must be a valid IP address (for example 10.9.8.7 or 2001:db8::ffff)"]
    return []


def is_valid_cidr(value: str) -> list[str]:
    """A network in CIDR notation; host bits may be set, as Kubernetes' parser allows."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return ["must be a valid CIDR value (for example 10.9.0.0/16 or 2001:db8::/64)"]
    if "/" not in value:
        return ["must be a valid CIDR value (for example 10.9.0.0/16 or 2001:db8::/64)"]
    return []


def is_valid_path_segment_name(value: str) -> list[str]:
    """Names become a segment of the storage key and of REST paths."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    errs = [f"may not contain '{c}'" for c in ("/", "%") if c in value]
    return errs


# --------------------------------------------------------------------------------------------
# ObjectMeta
# --------------------------------------------------------------------------------------------

NameValidator = Callable[[str], list[str]]


def _mask_trailing_dash(prefix: str) -> str:
    # generateName is a prefix: "web-" is fine because a random suffix follows.
    return prefix[:-1] + "a" if len(prefix) > 1 and prefix.endswith("-") else prefix


def validate_labels(labels: Mapping[str, str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key, value in labels.items():
        for msg in is_qualified_name(key):
            errs.append(FieldError("FieldValueInvalid", path, msg, key))
        for msg in is_valid_label_value(value):
            errs.append(FieldError("FieldValueInvalid", path, msg, value))
    return errs


def validate_annotations(annotations: Mapping[str, str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for key, value in annotations.items():
        # Annotation keys are checked case-insensitively: upper case is allowed in the prefix too.
        for msg in is_qualified_name(key.lower()):
            errs.append(FieldError("FieldValueInvalid", path, msg, key))
        total += len(key) + len(value)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(FieldError("FieldValueTooLong", path,
                               f"may not have more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes in total"))
    return errs


def validate_object_meta(
    meta: metav1.ObjectMeta,
    namespaced: bool,
    path: str = "metadata",
    name_validator: NameValidator = is_dns1123_subdomain,
) -> list[FieldError]:
    """Checks the metadata every object shares; per-kind rules pick the name validator."""
    errs: list[FieldError] = []
    if meta.generate_name:
        for msg in name_validator(_mask_trailing_dash(meta.generate_name)):
            errs.append(FieldError("FieldValueInvalid", f"{path}.generateName", msg, meta.generate_name))
    if not meta.name:
        if not meta.generate_name:
            errs.append(FieldError("FieldValueRequired", f"{path}.name", "name or generateName is required"))
    else:
        for msg in name_validator(meta.name):
            errs.append(FieldError("FieldValueInvalid", f"{path}.name", msg, meta.name))

    if namespaced:
        if not meta.namespace:
            errs.append(FieldError("FieldValueRequired", f"{path}.namespace", ""))
        else:
            for msg in is_dns1123_label(meta.namespace):
                errs.append(FieldError("FieldValueInvalid", f"{path}.namespace", msg, meta.namespace))
    elif meta.namespace:
        errs.append(FieldError("FieldValueForbidden", f"{path}.namespace",
                               "not allowed on this type: it is cluster-scoped"))

    if meta.generation < 0:
        errs.append(FieldError("FieldValueInvalid", f"{path}.generation",
                               "must be greater than or equal to 0", meta.generation))
    errs.extend(validate_labels(meta.labels, f"{path}.labels"))
    errs.extend(validate_annotations(meta.annotations, f"{path}.annotations"))

    for i, fin in enumerate(meta.finalizers):
        for msg in is_qualified_name(fin):
            errs.append(FieldError("FieldValueInvalid", f"{path}.finalizers[{i}]", msg, fin))

    controllers = 0
    for i, ref in enumerate(meta.owner_references):
        rpath = f"{path}.ownerReferences[{i}]"
        required = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid}
        for json_name, value in required.items():
            if not value:
                errs.append(FieldError("FieldValueRequired", f"{rpath}.{json_name}", ""))
        if ref.HasField("controller") and ref.controller:
            controllers += 1
    if controllers > 1:
        errs.append(FieldError("FieldValueInvalid", f"{path}.ownerReferences",
                               "only one reference may have controller set to true"))
    return errs
