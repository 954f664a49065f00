"""``neuromod-rl reproduce NAME``: the studies, each a module that declares itself.

Every study trains at a scale meant to fit 2 CPU cores (``--scale default``), or at a larger one
(``--scale paper``), over several seeds, and writes ``<out>/<name>.md`` with the exact command, the
seeds, settings, tables of medians and interquartile ranges, PNG plots, and whether each target claim
reproduced. ``--scale smoke`` runs in seconds and exists for the test suite. Per-seed results are
saved as they finish (``<out>/<name>.<scale>.runs.json``), so a stopped study resumes where it was.

Families, one per kind of claim (:data:`~.registry.FAMILIES`): :mod:`.adaptation`, :mod:`.memory`,
:mod:`.neuromodulation`, :mod:`.learned_rules`. What they share is :mod:`.scaffold` (seeds, progress
files, statistics, agents and runs, reports and figures); :mod:`.registry` finds them.
"""
