"""Training room (needs torch): backbones, the SymNet, losses, schedules, data and the trainer."""
