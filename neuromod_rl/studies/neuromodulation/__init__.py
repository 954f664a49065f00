"""Backpropamine's comparisons (Miconi et al., ICLR 2019): retroactive and simple neuromodulation
against non-modulated plasticity and non-plastic networks of matched size.

:mod:`.frame` holds the variants, training and report they share; :mod:`.cue` and :mod:`.maze` are
the two tasks.
"""
