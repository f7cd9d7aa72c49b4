"""Build, run and provision the Kinline stack."""
