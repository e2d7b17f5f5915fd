"""Work made of generations: writing results and sidecars, batches (input, log, runner) and
the reference test-suite."""
