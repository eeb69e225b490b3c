"""`train`/`distill` under torchrun: two gloo ranks make the run one process makes, rank 0
alone writes, and a SIGKILL of one rank is resumed from the last checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robotrl.errors import RobotrlError
from robotrl.policies.distributed import Ranks, ShardedGenerator, randint, randn

pytestmark = pytest.mark.xdist_group("distributed")  # two ranks want both cores
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
TRAIN = ["-m", "robotrl.cli.main", "train"]


def _train_args(data, out, steps, save_every=50):
    return [
        *("--data", str(data), "--out", str(out), "--steps", str(steps)),
        *("--batch-size", "32", "--save-every", str(save_every), "--eval-every", "0"),
        *("--horizon", "8", "--n-action-steps", "4", "--channels", "16,32", "--threads", "1"),
    ]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_the_ranks_draws_are_the_rows_of_one_processs_draws():
    whole = torch.Generator().manual_seed(3)
    expected_noise = torch.randn((8, 4, 2), generator=whole)
    expected_steps = torch.randint(0, 100, (8,), generator=whole)
    parts = []
    for rank in (0, 1):
        g = ShardedGenerator(torch.Generator().manual_seed(3), Ranks(rank, 2))
        parts.append((randn((4, 4, 2), g), randint(0, 100, (4,), g)))
    assert torch.equal(torch.cat([p[0] for p in parts]), expected_noise)
    assert torch.equal(torch.cat([p[1] for p in parts]), expected_steps)
    with pytest.raises(RobotrlError, match="multiple of the 2 processes"):
        Ranks(0, 2).share(33)


def test_two_ranks_train_the_run_one_process_trains(reach_data, tmp_path):
    """Same global batch and seed: the logged losses and the weights agree to float
    rounding (gradients are summed in another order), and so do the evaluations."""
    from robotrl.policies.checkpoint import load_policy
    from robotrl.policies.evaluate import evaluate

    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, *TRAIN, *_train_args(reach_data, one, 100)],
        check=True,
        capture_output=True,
        env=_env(),
    )
    result = subprocess.run(
        [*TORCHRUN, *TRAIN, *_train_args(reach_data, two, 100)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained ") == 1  # rank 0 alone reports (and writes)
    logs = [[json.loads(x) for x in (r / "log.jsonl").read_text().splitlines()] for r in (one, two)]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == [50, 100]
    for a, b in zip(*logs):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    a, b = (load_file(r / "policy/model.safetensors") for r in (one, two))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    outcomes = [
        evaluate(load_policy(r).eval(), "Reach", episodes=2, progress=False) for r in (one, two)
    ]
    assert outcomes[0]["successes"] == outcomes[1]["successes"]
    assert outcomes[1]["scores"] == pytest.approx(outcomes[0]["scores"], rel=1e-3)


def _rank_pids(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes."""
    found = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        ranks = [e for e in environ if e.startswith(b"RANK=")]
        if parent == launcher_pid and ranks:
            found[int(ranks[0][5:])] = pid
    return found


def test_sigkill_of_one_rank_then_restart_resumes(reach_data, tmp_path):
    run = tmp_path / "run"
    args = [*TORCHRUN, *TRAIN, *_train_args(reach_data, run, 400, save_every=10)]
    launcher = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 120
    while not (run / "state/state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    pids = _rank_pids(launcher.pid)
    assert sorted(pids) == [0, 1]
    os.kill(pids[1], signal.SIGKILL)
    launcher.wait(timeout=60)
    assert launcher.returncode != 0  # torchrun stops the job when a rank dies
    saved = json.loads((run / "state/state.json").read_text())["step"]
    assert 0 < saved < 400
    args[args.index("400")] = str(saved + 20)
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming {run} from step {saved}" in result.stdout
    assert json.loads((run / "state/state.json").read_text())["step"] == saved + 20
