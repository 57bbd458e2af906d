"""The base of every component: its type token, its name and its Args, set in one place.

A component names its Pulumi type (its "type token") in the class attribute
``component_type`` and hands its name, Args and options to ``super().__init__``::

    class Database(AwsComponent[DatabaseArgs]):
        component_type = "enterprisehub:aws:Database"

        address: pulumi.Output[str]

        def __init__(self, name: str, args: DatabaseArgs, opts: ... = None) -> None:
            super().__init__(name, args, opts)
            ...
            self.register_outputs({...})

Its methods then read ``self._name`` (the stem of every child's logical name,
``f"{self._name}-..."``) and ``self._args``; an AWS component also reads
``self._tags``, the tags each of its AWS resources carries. Args are validated
before ``super().__init__``, so that a bad input fails before anything is registered.

The type is part of the URN of the component and of every resource under it: changing
it, or the name a component is given, replaces all of them on ``pulumi up`` (unless an
alias records the old URN). That is why each class spells its type out instead of
deriving it from the class name, which a rename would change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Generic, Protocol, TypeVar

import pulumi
import pulumi_aws as aws

from infra.components.kms import encryption_key

ArgsT = TypeVar("ArgsT")


class Component(pulumi.ComponentResource, Generic[ArgsT]):
    """A ComponentResource registered under its class's ``component_type``, keeping its Args."""

    #: ``enterprisehub:<aws|k8s>:<Class>``; see the module docstring before changing one.
    component_type: ClassVar[str]

    def __init__(self, name: str, args: ArgsT, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.component_type, name, None, opts)
        # pulumi.Resource keeps the same value in a private attribute of this name;
        # setting it here means the components do not rely on the SDK's internals.
        self._name = name
        self._args = args


class TaggedArgs(Protocol):
    """Args of an AWS component: the tags its AWS resources carry."""

    @property
    def tags(self) -> Mapping[str, str]: ...


TaggedArgsT = TypeVar("TaggedArgsT", bound=TaggedArgs)


class AwsComponent(Component[TaggedArgsT]):
    """A component of AWS resources, each tagged with ``args.tags``."""

    def __init__(
        self, name: str, args: TaggedArgsT, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        self._tags = dict(args.tags)

    def _encryption_key(
        self,
        encrypts: str,
        *,
        protect: bool,
        purpose: str = "",
        policy: pulumi.Input[str] | None = None,
    ) -> aws.kms.Key:
        """The component's KMS key for ``encrypts`` (:func:`~infra.components.kms.encryption_key`).

        Named ``<name>-key``, or ``<name>-<purpose>-key`` in a component with more
        than one; ``protect`` is the protection of the data it encrypts, ``policy``
        its key policy (None: KMS's default).
        """
        stem = f"{self._name}-{purpose}" if purpose else self._name
        return encryption_key(
            f"{stem}-key",
            description=f"{self._name}: {encrypts}",
            tags=self._tags,
            parent=self,
            protect=protect,
            policy=policy,
        )
