"""Memory and within-episode learning against the recurrent baselines users already run:
:mod:`.pomdp` (rl-zoo3's velocity-masked tasks vs RecurrentPPO; its tasks and runs in
:mod:`.pomdp_suite`), :mod:`.core_sweep` (one plastic-core setting changed at a time on that suite),
:mod:`.bandit` (two-armed bandits vs Thompson sampling, UCB1 and RecurrentPPO) and :mod:`.offpolicy`
(PlasticSAC vs SAC and RecurrentPPO).
"""
