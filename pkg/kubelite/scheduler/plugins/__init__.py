"""The in-tree plugins, one module per concern, named as Kubernetes names them.

``registry.REGISTRY`` maps each plugin name to its factory; the profile built
from the configuration decides which run and with what weight.
"""
