"""The kubelet: registers its Node, runs the pods bound to it through a runtime, reports their state."""
