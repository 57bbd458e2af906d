"""Pulumi mocks that record every resource a program declares.

`run_program` runs a Pulumi program (by default the real one, `infra.program`)
under `pulumi.runtime.set_mocks` with a stack's config and returns a
`ProgramRun`: every registered resource in registration order, with its type,
logical name, URN, parent, provider, dependencies, inputs and outputs, plus the
data-source calls and the stack outputs. Tests assert on it; `infra.synth`
turns it into `resources.json` and Kubernetes manifests.

Why a custom monitor: `MockResourceArgs` (pulumi 3.272) carries the type, name,
inputs and provider reference but neither the parent, the dependencies nor the
per-property dependencies. Those are fields of the `RegisterResourceRequest`
the SDK sends to the monitor, so `RecordingMonitor` subclasses the SDK's
`MockMonitor` and reads them from the request. It also fixes two places where
the stock mock monitor differs from the engine:

* URNs: the engine leaves the root stack out of a child's qualified type
  (`urn:pulumi:dev::proj::aws:s3/bucket:Bucket::b`); the stock mock puts it in
  (`...::pulumi:pulumi:Stack$aws:s3/bucket:Bucket::b`). URNs are part of the
  resources.json contract, so they must match what `pulumi up` records.
* Secret outputs: the engine marks `additionalSecretOutputs` (e.g. a
  RandomPassword's `result`, a Secret's `data`) as secret; the stock mock
  returns them in the clear, which would leak generated passwords into the
  synthesized output.

Secrets are tracked leaf by leaf: the request still carries the secret marker
on the exact value, whereas the SDK's deserializer pushes secretness up to the
enclosing map. `Secret` wraps such a value in recorded inputs and outputs.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks
from pulumi.runtime.stack import run_pulumi_func

# The SDK's own `@pulumi.runtime.test` drives the event loop with this helper;
# there is no public equivalent for running a program and then awaiting outputs.
from pulumi.runtime.sync_await import _sync_await

from infra.synth import kubernetes_await, naming
from infra.synth.envoy_gateway import EnvoyGatewayModel
from infra.synth.mock_values import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    CallContext,
    CallFailure,
    ResourceContext,
    call_outputs,
    is_kubernetes_object_type,
    load_balancer_hostname,
    resource_outputs,
)

__all__ = [
    "SECRET_MASK",
    "ProgramRun",
    "RecordedCall",
    "RecordedResource",
    "RecordingMocks",
    "RecordingMonitor",
    "Secret",
    "mask_secrets",
    "normalize_numbers",
    "run_outside_program",
    "run_program",
    "unwrap_secrets",
]

SECRET_MASK = "[secret]"  # noqa: S105 - the mask, not a password
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
DEFAULT_PROGRAM = "infra.program:main"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Secret:
    """A value the program marked secret (config secret, `Output.secret`, secret output)."""

    value: Any

    def __repr__(self) -> str:
        # Never show the value, even in a pytest assertion diff.
        return "Secret([secret])"


def _rebuild(value: Any, child: Callable[[Any], Any]) -> Any:
    """``value`` with ``child`` applied to each item of a map or a list (tuples become lists).

    Any other value comes back as it is: the walkers below decide what a leaf
    and a `Secret` become, and share how maps and lists are taken apart.
    """
    if isinstance(value, Mapping):
        return {k: child(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [child(v) for v in value]
    return value


def unwrap_secrets(value: Any) -> Any:
    """The plain value, with every `Secret` replaced by what it holds."""
    if isinstance(value, Secret):
        return unwrap_secrets(value.value)
    return _rebuild(value, unwrap_secrets)


def mask_secrets(value: Any, mask: str = SECRET_MASK) -> Any:
    """Replace every leaf inside a `Secret` by `mask`, keeping maps' keys and lists' lengths.

    Keeping the shape means a reader still sees which keys a Kubernetes Secret
    or an environment map has, without any of the values.
    """

    def hide(inner: Any) -> Any:
        if isinstance(inner, Secret):
            return hide(inner.value)
        if isinstance(inner, Mapping | list | tuple):
            return _rebuild(inner, hide)
        return mask

    if isinstance(value, Secret):
        return hide(value.value)
    return _rebuild(value, lambda item: mask_secrets(item, mask))


def normalize_numbers(value: Any) -> Any:
    """Whole-number floats back to ints.

    Pulumi's wire format (protobuf Struct) has only doubles, so `replicas: 3`
    arrives as 3.0; the providers convert back, and so must anything that
    writes what a provider would send.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Secret):
        return Secret(normalize_numbers(value.value))
    return _rebuild(value, normalize_numbers)


def _decode(value: Any) -> Any:
    """A protobuf value from a monitor request as Python data, secrets kept per leaf."""
    if isinstance(value, struct_pb2.Struct):
        if rpc._special_sig_key in value:
            signature = value[rpc._special_sig_key]
            if signature == rpc._special_secret_sig:
                return Secret(_decode(value["value"]))
            if signature == rpc._special_resource_sig:
                # A resource passed as an input travels as a reference; its URN identifies it.
                return value["urn"]
            if signature in (rpc._special_asset_sig, rpc._special_archive_sig):
                return {k: _decode(v) for k, v in value.items() if k != rpc._special_sig_key}
            if signature == rpc._special_output_value_sig:
                inner = _decode(value["value"]) if "value" in value else None
                secret = "secret" in value.fields and value.fields["secret"].bool_value
                return Secret(inner) if secret else inner
        return {k: d for k, v in value.items() if (d := _decode(v)) is not None}
    if isinstance(value, struct_pb2.ListValue):
        return [_decode(v) for v in value]
    if value == rpc.UNKNOWN:
        # Only a preview leaves values unknown; run_program never previews.
        return None
    return value


def _provider_urn(reference: str) -> str | None:
    """`urn::id` provider reference -> the provider's URN (None: the default provider)."""
    if not reference:
        return None
    return reference.rsplit("::", 1)[0]


@dataclass(frozen=True, slots=True)
class RecordedResource:
    """One resource as the program declared it and as the mocks answered.

    `raw_inputs`/`raw_outputs` keep `Secret` markers; `inputs`/`outputs` are the
    plain values with whole-number floats as ints, for tests.
    """

    sequence: int
    type: str
    name: str
    urn: str
    id: str
    custom: bool
    parent: str | None
    provider: str | None
    dependencies: tuple[str, ...]
    property_dependencies: Mapping[str, tuple[str, ...]]
    raw_inputs: Mapping[str, Any]
    raw_outputs: Mapping[str, Any]
    protect: bool = False
    external: bool = False
    delete_before_replace: bool = False
    retain_on_delete: bool = False
    ignore_changes: tuple[str, ...] = ()
    additional_secret_outputs: tuple[str, ...] = ()

    @property
    def inputs(self) -> dict[str, Any]:
        """Inputs as plain Python data (secrets unwrapped, ints as ints)."""
        plain: dict[str, Any] = normalize_numbers(unwrap_secrets(self.raw_inputs))
        return plain

    @property
    def outputs(self) -> dict[str, Any]:
        """Inputs merged with the mocks' computed outputs, as plain data."""
        plain: dict[str, Any] = normalize_numbers(unwrap_secrets(self.raw_outputs))
        return plain

    @property
    def package(self) -> str:
        """`aws`, `kubernetes`, `random`, `pulumi` (providers) or the component's package."""
        return self.type.split(":", 1)[0]

    @property
    def is_kubernetes_object(self) -> bool:
        """A `kubernetes:<group>/<version>:<Kind>` object (not a provider, release or chart)."""
        return is_kubernetes_object_type(self.type)


class RecordedCall(NamedTuple):
    """One data-source call (invoke): its token, arguments and the answer."""

    token: str
    args: Mapping[str, Any]
    result: Mapping[str, Any]


@dataclass
class ProgramRun:
    """Everything a program declared under the mocks."""

    project: str
    stack: str
    resources: list[RecordedResource]
    calls: list[RecordedCall]
    stack_outputs: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[RecordedResource]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        """All resources of one type token, in registration order."""
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> RecordedResource:
        """The single resource of a type (and logical name); an error names what was found."""
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        if len(found) != 1:
            names = sorted(r.name for r in self.of_type(type_token))
            raise LookupError(
                f"expected exactly one {type_token}"
                + (f" named {name!r}" if name else "")
                + f", found {len(found)} (names of that type: {names})"
            )
        return found[0]

    def by_urn(self, urn: str) -> RecordedResource:
        """The resource with this URN."""
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise LookupError(f"no resource with URN {urn}")

    def children(self, urn: str) -> list[RecordedResource]:
        """Direct children of a resource (those whose parent is `urn`)."""
        return [r for r in self.resources if r.parent == urn]

    def kubernetes_objects(self, kind: str | None = None) -> list[RecordedResource]:
        """Kubernetes object resources, optionally of one kind."""
        return [
            r
            for r in self.resources
            if r.is_kubernetes_object and (kind is None or r.type.rsplit(":", 1)[1] == kind)
        ]

    def plain_stack_outputs(self) -> dict[str, Any]:
        """Stack outputs as plain data (secrets unwrapped)."""
        plain: dict[str, Any] = normalize_numbers(unwrap_secrets(self.stack_outputs))
        return plain


class RecordingMocks(Mocks):
    """Computes realistic outputs for resources and data sources (see `infra.synth.mock_values`).

    Recording itself happens in `RecordingMonitor`, which sees the whole
    request; use `install()` to activate both.
    """

    def __init__(
        self, *, region: str = DEFAULT_REGION, account_id: str = DEFAULT_ACCOUNT_ID
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.calls: list[RecordedCall] = []
        #: Physical names the provider would reject; run_program raises on any.
        self.name_violations: list[naming.NameViolation] = []
        #: ``pulumi.com/waitFor`` waits that would never end; run_program raises on any.
        self.wait_violations: list[str] = []
        #: The controller that writes Gateways' status, fed every object declared.
        self.envoy_gateway = EnvoyGatewayModel()
        self._lock = threading.Lock()
        # The monitor sets the request being served (per thread: the SDK sends
        # registrations from a thread pool) so new_resource can see its URN
        # and additional secret outputs, which MockResourceArgs lacks.
        self.current = threading.local()

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        """Return the id and state (inputs + computed outputs) of a new resource."""
        urn: str = getattr(self.current, "urn", "") or f"urn:unknown::{args.typ}::{args.name}"
        secret_outputs: Iterable[str] = getattr(self.current, "secret_outputs", ())
        if args.custom is False:
            # Component resources have no provider and no state of their own;
            # their outputs arrive later through register_outputs.
            return "", {}
        plain = normalize_numbers(unwrap_secrets(_sdk_unwrap(args.inputs)))
        if args.typ.startswith("aws:"):
            violations = naming.check_text(args.typ, args.name, plain)
            violation = naming.check(args.typ, args.name, plain)
            if violation is not None:
                violations.append(violation)
            if violations:
                with self._lock:
                    self.name_violations.extend(violations)
        ctx = ResourceContext(args.typ, args.name, urn, plain, self.region, self.account_id)
        resource_id, computed = resource_outputs(ctx)
        if is_kubernetes_object_type(args.typ):
            computed = self._awaited(ctx, computed)
        state: dict[str, Any] = {**args.inputs, **computed}
        for key in secret_outputs:
            if key in state:
                # What the engine does for additionalSecretOutputs.
                state[key] = rpc.wrap_rpc_secret(state[key])
        return args.resource_id or resource_id, state

    def _awaited(self, ctx: ResourceContext, computed: dict[str, Any]) -> dict[str, Any]:
        """A Kubernetes object as the provider returns it, given its ``pulumi.com/waitFor``.

        Without a wait, as created (no controller has written a status yet).
        With one, only once the wait holds, so a Gateway comes back with the
        status Envoy Gateway gives it; a wait that never holds is recorded.
        """
        live = {**ctx.inputs, **computed}
        self.envoy_gateway.observe(live)
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        try:
            if not kubernetes_await.wait_expressions(annotations):
                return computed
            if live.get("kind") == "Gateway":
                computed = {
                    **computed,
                    "status": self.envoy_gateway.gateway_status(
                        live, load_balancer_hostname=load_balancer_hostname(ctx)
                    ),
                }
            kubernetes_await.check_wait(ctx.type, ctx.name, annotations, {**live, **computed})
        except ValueError as error:
            with self._lock:
                self.wait_violations.append(str(error))
        return computed

    def call(self, args: MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        """Answer a data-source call; unknown tokens raise `UnmockedCallError`."""
        plain_args = normalize_numbers(unwrap_secrets(_sdk_unwrap(args.args)))
        try:
            result = call_outputs(CallContext(args.token, plain_args, self.region, self.account_id))
        except CallFailure as failure:
            # As the engine reports a provider's failed invoke: the program's
            # data-source call raises, with the reason in its message.
            with self._lock:
                self.calls.append(RecordedCall(args.token, plain_args, {}))
            return {}, [("", failure.reason)]
        with self._lock:
            self.calls.append(RecordedCall(args.token, plain_args, result))
        # An empty failure list, not None: the stock monitor iterates over it.
        return result, []

    def install(self, project: str, stack: str) -> RecordingMonitor:
        """Make this the active Pulumi runtime (a fresh root stack, no preview)."""
        # A fresh root stack per run: set_mocks creates one only if none exists,
        # and runs of different stacks in one process must not share it.
        pulumi_settings.ROOT.set(None)
        monitor = RecordingMonitor(self)
        pulumi.runtime.set_mocks(self, project=project, stack=stack, preview=False, monitor=monitor)
        return monitor


def _sdk_unwrap(value: Any) -> Any:
    """SDK-deserialized values (with rpc secret wrappers) -> `Secret` markers."""
    if rpc.is_rpc_secret(value):
        return Secret(_sdk_unwrap(rpc.unwrap_rpc_secret(value)))
    if isinstance(value, Mapping):
        return {k: _sdk_unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sdk_unwrap(v) for v in value]
    return value


class RecordingMonitor(MockMonitor):
    """The SDK's mock monitor, recording each request's full registration."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recording_mocks = mocks
        self.records: list[RecordedResource] = []
        self.registered_outputs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """A URN as the engine builds it: the root stack is not part of the type chain."""
        if parent and parent.split("::")[2].split("$")[-1] == ROOT_STACK_TYPE:
            parent = ""
        return super().make_urn(parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Serve the registration as the stock mock does, then record it."""
        _worker_loops.ensure()
        if request.type == ROOT_STACK_TYPE:
            return super().RegisterResource(request)
        urn = self.make_urn(request.parent, request.type, request.name)
        self.recording_mocks.current.urn = urn
        self.recording_mocks.current.secret_outputs = tuple(request.additionalSecretOutputs)
        try:
            response = super().RegisterResource(request)
        finally:
            self.recording_mocks.current.urn = None
            self.recording_mocks.current.secret_outputs = ()
        self._record(request, urn, response.id, _decode(response.object), external=False)
        return response

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """A data-source call, served by the stock mock on a tracked worker loop."""
        _worker_loops.ensure()
        return super().Invoke(request)

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """A `Resource.get(...)` read: recorded as external, like the engine's state does."""
        _worker_loops.ensure()
        urn = self.make_urn(request.parent, request.type, request.name)
        self.recording_mocks.current.urn = urn
        try:
            response = super().ReadResource(request)
        finally:
            self.recording_mocks.current.urn = None
        registered = self.resources[response.urn]
        self._record(request, urn, registered.id, _decode(response.properties), external=True)
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Keep a component's `register_outputs(...)` as its outputs."""
        with self._lock:
            self.registered_outputs[request.urn] = _decode(request.outputs)
        return super().RegisterResourceOutputs(request)

    def _record(
        self, request: Any, urn: str, resource_id: str, outputs: Any, *, external: bool
    ) -> None:
        # Top-level resources keep the root stack as parent, as in the engine's state.
        parent = request.parent or None
        property_dependencies = {
            key: tuple(deps.urns)
            for key, deps in getattr(request, "propertyDependencies", {}).items()
        }
        raw_inputs = _decode(request.object if not external else request.properties)
        with self._lock:
            self.records.append(
                RecordedResource(
                    sequence=len(self.records),
                    type=request.type,
                    name=request.name,
                    urn=urn,
                    id=resource_id or "",
                    custom=bool(getattr(request, "custom", True)),
                    parent=parent,
                    provider=_provider_urn(request.provider),
                    dependencies=tuple(request.dependencies),
                    property_dependencies=MappingProxyType(property_dependencies),
                    raw_inputs=MappingProxyType(raw_inputs),
                    raw_outputs=MappingProxyType(outputs if isinstance(outputs, dict) else {}),
                    protect=bool(getattr(request, "protect", False)),
                    external=external,
                    delete_before_replace=bool(getattr(request, "deleteBeforeReplace", False)),
                    retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
                    ignore_changes=tuple(getattr(request, "ignoreChanges", ())),
                    additional_secret_outputs=tuple(request.additionalSecretOutputs),
                )
            )

    def finished_records(self) -> list[RecordedResource]:
        """Records with each component's registered outputs filled in."""
        with self._lock:
            records = list(self.records)
        result = []
        for record in records:
            extra = self.registered_outputs.get(record.urn)
            if extra and not record.custom:
                record = _with_outputs(record, {**record.raw_outputs, **extra})
            result.append(record)
        return result


def _with_outputs(record: RecordedResource, outputs: dict[str, Any]) -> RecordedResource:
    return replace(record, raw_outputs=MappingProxyType(outputs))


def load_program(ref: str = DEFAULT_PROGRAM) -> Callable[[], object]:
    """Resolve `module:function` to the program function (imported on demand)."""
    module_name, _, function_name = ref.partition(":")
    module = importlib.import_module(module_name)
    function: Callable[[], object] = getattr(module, function_name or "main")
    return function


class _WorkerLoops:
    """Event loops of the SDK's executor threads, closed after each program run.

    The stock mock monitor serves registrations on executor threads and gives
    each thread an event loop (`_ensure_event_loop`) that nothing ever closes;
    when such a thread ends, the loop's self-pipe sockets are collected
    unclosed and, with warnings as errors, fail whichever test is running then.
    Creating those loops here instead lets `run_program` close them; a thread
    reused by a later run finds its loop closed and gets a fresh one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loops: list[asyncio.AbstractEventLoop] = []

    def ensure(self) -> None:
        policy = asyncio.get_event_loop_policy()
        try:
            loop: asyncio.AbstractEventLoop | None = policy.get_event_loop()
        except RuntimeError:  # a worker thread without a loop yet
            loop = None
        if loop is not None and not loop.is_closed():
            return
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        with self._lock:
            self._loops.append(loop)

    def close_all(self) -> None:
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            if not loop.is_running():
                _finish_pending(loop)
                loop.close()


def _finish_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what the SDK left scheduled on ``loop`` (Outputs its thread created).

    A task left pending on a closed loop is collected later as "never awaited",
    and with warnings as errors that fails whichever test runs at that moment.
    """
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    try:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    except RuntimeError:
        # This thread runs another loop: the tasks cannot run to their end here,
        # so close their coroutines, which is all that "never awaited" checks.
        for task in pending:
            task.get_coro().close()


_worker_loops = _WorkerLoops()


def run_program(
    stack: str,
    config: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
    *,
    program: Callable[[], object] | str = DEFAULT_PROGRAM,
    project: str = "enterprisehub",
    region: str | None = None,
    account_id: str = DEFAULT_ACCOUNT_ID,
    check_names: bool = True,
) -> ProgramRun:
    """Run `program` under the mocks as stack `stack`, and return what it declared.

    `config` uses Pulumi's fully qualified keys (`enterprisehub:replicas`,
    `aws:region`) and string values, structured values JSON-encoded, exactly as
    the CLI hands them to a program. `secrets` are merged into it and marked
    secret, so `Config.require_secret` sees them as secrets. The AWS region of
    computed ARNs and endpoints is `region`, else the `aws:region` config.

    The program's exceptions (e.g. invalid config) propagate unchanged. A
    physical name the AWS provider would reject (see `infra.synth.naming`)
    raises `PhysicalNameError` listing every one, unless `check_names` is False.
    """
    all_config = {**config, **(secrets or {})}
    pulumi.runtime.set_all_config(all_config, list((secrets or {}).keys()))
    mocks = RecordingMocks(
        region=region or all_config.get("aws:region") or DEFAULT_REGION, account_id=account_id
    )
    monitor = mocks.install(project, stack)
    function = load_program(program) if isinstance(program, str) else program
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()

    def body() -> None:
        function()

    try:
        _sync_await(run_pulumi_func(body))
        stack_outputs = _sync_await(_resolve_exports())
    finally:
        _worker_loops.close_all()
    if mocks.name_violations and check_names:
        raise naming.PhysicalNameError(
            sorted(mocks.name_violations, key=lambda v: (v.type, v.logical_name))
        )
    if mocks.wait_violations:
        raise kubernetes_await.UnsatisfiedWaitError(sorted(mocks.wait_violations))
    return ProgramRun(
        project=project,
        stack=stack,
        resources=monitor.finished_records(),
        calls=list(mocks.calls),
        stack_outputs=stack_outputs,
    )


def run_outside_program(function: Callable[[], _T]) -> _T:
    """Call ``function``, which may create Outputs, outside any program run.

    ``Output.secret`` and friends schedule a task on the calling thread's event
    loop. Called at import or collection time (e.g. to build parametrize cases
    from a loaded config), nothing ever runs that loop, and the task, collected
    pending much later, fails whichever test runs then. Here ``function`` runs
    on a thread and loop of its own, the tasks it scheduled run to their end and
    the loop is closed; the Outputs it returns are finished, not awaitable.
    """
    result: list[_T] = []
    failure: list[BaseException] = []

    def body() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            result.append(function())
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except BaseException as error:  # re-raised in the caller's thread
            failure.append(error)
        finally:
            loop.close()

    # The SDK keeps config and settings in context variables: the thread runs in a
    # copy of the caller's context. Joined at once: nothing runs beside it.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(body,), name="run-outside-program")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def _resolve_exports() -> dict[str, Any]:
    """The root stack's exports, each wrapped in `Secret` if it is secret."""
    root = pulumi_settings.get_root_resource()
    exports: Mapping[str, Any] = getattr(root, "outputs", {}) or {}
    resolved: dict[str, Any] = {}
    for key, value in exports.items():
        output = pulumi.Output.from_input(value)
        plain = _sdk_unwrap(await output.future())
        resolved[key] = Secret(plain) if await output.is_secret() else plain
    return resolved
