"""The reproductions of Gregor (2020), BLUR (2021) and L2L (2016) run end to end at a tiny scale, over
seeds, and write their report with the command, a claims table, a numbers table and plots."""

from __future__ import annotations

import re

import pytest
import torch

from neuromod_rl.studies import command as reproduce
from neuromod_rl.studies.scaffold.report import load_digits_split

torch.set_num_threads(1)

PLOTS = {
    "gregor": ["gregor_recall.png"],
    "blur": ["blur_accuracy.png", "blur_meta_training.png"],
    "l2l": ["l2l_quadratics.png", "l2l_digits_mlp.png"],
    "offpolicy": ["offpolicy_pendulum.png", "offpolicy_cheetah.png"],
}


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_smoke_reproduction_writes_report_and_plots(name, tmp_path, capsys):
    assert reproduce.main([name, "--scale", "smoke", "--seed", "3", "--out", str(tmp_path)]) == 0
    report = (tmp_path / f"{name}.md").read_text()
    assert f"neuromod-rl reproduce {name} --scale smoke --seed 3" in report and "2 seeds (`3, 4`)" in report
    claims = re.findall(r"^\| (.+?) \| (yes|\*\*no\*\*) \| (.+?) \|$", report, flags=re.M)
    assert len(claims) >= 2, report
    assert all(re.search(r"\d", evidence) for _, _, evidence in claims)  # every verdict cites numbers
    for png in PLOTS[name]:
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in report
    assert "wrote" in capsys.readouterr().out


def test_bad_arguments_give_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        reproduce.main(["alexnet", "--out", str(tmp_path)])
    assert err.value.code == 2
    assert "invalid choice: 'alexnet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["blur", "--scale", "huge"])
    assert reproduce.main(["blur", "--threads", "0", "--out", str(tmp_path)]) == 2
    assert "--threads must be positive" in capsys.readouterr().err
    assert reproduce.main(["bandit", "--workers", "0", "--out", str(tmp_path)]) == 2
    assert "--workers must be positive" in capsys.readouterr().err
    assert reproduce.main(["gregor", "--budget", "1000", "--out", str(tmp_path)]) == 2
    assert "--budget applies to the RL studies" in capsys.readouterr().err
    assert reproduce.main(["bandit", "--tasks", "CartPoleNoVel-v1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--tasks applies to the studies ['adaptation-gap', 'core-sweep', 'pomdp', 'recall-ablation']" in err
    assert reproduce.main(["maze", "--scale", "control", "--out", str(tmp_path)]) == 2
    assert "--scale control applies to ['cue'], not 'maze'" in capsys.readouterr().err
    assert reproduce.main(["bandit", "--core", "rnn", "--out", str(tmp_path)]) == 2
    assert "--core applies to the studies ['cue', 'maze'], not 'bandit'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        reproduce.main(["maze", "--core", "gru"])
    assert reproduce.main(["pomdp", "--tasks", "CartPole-v1", "--out", str(tmp_path)]) == 2
    assert "unknown pomdp task(s) ['CartPole-v1']; choose from" in capsys.readouterr().err
    with pytest.raises(ValueError, match="digits classes are 0..9"):
        load_digits_split([3, 12])


def test_a_second_process_on_the_same_study_is_refused(tmp_path, capsys):
    """Two invocations writing one progress file would each save their own copy and lose the other's
    results: the second is refused with the holder's command, and a killed holder blocks no one."""
    import subprocess
    import sys
    import textwrap

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from neuromod_rl.experiment.runs import RunLock
        RunLock.on_file({str(tmp_path / ".blur.smoke.lock")!r}, "study blur", "neuromod-rl reproduce blur").__enter__()
        print("held", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert reproduce.main(["blur", "--scale", "smoke", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "is in use by another neuromod-rl process" in err and f"pid {holder.pid}" in err
        assert not (tmp_path / "blur.md").exists()
    finally:
        holder.kill()
        holder.wait()
    assert reproduce.main(["blur", "--scale", "smoke", "--out", str(tmp_path)]) == 0  # the kill released it




















