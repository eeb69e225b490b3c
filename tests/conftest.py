import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("ROS_DOMAIN_ID", str(40 + os.getpid() % 150))

import pytest  # noqa: E402

ROBOTS = ("panda", "ur5e")


@pytest.fixture(params=ROBOTS)
def robot(request):
    return request.param
