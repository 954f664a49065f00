"""The multi-seed studies (`neuromod-rl reproduce NAME`): shared helpers, resume of partial progress,
the plastic core taken from one place, and every RL study end to end at `--scale smoke`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from neuromod_rl.cli import main
from neuromod_rl.studies import command as reproduce
from neuromod_rl.studies.scaffold import rl

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# ------------------------------------------------------------------------------ statistics










def test_mujoco_run_directories_do_not_depend_on_the_evaluation():
    from neuromod_rl.studies.adaptation import crippled_ant
    from neuromod_rl.studies.adaptation import locomotion as loco

    study = crippled_ant.SETUP
    table, scale = loco.agents(study.files), study.scales["smoke"]
    one, _ = loco.jobs(study.name, table, [0], scale, Path("runs"), None, "v1")
    two, _ = loco.jobs(study.name, table, [0], scale, Path("runs"), None, "v2")
    for a, b in zip(one, two):
        assert a.fp != b.fp  # a new evaluation version: the result is computed again ...
        assert a.args[4] == b.args[4]  # ... from the same trained run directory


def test_a_recovery_comparison_is_judged_only_between_agents_that_run():
    """A baseline that falls (a negative recovery from a near-zero pre-failure reward) makes "2x its
    recovery" trivially beaten: below the intact-body bar the claim is not judged, and says why."""
    from neuromod_rl.studies.adaptation.crippled import recovery_claim
    from neuromod_rl.studies.scaffold.report import Report

    report = Report("s", "t", "cmd", 0, "default", {})
    recovery_claim(report, "plastic >= 2x PPO", True, "recovery 0.49 vs -1.76", ["MLP PPO"], 0.66)
    recovery_claim(report, "plastic >= LSTM", True, "recovery 0.9 vs 0.8", [], 0.66)
    (_, judged_out, why), (_, judged, _) = report.claims
    assert not judged_out and why.startswith("not judged: MLP PPO below the intact-body bar (0.66 per step)")
    assert "recovery 0.49 vs -1.76" in why and judged




# ------------------------------------------------------------------------------ agents
def test_plastic_core_comes_from_coreconfig_in_every_study():
    from neuromod_rl.agents.common.core_factory import CoreConfig

    defaults = CoreConfig()
    assert rl.default_core() == {k: getattr(defaults, k) for k in rl.CORE_KEYS}
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if path.name in {f for f in _study_yamls()} and data["algo"] == "plastic_ppo":
            assert not set(rl.CORE_KEYS) & set(data["policy_kwargs"]), f"{path.name} repeats the core's settings"
    agent = rl.yaml_agent("p", "crippled_halfcheetah_neuromod.yaml")
    pk = agent.resolved(0).policy_kwargs
    assert {k: pk[k] for k in rl.CORE_KEYS} == rl.default_core() and pk["rule"] == "neuromod"
    with pytest.raises(ValueError, match="rule='nope' is not a registered rule"):
        rl.default_core(rule="nope")


def test_every_study_agent_builds_when_the_default_core_changes(monkeypatch):
    """The lead may pick another default core (type, size, gain sharing, modulation, its source):
    every plastic agent of every study follows it, and the non-modulated ablations stay non-modulated."""
    from neuromod_rl.studies.memory import bandit
    from neuromod_rl.studies.neuromodulation import cue, maze
    from neuromod_rl.studies.neuromodulation import frame as bp

    other = {"core": "lstm", "hidden_size": 6, "alpha_shape": "neuron", "modulation": "fanout",
             "modulation_source": "td_error"}
    monkeypatch.setattr(rl, "default_core", lambda **variant: {**other, **variant})
    agents = [rl.yaml_agent(f, f) for f in _study_yamls() if "neuromod" in f]
    agents += list(bandit.agent_table("dependent", bandit.SCALES["smoke"]).values())
    for study in (cue.SETUP, maze.SETUP):
        agents += list(bp.variants(study.name, study.env, study.hyperparameters, study.scales["smoke"], study.lstm,
                                   study.reward_index).values())
    for agent in agents:
        assert rl.count_trainable(agent) > 0, agent.name
        pk = agent.resolved(0).policy_kwargs
        if agent.config["algo"] == "plastic_ppo":
            assert pk["core"] == "lstm" and pk["alpha_shape"] == "neuron"
            unmodulated = pk["rule"] == "clipped"
            assert (pk["modulation"], pk["modulation_source"]) == ((None, "hidden") if unmodulated else
                                                                   ("fanout", "td_error"))


def _study_yamls() -> list[str]:
    from neuromod_rl.studies.adaptation import cheetah_vel, crippled_ant, crippled_cheetah

    return [*crippled_cheetah.SETUP.files.values(), *crippled_ant.SETUP.files.values(), *cheetah_vel.FILES.values()]


def test_study_yamls_share_observations_normalisation_and_budget():
    groups = [_study_yamls()[i : i + 3] for i in (0, 3, 6)]
    for files in groups:
        cfgs = [yaml.safe_load((CONFIGS / f).read_text()) for f in files]
        for key in ("env", "env_kwargs", "wrappers", "normalize", "n_timesteps"):
            assert len({json.dumps(c[key], sort_keys=True) for c in cfgs}) == 1, (files, key)
        assert {c["algo"] for c in cfgs} == {"plastic_ppo", "ppo", "recurrent_ppo"}


def test_the_non_plastic_network_has_frozen_plasticity_and_fewer_parameters(tmp_path):
    base = {"name": "f", "env": "neuromod_rl/CueReward-v0", "algo": "plastic_ppo", "policy": "MlpPlasticPolicy",
            # linear heads, as the Backpropamine studies have: the heads would dwarf what alpha adds
            "policy_kwargs": {"rule": "clipped", "core": "rnn", "hidden_size": 6, "net_arch": []},
            "n_envs": 2, "n_timesteps": 240,
            "hyperparameters": {"n_steps": 120, "batch_size": 120, "n_epochs": 1}}
    plastic, frozen = rl.Agent("p", base), rl.Agent("r", base, frozen_plasticity=True)
    # alpha (6 x 6) and eta are not trained in the frozen network
    assert rl.count_trainable(plastic) - rl.count_trainable(frozen) == 6 * 6 + 1
    size, count = rl.matched_size(frozen, "hidden_size", rl.count_trainable(plastic), upper=64)
    assert size > 6 and all(abs(count - rl.count_trainable(plastic)) <= abs(rl.count_trainable(frozen, policy_kwargs={
        "hidden_size": n}) - rl.count_trainable(plastic)) for n in (size - 1, size + 1))
    run = rl.train_or_resume(frozen, frozen.resolved(0), tmp_path / "frozen")
    model, _ = rl.load_trained(run, frozen.resolved(0))
    alpha = model.policy.core.rule.alpha
    assert torch.count_nonzero(alpha) == 0  # still 0 after training: the network never used its fast weights


def test_an_interrupted_run_stops_the_study_and_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from support import TINY, SignalAt

    agent = rl.Agent("tiny", {**TINY, "checkpoint_freq": 20}, frozen_plasticity=True)
    cfg = agent.resolved(0)
    monkeypatch.setattr(rl, "freeze_callback", lambda: SignalAt(30))  # Ctrl-C during training
    with pytest.raises(KeyboardInterrupt, match="stopped at step"):
        rl.train_or_resume(agent, cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "model.zip").exists()
    monkeypatch.undo()
    run = rl.train_or_resume(agent, cfg, tmp_path / "run")  # picks up the checkpoint
    assert run.model.is_file() and len(list(run.monitor.glob("*.monitor.csv"))) == 2  # two training segments
    assert rl.train_or_resume(agent, cfg, tmp_path / "run").path == run.path  # finished: reused as it is


# ------------------------------------------------------------------------------ end to end
RL_STUDIES = {
    "crippled-cheetah": ["crippled-cheetah_heldout.png", "crippled-cheetah_intact.png",
                         "crippled-cheetah_learning.png"],
    "crippled-ant": ["crippled-ant_heldout.png", "crippled-ant_learning.png"],
    "cheetah-vel": ["cheetah-vel_error.png", "cheetah-vel_learning.png"],
    "bandit": ["bandit_regret.png"],
    "cue": ["cue_learning.png"],
    "maze": ["maze_learning.png"],
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Every RL study once at --scale smoke (2 seeds), sharing one output folder and runs folder."""
    out = tmp_path_factory.mktemp("studies")
    codes = {name: reproduce.main([name, "--scale", "smoke", "--out", str(out), "--runs-dir", str(out / "runs")])
             for name in RL_STUDIES}
    return out, codes


@pytest.mark.parametrize("name", sorted(RL_STUDIES))
def test_study_writes_its_report_numbers_and_plots(smoke, name):
    out, codes = smoke
    assert codes[name] == 0
    report = (out / f"{name}.md").read_text()
    assert f"neuromod-rl reproduce {name} --scale smoke --seed 0" in report and "2 seeds (`0, 1`)" in report
    claims = re.findall(r"^\| (.+?) \| (yes|\*\*no\*\*) \| (.+?) \|$", report, flags=re.M)
    assert len(claims) >= 2 and all(re.search(r"\d", evidence) for _, _, evidence in claims), report
    assert re.search(r"median \[25%, 75%\]", report)
    for png in RL_STUDIES[name]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in report
    runs = json.loads((out / f"{name}.smoke.runs.json").read_text())["runs"]
    assert len(runs) >= 2 * 3 and all("result" in r and r["seconds"] >= 0 for r in runs.values())


def test_an_interrupted_study_resumes_without_redoing_finished_runs(smoke, capsys):
    out, _ = smoke
    path = out / "crippled-cheetah.smoke.runs.json"
    data = json.loads(path.read_text())
    dropped = sorted(data["runs"])[0]
    del data["runs"][dropped]  # as if the study had stopped before this run finished
    path.write_text(json.dumps(data))
    assert reproduce.main(["crippled-cheetah", "--scale", "smoke", "--out", str(out), "--runs-dir",
                           str(out / "runs")]) == 0
    err = capsys.readouterr().err
    assert "5 of 6 runs already done" in err and err.count(" done in ") == 1
    assert set(json.loads(path.read_text())["runs"]) == set(data["runs"]) | {dropped}


def test_bandit_regret_carries_its_standard_error(smoke):
    out, _ = smoke
    report = (out / "bandit.md").read_text()
    assert "Bayes-greedy posterior mean (knows p2 = 1 - p1)" in report and "max SE" in report
    runs = json.loads((out / "bandit.smoke.runs.json").read_text())["runs"].values()
    assert all(r["result"]["regret_se"] > 0 and len(r["result"]["cumulative_regret_curve"]) == 100 for r in runs)
    # 20 episodes cannot reach the target: the report says which runs stopped at the cap
    assert "Stopped at the cap of 20 episodes with the standard error still at or above 0.05" in report


def test_bandit_reevaluates_without_retraining_when_only_the_evaluation_changes(smoke, tmp_path, monkeypatch):
    from neuromod_rl.studies.memory import bandit

    out, _ = smoke
    before = json.loads((out / "bandit.smoke.runs.json").read_text())["runs"]
    models = {r["result"]["run"]: (Path(r["result"]["run"]) / "model.zip").stat().st_mtime_ns for r in before.values()}
    more = dataclasses.replace(bandit.SCALES["smoke"], max_eval_episodes=40)
    monkeypatch.setitem(bandit.SCALES, "smoke", more)
    assert reproduce.main(["bandit", "--scale", "smoke", "--out", str(tmp_path), "--runs-dir", str(out / "runs")]) == 0
    after = json.loads((tmp_path / "bandit.smoke.runs.json").read_text())["runs"]
    assert {r["result"]["run"] for r in after.values()} == set(models)  # the same trained runs
    assert all((Path(run) / "model.zip").stat().st_mtime_ns == t for run, t in models.items())
    assert all(r["result"]["episodes"] == 40 for r in after.values())  # evaluated again, with the new cap


def test_bandit_note_names_only_runs_short_of_the_standard_error_target():
    from neuromod_rl.studies.memory import bandit

    precise = {("dependent: LSTM (RecurrentPPO)", 0): {"regret_se": 0.049}}
    assert bandit.imprecise_note(precise, bandit.SCALES["default"]) == ""
    short = {**precise, ("independent: LSTM (RecurrentPPO)", 1): {"regret_se": 0.063}}
    note = bandit.imprecise_note(short, bandit.SCALES["default"])
    assert "independent: LSTM (RecurrentPPO) seed 1 (0.063)" in note and " dependent:" not in note
    assert "cap of 50000 episodes" in note


def test_sizes_are_matched_by_parameter_count(smoke):
    out, _ = smoke
    report = (out / "cue.md").read_text()
    variants = r"retroactive modulation|simple modulation|plastic \(non-modulated\)|non-plastic \(alpha = 0\)|"
    rows = dict(re.findall(rf"^\| ({variants}LSTM \(RecurrentPPO\)) \| \d+ \| (\d+) \|$", report, flags=re.M))
    assert len(rows) == 5
    counts = {k: int(v) for k, v in rows.items()}
    assert all(abs(c - counts["simple modulation"]) / counts["simple modulation"] < 0.3 for c in counts.values())


def test_report_judges_a_mujoco_run_against_its_baseline(smoke):
    out, _ = smoke
    runs = json.loads((out / "crippled-cheetah.smoke.runs.json").read_text())["runs"]
    plastic = runs["plastic (PlasticPPO)/seed0"]["result"]["run"]
    ppo = runs["MLP PPO/seed0"]["result"]["run"]
    assert main(["report", plastic, "--baseline", ppo, "--episodes", "4", "--no-video", "--no-progress"]) == 0
    text = (Path(plastic) / "report.md").read_text()
    assert f"Against the baseline `{ppo}`" in text and "adapts compared with the baseline:" in text
    summary = json.loads((Path(plastic) / "metrics.json").read_text())["report"]["vs_baseline"]
    assert summary["baseline"] == ppo and {"agent_recovery", "baseline_recovery", "difference_ci95"} <= set(summary)


def test_report_baseline_must_be_on_the_same_task(smoke, trained_run, capsys):
    out, _ = smoke
    runs = json.loads((out / "crippled-cheetah.smoke.runs.json").read_text())["runs"]
    ppo = runs["MLP PPO/seed0"]["result"]["run"]
    assert main(["report", str(trained_run), "--baseline", ppo, "--no-video", "--no-progress"]) == 2
    assert "pass a baseline trained on the same task" in capsys.readouterr().err


def test_cue_control_trains_every_variant_on_one_fixed_task(tmp_path, monkeypatch):
    from dataclasses import replace

    from neuromod_rl.experiment.environment import make_env
    from neuromod_rl.studies.neuromodulation import cue
    from neuromod_rl.studies.neuromodulation import frame as bp

    control = cue.SCALES["control"]
    table = bp.variants("cue", cue.SETUP.env, cue.HYPERPARAMETERS, control, True, -3)
    for agent in table.values():  # every variant, the LSTM included, trains on the fixed task
        env = make_env(agent.resolved(0))
        targets = set()
        for seed in range(4):
            env.reset(seed=seed)
            targets.add(env.unwrapped.get_task()["target"])
        assert len(targets) == 1
    assert bp.variants("cue", cue.SETUP.env, {}, cue.SCALES["default"], False)[bp.RNN].resolved(0).wrappers == []
    monkeypatch.setitem(cue.SCALES, "control", replace(cue.SCALES["smoke"], wrappers=control.wrappers))
    assert reproduce.main(["cue", "--scale", "control", "--out", str(tmp_path), "--runs-dir", str(tmp_path)]) == 0
    report = (tmp_path / "cue.md").read_text()
    assert "learns the single-task control (go-step accuracy >= 0.9)" in report
    assert "modulation learns the task (" not in report  # the paper's claims are not judged here
    assert "## Single-task control" not in report


def test_cue_ordering_needs_a_modulated_network_out_of_the_chance_band():
    """Two networks at chance do not make an ordering: a modulated variant counts as better only when
    it has learned the task (accuracy >= 0.6) and beats both others."""
    from neuromod_rl.studies.neuromodulation import cue
    from neuromod_rl.studies.neuromodulation import frame as bp

    at_chance = {bp.RETRO: 0.508, bp.SIMPLE: 0.499, bp.PLASTIC: 0.506, bp.RNN: 0.498}
    assert [ok for _, ok, _ in cue.paper_claims(at_chance)] == [False, False]
    learned = {bp.RETRO: 0.93, bp.SIMPLE: 0.71, bp.PLASTIC: 0.72, bp.RNN: 0.52}
    assert [ok for _, ok, _ in cue.paper_claims(learned)] == [True, False]


def test_cue_report_points_to_its_single_task_control(smoke):
    out, _ = smoke
    report = (out / "cue.md").read_text()
    assert "`neuromod-rl reproduce cue --scale control --out docs/results/cue-control`" in report
    assert "The paper trains each network for 200,000 updates of 30 episodes (720M steps)" in report


def test_core_option_puts_every_plastic_variant_on_that_core():
    from neuromod_rl.agents.common.core_factory import CORES
    from neuromod_rl.studies.neuromodulation import frame as bp
    from neuromod_rl.studies.neuromodulation import maze
    from neuromod_rl.studies.registry import studies

    parser = reproduce.build_parser(studies())
    assert next(a for a in parser._actions if a.dest == "core").choices == sorted(CORES)
    chosen = bp.variants("maze", maze.SETUP.env, {}, maze.SCALES["default"], True, core="rnn")
    for name, agent in chosen.items():
        if name != bp.LSTM:
            assert agent.resolved(0).policy_kwargs["core"] == "rnn"
    default = bp.variants("maze", maze.SETUP.env, {}, maze.SCALES["default"], True)
    assert default[bp.RNN].resolved(0).policy_kwargs["core"] == rl.default_core()["core"]
