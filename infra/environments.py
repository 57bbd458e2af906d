"""The four environments, defined once.

Stack names, stack files, chart values and config validation all use this
list; ``services/common/settings.py`` repeats it as a ``Literal`` for the
services (infra/ and services/ share no code), and the contract test
(tests/test_contracts.py) keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Environment(StrEnum):
    """The four environments; ``local`` runs on a developer's cluster, the rest on AWS."""

    LOCAL = "local"
    DEV = "dev"
    STAGING = "staging"
    PRODUCTION = "production"


#: Their names, in promotion order (also the names of the four stacks).
ENVIRONMENTS: Final[tuple[str, ...]] = tuple(env.value for env in Environment)
#: The environments that run on AWS.
CLOUD_ENVIRONMENTS: Final[frozenset[str]] = frozenset(ENVIRONMENTS) - {Environment.LOCAL.value}
