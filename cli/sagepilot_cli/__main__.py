"""`python -m sagepilot_cli ...`: the same as the `sagepilot` command."""

from sagepilot_cli.app import run

if __name__ == "__main__":
    run()
