"""Adaptation within an episode: a body changes mid-episode (a joint or leg fails, the target velocity
switches) and the plastic agent is compared with feed-forward PPO and RecurrentPPO on equal budgets;
and an evolved Hebbian rule that adapts to a damaged leg from random weights.

:mod:`.locomotion` is the MuJoCo studies' common frame (agents, evaluation windows, plots);
:mod:`.crippled` the limb-failure study that :mod:`.crippled_cheetah` and :mod:`.crippled_ant`
configure; :mod:`.cheetah_vel` the velocity switch; :mod:`.es_ant` the evolved ABCD rule.
"""
