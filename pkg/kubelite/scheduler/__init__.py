"""kubelite's scheduler: binds pending pods to nodes through plugins, and explains every refusal.

Layout: ``framework`` (extension points, Status, CycleState), ``nodeinfo``
(pods and nodes digested for scheduling, the Snapshot), ``cache`` (nodes and
bound/assumed pods, incremental snapshots), ``plugins`` (the filters and
scorers), ``profile`` and ``config`` (which plugins run, from a
KubeSchedulerConfiguration), ``algorithm`` (one pure decision), ``queue``
(active, back-off and unschedulable pods) and ``scheduler`` (the loop that
ties informers, queue, decisions and bindings together).
"""
