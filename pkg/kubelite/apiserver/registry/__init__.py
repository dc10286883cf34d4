"""Per-kind behaviour of the API server (Kubernetes' registry strategies)."""
