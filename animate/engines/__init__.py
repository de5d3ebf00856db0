"""The generation engines: one module each, behind the `animate.generate.Engine` interface."""
