"""The API client and the building blocks every component is made of.

``Client`` talks to the API server; ``RetryWatcher`` keeps a watch alive across
server restarts; ``Informer`` keeps a local cache of one kind; ``WorkQueue`` and
friends feed keys to level-triggered controllers.
"""

from kubelite.client.client import Client, DeleteResult, ObjectList, WatchEvent
from kubelite.client.informer import (
    ClientListerWatcher,
    Informer,
    ListerWatcher,
    ResourceEventHandler,
    Store,
    meta_namespace_key,
    split_key,
    wait_for_cache_sync,
)
from kubelite.client.kubeconfig import KubeConfig, KubeConfigError, load_kubeconfig, write_kubeconfig
from kubelite.client.watch import RetryWatcher, retry_watch
from kubelite.client.workqueue import (
    BucketRateLimiter,
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
    process_next_item,
)

__all__ = [
    "BucketRateLimiter",
    "Client",
    "ClientListerWatcher",
    "DelayingQueue",
    "DeleteResult",
    "Informer",
    "ItemExponentialFailureRateLimiter",
    "KubeConfig",
    "KubeConfigError",
    "ListerWatcher",
    "MaxOfRateLimiter",
    "ObjectList",
    "RateLimiter",
    "RateLimitingQueue",
    "ResourceEventHandler",
    "RetryWatcher",
    "ShutDown",
    "Store",
    "WatchEvent",
    "WorkQueue",
    "default_controller_rate_limiter",
    "load_kubeconfig",
    "meta_namespace_key",
    "process_next_item",
    "retry_watch",
    "split_key",
    "wait_for_cache_sync",
    "write_kubeconfig",
]
