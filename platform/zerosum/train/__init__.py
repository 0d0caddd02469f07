"""Training: pure step functions (steps), the Ray Train worker loop (loop), the driver (runner)."""
