"""Manifests from the Kubernetes documentation, shared by the tests.

The files live in examples/ (with a local image, as a user of kubelite would
write them); tests read them from there instead of keeping copies.
"""

from __future__ import annotations

import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"



def _manifest(name: str) -> str:
    """The file without its leading comment lines (so it equals what to_yaml writes)."""
    lines = (EXAMPLES / name).read_text().splitlines(keepends=True)
    return "".join(line for i, line in enumerate(lines) if not (line.startswith("#") and all(
        prev.startswith("#") for prev in lines[:i])))


# "Creating a Deployment" (concepts/workloads/controllers/deployment), image nginx:local.
NGINX_DEPLOYMENT = _manifest("nginx-deployment.yaml")
# "Defining a Service" (concepts/services-networking/service).
NGINX_SERVICE = _manifest("nginx-service.yaml")
