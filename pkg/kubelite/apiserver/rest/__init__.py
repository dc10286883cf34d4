"""Kubernetes' HTTP API (REST) beside the gRPC API: kubectl and client libraries use it."""
