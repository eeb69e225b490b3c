import os

os.environ.setdefault("MUJOCO_GL", "egl")
# Assigned, not defaulted: xdist workers inherit the parent's environment, and each worker
# needs a DDS domain of its own.
os.environ["ROS_DOMAIN_ID"] = str(40 + os.getpid() % 150)

import pytest  # noqa: E402

ROBOTS = ("panda", "ur5e")


@pytest.fixture(params=ROBOTS)
def robot(request):
    return request.param


@pytest.fixture
def one_torch_thread():
    """Two torch threads per test worker on a 2-core machine can be 40x slower than one
    (oversubscription with the other worker)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reach_data(tmp_path_factory):
    """Four Reach expert episodes, state observations: data for tiny training runs."""
    from tests.test_data import record

    root = tmp_path_factory.mktemp("policy") / "reach"
    record(root, task="Reach", episodes=4)
    return root
