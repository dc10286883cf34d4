"""kube-proxy for kubelite: Service virtual IPs on each node, in iptables or nftables mode.

``model`` flattens Services and Endpoints into service ports; ``iptables`` and
``nftables`` are pure generators of kernel rules from that snapshot;
``proxier`` applies them (full, then only what changed) through the runners
of ``runner`` (the only code that executes a tool); ``syncloop`` rate-limits
and coalesces syncs; ``server`` wires informers, the loop and /healthz,
/metrics.
"""
