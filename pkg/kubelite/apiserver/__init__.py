"""The API server: the only component that talks to etcd.

A request passes authentication, authorization, admission (mutating, then
validating), the kind's strategy (defaulting, validation) and reaches storage
through a generic registry store; reads and watches are served from a watch
cache fed by one etcd watch per resource.
"""
