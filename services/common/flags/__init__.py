"""Feature flags: one record per feature in Redis, evaluated in-process.

- ``model``: the stored records, the stack seed, ``init_flags``, ``write_flags`` and
  ``write_flags_if_unchanged`` (the compare-and-set every locked writer uses).
- ``bucketing``: GrowthBook's v2 hash over 10,000 buckets, one seed per feature.
- ``cache``: the local copy every decision reads, kept fresh by pub/sub.
- ``provider``: the OpenFeature provider over the cache.
- ``exposure``: first exposures written to ``ab_test_assignments``.
- ``runtime``: the app lifespan part and ``require_feature``.
"""

from services.common.flags.bucketing import BUCKETS, Bucketer, bucket, in_treatment
from services.common.flags.cache import CONTROL, TREATMENT, Decision, FlagCache, Reason
from services.common.flags.model import (
    CHANNEL,
    FEATURES,
    FlagState,
    FlagWriteConflict,
    InvalidFlag,
    StoredFlags,
    check_feature,
    check_percentage,
    flag_key,
    get_flag,
    get_flags,
    init_flags,
    parse_seed,
    read_flags,
    write_flag,
    write_flags,
    write_flags_if_unchanged,
)
from services.common.flags.runtime import (
    FeatureDisabled,
    FeatureDisabledHandshakeError,
    FlagClientDep,
    FlagsDep,
    decide_feature,
    evaluate_feature,
    openfeature_client,
    require_feature,
    require_scope_and_feature,
    serve_flags,
)

__all__ = [
    "BUCKETS",
    "CHANNEL",
    "CONTROL",
    "FEATURES",
    "TREATMENT",
    "Bucketer",
    "Decision",
    "FeatureDisabled",
    "FeatureDisabledHandshakeError",
    "FlagCache",
    "FlagClientDep",
    "FlagState",
    "FlagWriteConflict",
    "FlagsDep",
    "InvalidFlag",
    "Reason",
    "StoredFlags",
    "bucket",
    "check_feature",
    "check_percentage",
    "decide_feature",
    "evaluate_feature",
    "flag_key",
    "get_flag",
    "get_flags",
    "in_treatment",
    "init_flags",
    "openfeature_client",
    "parse_seed",
    "read_flags",
    "require_feature",
    "require_scope_and_feature",
    "serve_flags",
    "write_flag",
    "write_flags",
    "write_flags_if_unchanged",
]
