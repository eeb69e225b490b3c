"""ROS 2 drivers: a ROS 2 arm is a `RobotEnv` too.

- `ros_env.RosEnv` / `make_ros_env(config, **kwargs)`: a ros2_control arm (or the sim robot
  node) as a paced `RobotEnv`; robot configs in `configs/*.yaml` (`config.py`).
- `sim_node`: a MuJoCo task behind the ros2_control interface (joint states, position and
  trajectory commands, cameras, /clock, reset service, privileged task state).
- `realsense_node`: pyrealsense2 -> color, aligned depth (mm) and CameraInfo, from a device or
  a .db3 recording. `teleop_node`: teleop devices over ROS (and `RosTeleop` to read them).
- `launch`: runs `launch/*.launch.yaml` without ros2 launch; `bench`: `robotrl bench ros`;
  `commands`: the CLI commands; `eval_ros`: a sim-trained policy deployed through ROS.

Nothing here is imported by `robotrl` core; rclpy is imported only through `ros.import_rclpy`,
which sets up the middleware and reports a missing install as one line naming the extra.
"""
