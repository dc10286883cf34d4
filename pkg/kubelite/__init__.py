"""kubelite: a container orchestrator for Docker hosts, built the way Kubernetes is built."""
