"""`sagepilot`: the operator's command for rollouts, and what the stack's dashboard and alarms show.

    sagepilot rollouts                       every managed endpoint: phase, versions, live weights
    sagepilot history ENDPOINT               what happened to it, oldest first
    sagepilot pause|resume ENDPOINT          hold a canary at its step / let it go on
    sagepilot promote ENDPOINT               finish a canary now (the old variant is removed)
    sagepilot rollback ENDPOINT              all traffic back to the stable version now
    sagepilot status                         the control plane's own alarms, and its queues' depths
    sagepilot alarms [ENDPOINT]              every alarm of the stack (or of one endpoint): state, since, why
    sagepilot metrics [--since 1h]           the dashboard's figures as tables: endpoints per variant, and
                                             the control plane's decisions (files, jobs, rollouts, ...)
    sagepilot report ENDPOINT [--html PATH]  the canary analysis of its newest judged rollout: the table, and
                                             a self-contained HTML page with its chart (data bucket from
                                             --bucket or SAGEPILOT_DATA_BUCKET)

Not part of the Lambda layer: an operator installs it with the product (`pip install .`). Modules by concern:
`app` (the command line), `rollouts` (the rollout commands: state table, lease, the `Rollout Command` event),
`status` (alarms and queues), `metrics` (the dashboard's figures), `report` (the canary analysis), `output`
(tables and values as printed). It uses the product package `sagepilot` (its adapters and domain) for the
state table, the endpoints and the reports, exactly as the control plane reads them.
"""

from sagepilot_cli.app import main, run

__all__ = ["main", "run"]
