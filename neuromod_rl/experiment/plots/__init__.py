"""Every figure the project draws: :mod:`.figures` (the one way to make and save a figure),
:mod:`.learning` (learning curves, training diagnostics) and :mod:`.adaptation` (adaptation within an
episode, regret, fast weights, M(t)). The studies draw theirs with :mod:`.figures` too."""
