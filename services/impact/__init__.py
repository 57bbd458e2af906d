"""Business impact: experiment statistics, the daily aggregate, reports, ROI.

``stats`` (Welch, delta-method lift, SRM, CUPED, confidence sequences, MDE,
multiple testing), ``experiment`` (CSV input and the analysis JSON),
``assumptions`` (the seed's revenue formulas, labelled as assumptions),
``aggregate`` (``enterprisehub impact aggregate``), ``report`` (daily and
weekly summaries from stored rows), ``cli``.
"""
