"""Frozen code: each run's workdir and danlu's own job side, kept at submit in a content-addressed store
(launcher/layout.CodeLayout) so that what a job runs is what was recorded."""
