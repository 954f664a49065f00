"""``neuromod-rl reproduce crippled-cheetah``: a HalfCheetah joint fails mid-episode (step 100 of 200).

Training breaks one of the joints bthigh, bshin, bfoot, fthigh, fshin; ffoot is held out for the
test. Plastic agent (PlasticPPO with the default plastic core) against feed-forward PPO and
RecurrentPPO (LSTM), equal env-step budgets, settings from ``configs/crippled_halfcheetah_*.yaml``.
The frame is :mod:`.crippled`.
"""

from __future__ import annotations

from pathlib import Path

from neuromod_rl.experiment.reproduce import crippled
from neuromod_rl.experiment.reproduce import locomotion as loco
from neuromod_rl.experiment.reproduce.multiseed import StudyOptions

STUDY = crippled.CrippledStudy(
    name="crippled-cheetah",
    title="Crippled HalfCheetah: a joint fails mid-episode (plastic agent vs PPO vs RecurrentPPO)",
    files={loco.PLASTIC: "crippled_halfcheetah_neuromod.yaml", loco.PPO: "crippled_halfcheetah_ppo.yaml",
           loco.LSTM: "crippled_halfcheetah_lstm.yaml"},
    body="HalfCheetah",
    zoo_return=5819.0,
    scales={
        "smoke": loco.Scale(seeds=2, n_timesteps=160, eval_episodes=2, changes=loco.smoke_changes(40, 20)),
        "default": loco.Scale(),
        "paper": loco.Scale(seeds=5, n_timesteps=2_000_000, eval_episodes=64),
    },
    tuning="""\
All three agents start from rl-zoo3's tuned PPO settings for HalfCheetah (`hyperparams/ppo.yml`:
`normalize: true`, gamma 0.98, GAE lambda 0.92, clip range 0.1, entropy coefficient 4e-4, value
coefficient 0.58, gradient clip 0.8, `log_std_init=-2`, `ortho_init=False`, ReLU), with
observation and reward normalisation (`VecNormalize`; the observation statistics are saved with each
run and applied, frozen, at evaluation; rewards are reported raw). Adapted to 200-step episodes and
this budget: see the comments in the YAML files, which hold the exact values.""",
    estimate="Default-scale estimate: see the estimate in the reproduction guide (measured on the "
             "development machine from short timed runs).",
)


def run(scale: str, seed: int, out: Path, command: str, options: StudyOptions | None = None) -> Path:
    return crippled.run_study(STUDY, scale, seed, out, command, options or StudyOptions())
