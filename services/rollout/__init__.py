"""Operator side of the progressive rollout: ``enterprisehub flags|rollout ...``.

``schedule`` holds the seed's schedule and ``decide``; ``operations`` changes
flags with an audit row; ``observe`` reads Prometheus and stored experiment
results; ``cli`` is the command line.
"""
