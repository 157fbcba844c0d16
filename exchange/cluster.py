"""How an engine node joins a cluster: its NATS connection, its shard and its lease.

Every engine node of a shard is started the same way (`hogx serve --nats-url URL --shard S`);
whichever takes the shard's lease first leads, the others follow as hot standbys. The node's
name only says who holds the lease (for operators reading the key-value bucket).
"""

from __future__ import annotations

import os
import socket

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from exchange.core import MAX_SHARD_INDEX
from exchange.jetstream import Lease, check_shard, ensure_stream

DEFAULT_SHARD = "main"


def servers(nats_url: str) -> list[str]:
    """`nats://a:4222,nats://b:4222`: every server of a NATS cluster the node may reach first."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]


class ClusterConfig(msgspec.Struct, frozen=True):
    nats_url: str  # one URL, or several separated by commas
    shard: str = DEFAULT_SHARD
    replicas: int = 1  # the stream's JetStream replicas: 3 on a 3-node NATS cluster
    node: str = ""  # who holds the lease; host:pid when empty
    shard_index: int = 0  # the shard's place in the cluster: its ids start at index * 10**12

    def __post_init__(self) -> None:
        check_shard(self.shard)
        if not 0 <= self.shard_index <= MAX_SHARD_INDEX:
            raise ValueError(f"shard index must be 0 to {MAX_SHARD_INDEX}")
        if not 1 <= self.replicas <= 5:
            raise ValueError(f"stream replicas must be 1 to 5, got {self.replicas}")


class ClusterLink:
    """A node's connection to the cluster: NATS, JetStream, the shard's stream and lease."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, shard: str, lease: Lease) -> None:
        self.nc = nc
        self.js = js
        self.shard = shard
        self.lease = lease

    @classmethod
    async def connect(cls, config: ClusterConfig) -> ClusterLink:
        nc = await nats.connect(
            servers(config.nats_url),
            name=f"hogx-engine-{config.shard}",
            max_reconnect_attempts=-1,  # NATS restarts and fails over; the engine outlives it
            reconnect_time_wait=0.25,
        )
        try:
            js = nc.jetstream()
            await ensure_stream(js, config.shard, replicas=config.replicas)
            node = config.node or f"{socket.gethostname()}:{os.getpid()}"
            lease = await Lease.open(js, config.shard, node)
        except BaseException:
            await nc.close()
            raise
        return cls(nc, js, config.shard, lease)

    async def close(self) -> None:
        try:
            await self.lease.release()
        finally:
            await self.nc.close()
