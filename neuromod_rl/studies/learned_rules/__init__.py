"""Learned update rules from the meta-learning papers, each reproduced on its own claim:
:mod:`.gregor` (rules that remember), :mod:`.blur` (bidirectional update rules) and :mod:`.l2l` (a
learned optimizer).
"""
