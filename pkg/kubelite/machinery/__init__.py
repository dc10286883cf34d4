"""API machinery shared by the server, the client and the command line.

The kind registry (scheme), the error model with Kubernetes reasons, the
JSON/YAML codec with strict field checking, selectors and patches. It sits
above the generated code in pkg/kubelite/api and below every component.
"""
