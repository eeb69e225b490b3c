"""RL fine-tuning: residual policies around a frozen chunked base (`residual`), trained with
PPO (`ppo`) or SAC (`residual_sac`) on vectorized sim envs (`vector`); `robotrl finetune`
(`commands`, `finetune`)."""
