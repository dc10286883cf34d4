"""Resource quantities (``500m``, ``128Mi``, ``1e3``) as exact numbers.

Validation has to compare requests with limits and decide a pod's QoS class,
so the API server must understand quantities the way Kubernetes does: a
signed decimal number followed by a binary-SI suffix (Ki..Ei), a decimal-SI
suffix (n, u, m, k, M, G, T, P, E) or a decimal exponent (e3, E-2). Values
are kept as ``Fraction`` so that ``0.5`` and ``500m`` compare equal without
floating-point surprises. (The scheduler and the kubelet will need the same
parser; it can move to ``kubelite.machinery`` without changes.)
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}

# number = sign? (digits (. digits?)? | . digits); then one suffix form.
_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)

QUANTITY_FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    """The string is not a quantity."""


# Pure, and a cluster repeats a few quantities ("100m", "128Mi") in every pod: every create and update
# validates them (QoS class, requests within limits), so the Fractions are worth keeping.
@functools.lru_cache(maxsize=4096)
def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity string; QuantityError when it is not one."""
    m = _QUANTITY_RE.match(text.strip()) if text == text.strip() else None
    if m is None:
        raise QuantityError(QUANTITY_FORMAT_ERROR)
    number = Fraction(m.group("number"))
    suffix = m.group("suffix") or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    # A decimal exponent; Kubernetes caps the magnitude of quantities, keep exponents sane too.
    exponent = int(suffix[1:])
    if abs(exponent) > 30:
        raise QuantityError("quantity exponent is out of range")
    return number * Fraction(10) ** exponent


def is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except QuantityError:
        return False
    return True
