"""What fits where: the machine (probed or simulated), component sizes from a meta-device
model, the constants behind every estimate, the planner that turns them into a placement, and
the live monitor that checks the plan against reality."""
