"""The EnterpriseHub policy pack (Pulumi CrossGuard).

`policies.aws` and `policies.kubernetes` hold the policies as plain objects;
`policies.pack` lists them with the exempt resource types and builds each
stack's policy config; `policies.offline` runs them over a synthesis. The
`PolicyPack` object itself is built only in `__main__.py`, because building it
starts the analyzer's gRPC server.

    pulumi preview --stack production --policy-pack policies \
        --policy-pack-config policies/config/production.json
    python -m policies --resources build/synth/production/resources.json --stack production
"""
