"""CloudWatch's side: alarms evaluated and their state-change events sent as CloudWatch does (`alarms`), and a
function's embedded-metric-format log lines turned into metrics (`emf`).
"""
