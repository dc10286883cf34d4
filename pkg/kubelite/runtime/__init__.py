"""The container runtime below the kubelet: a CRI-like contract and its implementations.

``interface`` holds the Protocols and errors, ``docker`` drives a Docker engine,
``fake`` keeps records only (hollow nodes, unit tests), ``remote`` carries any of
them over gRPC on a unix socket, ``images`` builds the project's own images.
This package may import kubelite.api and kubelite.machinery only.
"""

from kubelite.runtime.interface import (
    ImagePullError,
    ImageService,
    InvalidArgumentError,
    NotFoundError,
    Runtime,
    RuntimeError_,
    RuntimeService,
    UnavailableError,
)

__all__ = [
    "ImagePullError",
    "ImageService",
    "InvalidArgumentError",
    "NotFoundError",
    "Runtime",
    "RuntimeError_",
    "RuntimeService",
    "UnavailableError",
]
