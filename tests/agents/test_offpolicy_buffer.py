"""The sequence replay buffer: what it stores (one state per L steps) and what a sampled sequence is.

Every observation written here encodes where it came from, ``[step, env, is_terminal]``, and every
stored state is ``[step, env]``, so a sampled sequence can be traced back to the buffer exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from neuromod_rl.agents import SequenceReplayBuffer
from neuromod_rl.agents.off_policy.sequence_replay import SequenceView

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (1,), np.float32)
N_ENVS = 2


@pytest.fixture(autouse=True)
def _seed_numpy():
    np.random.seed(0)  # noqa: NPY002  (the buffer samples from numpy's global generator, as SB3's buffers do)


def make_buffer(per_env: int = 32, L: int = 4, K: int = 0, start_state: str = "stored") -> SequenceReplayBuffer:
    return SequenceReplayBuffer(
        per_env * N_ENVS, OBS, ACT, device="cpu", n_envs=N_ENVS, sequence_length=L, burn_in=K, start_state=start_state
    )


def fill(buf: SequenceReplayBuffer, n_steps: int, ends: dict[int, str] | None = None) -> None:
    """Write ``n_steps`` steps for every env; ``ends[t]`` ends env 0's episode at step t
    ("terminated" or "truncated"); env 1 never ends an episode."""
    ends = ends or {}
    start = np.ones(N_ENVS, dtype=bool)
    for t in range(n_steps):
        obs = np.array([[t, e, 0.0] for e in range(N_ENVS)], np.float32)
        nxt = np.array([[t + 1, e, 0.0] for e in range(N_ENVS)], np.float32)
        dones = np.zeros(N_ENVS, dtype=bool)
        infos = [{} for _ in range(N_ENVS)]
        if t in ends:
            dones[0] = True
            nxt[0] = [t + 0.5, 0, 1.0]  # the terminal observation (the env then resets)
            infos[0]["TimeLimit.truncated"] = ends[t] == "truncated"
        state = torch.tensor([[t, e] for e in range(N_ENVS)], dtype=torch.float32)
        buf.stage(start, state)
        buf.add(obs, nxt, np.full((N_ENVS, 1), t / 100, np.float32), np.full(N_ENVS, t, np.float32), dones, infos)
        start = dones


def trained(view: SequenceView) -> np.ndarray:
    """The observations a view points at, ``[L, n, 3]``."""
    obs, pos = view.sample.observations, view.positions
    return obs[pos, torch.arange(pos.shape[1])].numpy()


def test_one_state_stored_per_sequence_length():
    buf = make_buffer(per_env=32, L=4)
    fill(buf, 10)
    assert buf.states_stored == 3  # steps 0, 4, 8
    assert buf.start_states.shape == (32 // 4, N_ENVS, 2)
    assert buf.state_nbytes() == (32 // 4) * N_ENVS * 2 * 4
    np.testing.assert_array_equal(buf.start_states[2], [[8, 0], [8, 1]])
    # a per-step store would hold L times as many states
    assert buf.state_nbytes() * 4 == 32 * N_ENVS * 2 * 4


def test_sampled_sequences_are_contiguous_windows_with_their_stored_state():
    buf = make_buffer(per_env=32, L=4)
    fill(buf, 14)  # chunks 0, 1, 2 are complete, chunk 3 (steps 12..15) is not
    data = buf.sample(4 * 50)
    sample = data.observations.sample
    assert (sample.seq_len, sample.n_seq, sample.burn_in) == (4, 50, 0)
    obs = trained(data.observations)
    for j in range(sample.n_seq):
        steps, env = obs[:, j, 0], obs[0, j, 1]
        assert steps[0] % 4 == 0 and steps[0] + 4 <= 14
        np.testing.assert_array_equal(steps, steps[0] + np.arange(4))
        assert (obs[:, j, 1] == env).all()
        np.testing.assert_array_equal(sample.start_state[j].numpy(), [steps[0], env])
    # per-step fields are time-major, [L * n, ...], in the order of the sequence positions
    np.testing.assert_array_equal(data.rewards.reshape(4, -1).numpy(), obs[:, :, 0])
    np.testing.assert_allclose(data.actions.reshape(4, -1).numpy(), obs[:, :, 0] / 100, rtol=1e-6)
    # without an episode end, the next observation is the following step
    np.testing.assert_array_equal(trained(data.next_observations)[:, :, 0], obs[:, :, 0] + 1)


@pytest.mark.parametrize("kind", ["terminated", "truncated"])
def test_episode_end_inside_a_sequence(kind):
    buf = make_buffer(per_env=32, L=8)
    fill(buf, 16, ends={5: kind})  # env 0's episode ends at step 5; step 6 opens the next one
    data = buf.sample(8 * 40)
    sample = data.observations.sample
    obs, nxt = trained(data.observations), trained(data.next_observations)
    dones = data.dones.reshape(8, -1).numpy()
    seen = False
    for j in range(sample.n_seq):
        if obs[0, j, 0] != 0 or obs[0, j, 1] != 0:
            continue
        seen = True
        # the trained steps are still the buffer's steps 0..7, in order
        np.testing.assert_array_equal(obs[:, j, 0], np.arange(8))
        # step 5's next observation is its episode's terminal observation, not the reset one
        np.testing.assert_array_equal(nxt[5, j], [5.5, 0, 1])
        np.testing.assert_array_equal(nxt[4, j, 0], 5)
        # the state resets right before step 6 (after the inserted terminal observation), nowhere else
        starts = sample.episode_starts[:, j].numpy()
        assert starts[sample.current[6, j]] and not starts[sample.next[5, j]]
        assert starts.sum() == 2  # step 0 opened the first episode
        # SB3's convention: a termination stops the bootstrap, a time-out does not
        assert dones[5, j] == (1.0 if kind == "terminated" else 0.0) and dones[:, j].sum() == dones[5, j]
    assert seen
    # sequences are padded to the longest one: one inserted observation for env 0's first chunk
    assert sample.total_len == 8 + 2


def test_burn_in_steps_precede_the_trained_steps():
    buf = make_buffer(per_env=32, L=4, K=3)
    fill(buf, 14)
    data = buf.sample(4 * 30)
    sample = data.observations.sample
    assert sample.burn_in == 3
    all_obs = sample.observations.numpy()
    obs = trained(data.observations)
    for j in range(sample.n_seq):
        first = sample.start_state[j, 0].item()  # the stored state is the window's first step
        np.testing.assert_array_equal(all_obs[:3, j, 0], first + np.arange(3))
        np.testing.assert_array_equal(obs[:, j, 0], first + 3 + np.arange(4))
        assert first % 4 == 0 and first + 7 <= 14  # the whole window is written
    np.testing.assert_array_equal(sample.current[0].numpy(), np.full(sample.n_seq, 3))


def test_ring_wrap_around_keeps_windows_contiguous_in_time():
    buf = make_buffer(per_env=16, L=4, K=2)
    fill(buf, 27)  # wraps: rows 0..10 hold steps 16..26, rows 11..15 hold steps 11..15
    assert buf.full and buf.pos == 11
    assert buf.states_stored == 7
    firsts = set()
    for _ in range(20):
        sample = buf.sample(4 * 8).observations.sample
        for j in range(sample.n_seq):
            window = sample.observations[: sample.burn_in + sample.seq_len, j, 0].numpy()
            assert window[0] >= 11, "a sequence read an overwritten step"
            np.testing.assert_array_equal(window, window[0] + np.arange(6))  # no jump across the write head
            assert sample.start_state[j, 0].item() == window[0]
            firsts.add(int(window[0]))
    # windows start at stored steps (rows 0, 4, 8, 12); the one at row 12 (step 12) crosses the ring's end
    assert firsts == {12, 16, 20}


def test_zero_start_state_stores_no_state():
    buf = make_buffer(per_env=16, L=4, start_state="zero")
    fill(buf, 12)
    assert buf.start_states is None and buf.states_stored == 0 and buf.state_nbytes() == 0
    assert buf.sample(8).observations.sample.start_state is None


def test_sampling_waits_for_a_whole_sequence():
    buf = make_buffer(per_env=16, L=4, K=2)
    fill(buf, 5)
    assert not buf.can_sample()
    with pytest.raises(RuntimeError, match="no whole sequence"):
        buf.sample(8)
    fill(buf, 1)  # steps 0..5 are now written again from row 5: still one window, rows 0..5
    assert buf.can_sample()


def test_bad_settings_and_misuse_are_explained():
    with pytest.raises(ValueError, match="sequence_length"):
        make_buffer(L=0)
    with pytest.raises(ValueError, match="burn_in"):
        make_buffer(K=-1)
    with pytest.raises(ValueError, match="start_state"):
        make_buffer(start_state="random")
    with pytest.raises(ValueError, match="raise buffer_size"):
        make_buffer(per_env=4, L=4, K=2)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        SequenceReplayBuffer(64, OBS, ACT, optimize_memory_usage=True, handle_timeout_termination=False)
    buf = make_buffer()
    obs = np.zeros((N_ENVS, 3), np.float32)
    with pytest.raises(RuntimeError, match="stage"):
        buf.add(obs, obs, np.zeros((N_ENVS, 1)), np.zeros(N_ENVS), np.zeros(N_ENVS), [{}, {}])


def test_capacity_is_rounded_down_to_whole_sequences():
    buf = SequenceReplayBuffer(2 * 30, OBS, ACT, device="cpu", n_envs=N_ENVS, sequence_length=8)
    assert buf.buffer_size == 24 and buf.n_chunks == 3
