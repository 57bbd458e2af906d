"""Our OpenFeature provider: the ``FlagCache`` behind the ecosystem's client API.

Services read flags through ``openfeature`` (``client.get_boolean_details(
"property_vision", False, EvaluationContext(targeting_key=tenant_id))``), so
evaluation context, reasons and hooks follow the OpenFeature convention and
another backend (GrowthBook, flagd, ...) could replace this provider without
touching a call site. Each app registers its provider under its own domain
(the service name), so two apps in one process (tests) do not share one.

Flag key = feature name; ``targeting_key`` = tenant id. Booleans give the
decision; strings give the variant (``treatment``/``control``); other types
are a ``TYPE_MISMATCH``. Reasons: ``TARGETING_MATCH`` (on for everyone),
``SPLIT`` (on for a share, the bucket decided), ``DEFAULT`` (off or 0%),
``ERROR`` (flag never read, unknown flag, or no tenant in the context).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagResolutionDetails, FlagValueType
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import AbstractProvider, Metadata
from prometheus_client import CollectorRegistry

from services.common.flags.cache import Decision, FlagCache, Reason
from services.common.flags.model import FEATURES
from services.common.metrics import MetricFactory

PROVIDER_NAME: Final = "enterprisehub-flags"


class DecisionMetricsHook(Hook):
    """Counts evaluations by flag and reason: ``feature_flag_evaluations_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = MetricFactory(registry).counter("feature_flag_evaluations_total")

    def after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[FlagValueType],
        hints: HookHints,
    ) -> None:
        """Count one resolved evaluation."""
        if hook_context.flag_key in FEATURES:
            self.evaluations.labels(hook_context.flag_key, str(details.reason)).inc()

    def error(self, hook_context: HookContext, exception: Exception, hints: HookHints) -> None:
        """Count one failed evaluation (only known flag names become label values)."""
        feature = hook_context.flag_key if hook_context.flag_key in FEATURES else "unknown"
        self.evaluations.labels(feature, Reason.ERROR.value).inc()


class EnterpriseHubProvider(AbstractProvider):
    """Resolves the four features from a ``FlagCache`` (memory only)."""

    def __init__(self, cache: FlagCache, *, hooks: Sequence[Hook] = ()) -> None:
        super().__init__()
        self._cache = cache
        self._hooks = list(hooks)

    def get_metadata(self) -> Metadata:
        """The provider's name."""
        return Metadata(name=PROVIDER_NAME)

    def get_provider_hooks(self) -> list[Hook]:
        """Hooks that run on every evaluation through this provider."""
        return self._hooks

    def _decide(
        self, flag_key: str, evaluation_context: EvaluationContext | None
    ) -> Decision | FlagResolutionDetails[Any]:
        if flag_key not in FEATURES:
            return _error(ErrorCode.FLAG_NOT_FOUND, f"unknown flag {flag_key!r}")
        tenant_id = evaluation_context.targeting_key if evaluation_context else None
        if not tenant_id:
            return _error(ErrorCode.TARGETING_KEY_MISSING, "targeting_key (tenant id) is required")
        decision = self._cache.evaluate(flag_key, tenant_id)
        if decision.reason is Reason.ERROR:
            code = ErrorCode.FLAG_NOT_FOUND if self._cache.synced else ErrorCode.PROVIDER_NOT_READY
            return _error(code, f"no known state for {flag_key!r}; disabled")
        return decision

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """The decision for the tenant in ``targeting_key``."""
        decision = self._decide(flag_key, evaluation_context)
        if isinstance(decision, FlagResolutionDetails):
            return decision
        return FlagResolutionDetails(
            value=decision.enabled, reason=decision.reason.value, variant=decision.variant
        )

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        """The variant (``treatment``/``control``; ``off`` when the flag is off)."""
        decision = self._decide(flag_key, evaluation_context)
        if isinstance(decision, FlagResolutionDetails):
            return FlagResolutionDetails(
                value=default_value,
                reason=decision.reason,
                error_code=decision.error_code,
                error_message=decision.error_message,
            )
        variant = decision.variant or "off"
        return FlagResolutionDetails(value=variant, reason=decision.reason.value, variant=variant)

    def _not_served(
        self,
        flag_key: str,
        default_value: Any,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Any]:
        """Not served: flags are booleans (or string variants); the default, as a type mismatch."""
        return FlagResolutionDetails(
            value=default_value,
            reason=Reason.ERROR.value,
            error_code=ErrorCode.TYPE_MISMATCH,
            error_message="feature flags are booleans (or string variants)",
        )

    resolve_integer_details = resolve_float_details = resolve_object_details = _not_served


def _error(code: ErrorCode, message: str) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(
        value=False, reason=Reason.ERROR.value, error_code=code, error_message=message
    )
