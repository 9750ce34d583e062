"""Metrics the runs wrote (log step lines; TensorBoard events and CSV logs to come): read on the login side, for
`danlu report` and the live columns of `danlu status` (issue 17). Standard library only."""
