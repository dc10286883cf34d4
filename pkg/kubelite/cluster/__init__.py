"""The local multi-node cluster (like kind): node containers that boot systemd, and their images.

A cluster named N is a Docker network, three etcd member containers and node
containers, all labelled ``io.kubelite.cluster=N``; the labels are the only
state, so ``down`` and ``list`` never drift from what Docker has.
"""
