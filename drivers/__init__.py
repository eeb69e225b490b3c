"""ROS 2 drivers (the drivers issue)."""
