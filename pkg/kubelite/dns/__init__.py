"""Cluster DNS: `<svc>.<ns>.svc.cluster.local` for pods, in the role of CoreDNS."""
