"""``jobtrail demo``: the whole system on the embedded defaults, in one command."""

from workers.demo.run import run_demo

__all__ = ["run_demo"]
