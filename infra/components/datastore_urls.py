"""The connection URLs the services read for the data stores, one format each.

``DATABASE_URL``/``MIGRATION_DATABASE_URL`` and ``REDIS_URL`` are written for
RDS and ElastiCache (:mod:`infra.components.database`,
:mod:`infra.components.cache`) and for the local stack's in-cluster stores
(:mod:`infra.components.datastores`); the services parse all of them the same
way, so they are built here. Every URL carries a password, so each is marked
secret.
"""

from __future__ import annotations

import pulumi


def postgres_dsn(
    user: pulumi.Input[str],
    password: pulumi.Input[str],
    host: pulumi.Input[str],
    port: pulumi.Input[int],
    database: pulumi.Input[str],
    *,
    query: str | None = None,
) -> pulumi.Output[str]:
    """``postgresql://user:password@host:port/database[?query]``, marked secret."""
    suffix = f"?{query}" if query is not None else ""
    return pulumi.Output.secret(
        pulumi.Output.format(
            "postgresql://{0}:{1}@{2}:{3}/{4}{5}", user, password, host, port, database, suffix
        )
    )


def redis_url(
    host: pulumi.Input[str],
    port: int,
    *,
    password: pulumi.Input[str] | None,
    tls: bool,
) -> pulumi.Output[str]:
    """``redis[s]://[:password@]host:port/0`` (database 0), marked secret."""
    scheme = "rediss" if tls else "redis"
    if password is None:
        url = pulumi.Output.format("{0}://{1}:{2}/0", scheme, host, port)
    else:
        url = pulumi.Output.format("{0}://:{1}@{2}:{3}/0", scheme, password, host, port)
    return pulumi.Output.secret(url)
