"""The ``kubelite`` command line: kubectl's verbs, flags, output formats, messages and exit codes.

``app`` holds the click group; each verb's work is a ``run_*`` coroutine in
its own module that receives a Session (the API client, namespace, output
streams) and never sees click. ``printers`` and ``describe`` keep per-kind
tables and describers in registries keyed by (group, kind).
"""
