"""What the researcher asked for: every option (options), Hydra composition of configs into run
specifications (compose), and the checks of a specification against its cluster profile (validate)."""
