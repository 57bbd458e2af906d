"""The name of the final snapshot a managed data store leaves when it goes.

RDS and ElastiCache take a final snapshot under a name given in advance. A
fixed name would collide with the snapshot an earlier instance of the store
left (a replaced store is deleted after its successor exists), so the name
carries a random suffix that is renewed whenever the store is replaced: the
suffix's keepers are the inputs pulumi-aws replaces the store for.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_random as random


def final_snapshot_identifier(
    name: str,
    *,
    identifier: str,
    keepers: Mapping[str, pulumi.Input[str]],
    parent: pulumi.Resource,
) -> pulumi.Output[str]:
    """``<identifier>-final-<8 hex digits>``, with ``<name>-final-snapshot-suffix`` declared.

    ``keepers`` are the store's replacing inputs, by their provider names; a
    change to any of them gives the next final snapshot a new suffix.
    """
    suffix = random.RandomId(
        f"{name}-final-snapshot-suffix",
        byte_length=4,
        keepers=dict(keepers),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return suffix.hex.apply(lambda hex_suffix: f"{identifier}-final-{hex_suffix}")
