"""The API client and the building blocks every component is made of.

``Client`` talks to the API server; ``RetryWatcher`` keeps a watch alive across
server restarts; ``Informer`` keeps a local cache of one kind; ``WorkQueue`` and
friends feed keys to level-triggered controllers. ``SharedInformerFactory``,
``ControllerRunner`` (client.controller), ``ControllerExpectations``
(client.expectations), ``EventRecorder`` (client.events) and ``LeaderElector``
(client.leaderelection) are the blocks every component is assembled from;
import those from their modules.
"""

from kubelite.client.client import Client, DeleteResult, ObjectList, WatchEvent
from kubelite.client.informer import (
    ClientListerWatcher,
    DeletedFinalStateUnknown,
    Informer,
    ListerWatcher,
    ResourceEventHandler,
    Store,
    deleted_object,
    meta_namespace_key,
    split_key,
    wait_for_cache_sync,
)
from kubelite.client.informer_factory import Lister, SharedInformerFactory
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
    "DeletedFinalStateUnknown",
    "Informer",
    "ItemExponentialFailureRateLimiter",
    "KubeConfig",
    "KubeConfigError",
    "Lister",
    "ListerWatcher",
    "MaxOfRateLimiter",
    "ObjectList",
    "RateLimiter",
    "RateLimitingQueue",
    "ResourceEventHandler",
    "RetryWatcher",
    "SharedInformerFactory",
    "ShutDown",
    "Store",
    "WatchEvent",
    "WorkQueue",
    "default_controller_rate_limiter",
    "deleted_object",
    "load_kubeconfig",
    "meta_namespace_key",
    "process_next_item",
    "retry_watch",
    "split_key",
    "wait_for_cache_sync",
    "write_kubeconfig",
]
