"""Multi-agent simulations over ordinary rooms.

Not built yet: scenario files, the runner and reports arrive with the simulations issue.
"""
